"""What is wrong with a weight file's state dict, in words: the one check the frozen metric networks share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

SHOWN = 6  # keys named per kind of problem before " ..."


def _some(keys: Sequence[str]) -> str:
    return f"{list(keys[:SHOWN])}{' ...' if len(keys) > SHOWN else ''}"


def state_dict_problems(state: Mapping[str, Tensor], expected: Mapping[str, Sequence[int]]) -> list[str]:
    """Missing keys, unexpected keys and wrong shapes of ``state`` against ``expected`` (key -> shape), each
    with the keys named; empty when the file fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k}: {tuple(state[k].shape)} in the file, {tuple(shape)} expected" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != tuple(shape)]
    problems = [f"missing {len(missing)} key(s) {_some(missing)}"] if missing else []
    problems += [f"unexpected {len(unexpected)} key(s) {_some(unexpected)}"] if unexpected else []
    problems += [f"wrong shape(s) {'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}"] if wrong else []
    return problems

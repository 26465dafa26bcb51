"""Loader of the ISNet authors' released generator weights (``InpaintingModel_gen.pth`` of
GuardSkill/Large-Scale-Feature-Inpainting) into the generators of :mod:`inpaint.nets.isnet`.

Kept out of ``inpaint.nets`` (plain modules that import nothing from ``inpaint.models``,
``inpaint.checkpoints`` or lightning) because it raises :class:`inpaint.checkpoints.CheckpointMismatchError`;
used by :class:`inpaint.models.isnet.ISNetModule` (``model.official_weights=PATH``, or
``python -m inpaint.predict model=isnet weights=PATH``). Not part of the pretrained registry
:mod:`inpaint.weights`: that one fetches and checksums files it knows by name, this file is supplied by hand
and converted from the authors' key layout.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor, nn

from inpaint.errors import CheckpointMismatchError
from inpaint.nets.isnet import GENERATOR_VARIANTS, build_generator
from inpaint.nets.isnet_blocks import BLOCK_CHOICES

log = logging.getLogger(__name__)

_SN_SUFFIXES = ({"weight_orig", "weight_u", "weight_v"}, {"weight_orig", "weight_u", "weight"})
_SHAPE_SUFFIXES = ("weight_orig", "weight", "bias")


def _groups(state: dict[str, Tensor]) -> list[tuple[str, dict[str, Tensor]]]:
    """Keys grouped by module prefix (the key without its last component), in first-appearance order."""
    groups: OrderedDict[str, dict[str, Tensor]] = OrderedDict()
    for key, value in state.items():
        prefix, _, suffix = key.rpartition(".")
        groups.setdefault(prefix, {})[suffix] = value
    return list(groups.items())


def _kind(suffixes: set[str]) -> tuple:
    """What a group must agree on: SN or not (either SN format), with or without bias, any other suffixes."""
    rest = set(suffixes) - {"bias"}
    if any(rest == s for s in _SN_SUFFIXES):
        rest = {"<spectral-norm weight>"}
    return tuple(sorted(rest)), "bias" in suffixes


def _shapes(tensors: dict[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {s: tuple(t.shape) for s, t in tensors.items() if s in _SHAPE_SUFFIXES}


def _fits(theirs: dict[str, Tensor], ours: dict[str, Tensor]) -> bool:
    t_shapes, o_shapes = _shapes(theirs), _shapes(ours)
    return (
        _kind(set(theirs)) == _kind(set(ours))
        and t_shapes.get("weight_orig", t_shapes.get("weight")) == o_shapes.get("weight_orig", o_shapes.get("weight"))
        and t_shapes.get("bias") == o_shapes.get("bias")
    )


def _describe(tensors: dict[str, Tensor]) -> str:
    return ", ".join(f"{s} {list(t.shape)}" for s, t in tensors.items() if s in _SHAPE_SUFFIXES) or str(sorted(tensors))


def _first_mismatch(theirs: list, ours: list) -> str | None:
    """None if the two group lists fit pair by pair, else a description of the first pair that does not."""
    for (t_prefix, t), (o_prefix, o) in zip(theirs, ours, strict=False):
        if not _fits(t, o):
            return f"their '{t_prefix}' {_describe(t)} does not fit our '{o_prefix}' {_describe(o)}"
    if len(theirs) != len(ours):
        extra, side = (theirs, "the checkpoint") if len(theirs) > len(ours) else (ours, "our generator")
        name = extra[min(len(theirs), len(ours))][0]
        return (
            f"the checkpoint has {len(theirs)} weighted modules, our generator {len(ours)}; the first module without a "
            f"partner is '{name}' in {side}"
        )
    return None


def _group_count(variant: str, blocks: int) -> int:
    """Conv groups of a generator (a cheap filter before building candidates; checked by the tests)."""
    return {"isnet": 14 * blocks + 36, "base": 14 * blocks + 25, "base_ff": 14 * blocks + 26,
            "unet": 2 * blocks + 8}[variant]


def _fitting_config(theirs: list) -> str | None:
    """The ``model.generator.variant`` / ``blocks`` whose layout fits the checkpoint, if any (built on meta)."""
    for variant in GENERATOR_VARIANTS:
        for blocks in BLOCK_CHOICES:
            if _group_count(variant, blocks) != len(theirs):
                continue
            with torch.device("meta"):
                candidate = build_generator(variant, blocks)
            if _first_mismatch(theirs, _groups(candidate.state_dict())) is None:
                return f"model.generator.variant={variant} model.generator.blocks={blocks}"
    return None


def sn_v_from_old_format(weight_orig: Tensor, weight: Tensor, u: Tensor) -> Tensor:
    """``weight_v`` of a spectral-norm conv saved by PyTorch < 1.1 (``weight_orig``, ``weight``, ``weight_u``).

    The formula of torch's spectral-norm load hook: with ``W`` the weight as an (out, rest) matrix (SN dim 0)
    and ``sigma = weight_orig / weight``, ``v = x * sigma / (u . W x)`` for the minimum-norm solution ``x`` of
    ``W x = u``; the eval-mode weight ``W / (u . W v)`` is then the stored ``weight``. The hook computes
    ``x = (W^T W)^+ W^T u`` in float32, inverting a (rest x rest) matrix: minutes for ISNet's 9216-wide convs,
    and off the true v in direction (only its scale is right) since ``W^T W`` is rank deficient. A float64
    least-squares solve on ``W`` itself takes well under a second and recovers the v of the last power
    iteration.
    """
    w = weight_orig.detach().double().flatten(1)
    wn = weight.detach().double().flatten(1)
    sigma = (w * w).sum() / (w * wn).sum()  # least-squares fit of weight_orig = sigma * weight
    u64 = u.detach().double()
    x = torch.linalg.lstsq(w, u64.unsqueeze(1), driver="gelsd").solution.squeeze(1)
    v = x * (sigma / torch.dot(u64, w @ x))
    return v.to(weight_orig.dtype)


def _to_current_sn_format(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """A group with ``weight_orig`` + ``weight`` + ``weight_u`` (old format) -> ``weight_orig`` / ``_u`` / ``_v``."""
    if not {"weight_orig", "weight", "weight_u"} <= set(tensors) or "weight_v" in tensors:
        return tensors
    out = {k: t for k, t in tensors.items() if k != "weight"}
    out["weight_v"] = sn_v_from_old_format(tensors["weight_orig"], tensors["weight"], tensors["weight_u"])
    return out


def load_official_generator(generator: nn.Module, path: str | Path) -> dict:
    """Load the authors' ``InpaintingModel_gen.pth`` (GuardSkill/Large-Scale-Feature-Inpainting) into
    ``generator``, mapping their modules onto ours **by order**.

    Accepts ``{"iteration": n, "generator": state_dict}`` (their format), ``{"state_dict": ...}`` or a bare state
    dict; a leading ``module.`` (DataParallel) is stripped. Their keys and ours are grouped by module prefix in
    order of appearance and zipped; each pair must agree on spectral norm / bias and on the weight and bias
    shapes. Spectral-norm convs in the old format (``weight_orig`` + ``weight`` + ``weight_u``, PyTorch < 1.1)
    get their ``weight_v`` from :func:`sn_v_from_old_format` (what torch's spectral-norm load hook computes, but
    fast enough for ISNet's widest convs), so the loaded net computes the same normalised weights.

    Returns ``{"loaded": number of tensors, "iteration": their iteration or None}``. Raises
    :class:`inpaint.checkpoints.CheckpointMismatchError` (a ValueError) naming the file if it is missing,
    unreadable, holds no state dict or does not fit (then naming the first mismatching pair and, when one
    fits, the ``model.generator.variant`` / ``model.generator.blocks`` to use).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointMismatchError(f"authors' generator checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, foreign pickle
        # torch's own text (a page of weights_only advice, or "pop from empty list") does not help here
        raise CheckpointMismatchError(f"cannot read the authors' generator checkpoint {path} (torch.load: "
                                      f"{type(e).__name__}): give the released InpaintingModel_gen.pth") from None
    state = ckpt
    if isinstance(ckpt, dict):
        for entry in ("generator", "state_dict"):
            if isinstance(ckpt.get(entry), dict):
                state = ckpt[entry]
                break
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise CheckpointMismatchError(
            f"{path} holds no generator state dict (expected a dict of tensors, or one under 'generator' or "
            "'state_dict')"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    theirs, ours = _groups(state), _groups(generator.state_dict())
    problem = _first_mismatch(theirs, ours)
    if problem is not None:
        fit = _fitting_config(theirs)
        hint = f"it fits {fit}" if fit else "it fits none of the generator variants / block counts"
        raise CheckpointMismatchError(
            f"{path} does not fit {type(generator).__name__} ({len(theirs)} weighted modules in the file, "
            f"{len(ours)} in ours): {problem}; {hint}"
        )
    renamed = {
        f"{o_prefix}.{suffix}": tensor
        for (_, t), (o_prefix, _) in zip(theirs, ours, strict=True)
        for suffix, tensor in _to_current_sn_format(t).items()
    }
    try:
        generator.load_state_dict(renamed, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(f"{path} does not load into {type(generator).__name__}: {e}") from e
    report = {"loaded": len(renamed), "iteration": ckpt.get("iteration") if isinstance(ckpt, dict) else None}
    log.info("loaded the authors' generator %s: %d tensors, iteration %s", path, report["loaded"],
             report["iteration"])
    return report

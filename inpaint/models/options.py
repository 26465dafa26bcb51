"""Typed option blocks: a model's nested config dicts (``model.pra``, ``model.loss``, ``model.gan``, ...) read into
frozen dataclasses that refuse unknown keys and wrong types by name, whether the model is built from the config
or from Python. The dataclass fields hold the option defaults (one place); the paper's recipe values that
differ from them live in the model's YAML.

    @dataclass(frozen=True)
    class PRAOptions:
        enabled: bool = False
        threshold: float = 0.2

    pra = read_options(PRAOptions, cfg.get("pra"), "model.pra")   # a typo -> "model.pra: unknown option ..."
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_SCALARS = {"bool": bool, "int": int, "float": float, "str": str}


def _convert(value: Any, annotation: str, path: str) -> Any:
    """``value`` as the field's annotated scalar type (``int``, ``float``, ``bool``, ``str``, ``X | None``);
    other annotations (mappings, sequences) pass through."""
    kinds = [k.strip() for k in annotation.split("|")]
    if value is None:
        if "None" in kinds:
            return None
        raise ValueError(f"{path}: null is not allowed (expected {annotation})")
    for kind in kinds:
        target = _SCALARS.get(kind)
        if target is None:
            continue
        if target is bool:
            if isinstance(value, bool):
                return value
            continue
        if target is str:
            if isinstance(value, str):
                return value
            continue
        if isinstance(value, bool):  # True is an int to Python, not to a config
            continue
        if target is int and isinstance(value, int):
            return value
        if target is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if target is float and isinstance(value, (int, float)):
            return float(value)
    if any(k in _SCALARS for k in kinds) and not any(k not in _SCALARS and k != "None" for k in kinds):
        raise ValueError(f"{path}={value!r}: expected {annotation}, got a {type(value).__name__}")
    return value


def read_options(cls: type[T], value: Mapping[str, Any] | T | None, path: str) -> T:
    """An instance of dataclass ``cls`` from a mapping (``None``: all defaults); unknown keys and values of the
    wrong type raise ``ValueError`` naming ``path`` and the accepted keys."""
    if isinstance(value, cls):
        return value
    given = dict(value or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {unknown}; the options are {sorted(fields)}")
    kwargs = {name: _convert(v, str(fields[name].type), f"{path}.{name}") for name, v in given.items()}
    return cls(**kwargs)

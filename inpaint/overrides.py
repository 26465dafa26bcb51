"""Reading Hydra command-line overrides (``key=value``, ``+key=value``, ``~key``) without Hydra: the
small piece that the experiment loggers (W&B's ``hydra_overrides``), the sweep tables, the results cards
and ``resume=`` all need. It imports nothing, so none of them has to import another to get it."""

from __future__ import annotations

__all__ = ["override_key", "parse_overrides"]


def override_key(item: str) -> str:
    """The config key an override sets, without Hydra's ``+`` (add) / ``++`` / ``~`` (delete) prefix."""
    return item.partition("=")[0].lstrip("+~")


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """``{key: value}`` of a list of overrides (keys without their ``+``/``~`` prefix; the last one wins)."""
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out

"""Loader of the official PGGAN generators (Karras et al. 2018), converted to PyTorch, into
:class:`inpaint.nets.pggan.PGGANGenerator` (``specs/mganprior-pggan.md`` section 2.3).

Two layouts of the same converted weights circulate:

* **mGANprior / InterFaceGAN** (e.g. ``pggan_bedroom256_generator.pth``): a flat state dict of the EMA
  generator with ``layer{i}.conv.weight``, ``layer{i}.wscale.bias``, ``output{j}.conv.weight``,
  ``output{j}.wscale.bias`` and ``lod``;
* **genforce** (e.g. ``pggan_bedroom256.pth``, the registry's ``pggan_*256`` entries): a dict with
  ``generator``, ``discriminator`` and ``generator_smooth`` (the EMA generator, preferred), each a state
  dict with ``layer{i}.weight``, ``layer{i}.bias``, ``output{j}.weight``, ``output{j}.bias`` and ``lod``.
  A bare genforce generator state dict is accepted too.

Weights are stored unscaled in both (the equalized-lr constant is applied at run time), so the only change
is the renaming ``.conv.weight`` -> ``.weight``, ``.wscale.bias`` -> ``.bias``. Every shape is checked before
anything is loaded. Kept out of :mod:`inpaint.nets` because it raises
:class:`inpaint.checkpoints.CheckpointMismatchError` and resolves registry names via :mod:`inpaint.weights`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import Tensor

from inpaint.errors import CheckpointMismatchError
from inpaint.nets.pggan import PGGANGenerator
from inpaint.weights import REGISTRY, fetch

log = logging.getLogger(__name__)

__all__ = ["MGANPRIOR_LAYOUT", "GENFORCE_LAYOUT", "load_official_generator", "official_generator_state"]

MGANPRIOR_LAYOUT = "mganprior"
GENFORCE_LAYOUT = "genforce"
_GENERATOR_ENTRIES = ("generator_smooth", "generator")
_KEY = re.compile(r"(layer|output)(\d+)\.(weight|bias)")
_MGP_RENAMES = ((".conv.weight", ".weight"), (".wscale.bias", ".bias"))


def _natural(key: str) -> tuple:
    """Sort key that puts 'layer9' before 'layer10'."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key))


def _sample_keys(keys: list[str], n: int = 6) -> str:
    shown = ", ".join(repr(k) for k in keys[:n])
    return shown + (f", ... ({len(keys)} keys)" if len(keys) > n else "")


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


def official_generator_state(obj: object, source: str = "the checkpoint") -> tuple[dict[str, Tensor], str, str | None]:
    """The generator state dict of a loaded file in our key names, its layout and the dict entry it came from.

    Returns ``(state, layout, entry)``: ``layout`` is :data:`MGANPRIOR_LAYOUT` or :data:`GENFORCE_LAYOUT`,
    ``entry`` is ``"generator_smooth"``, ``"generator"`` or None (a flat file). A leading ``module.`` is
    stripped. Raises :class:`CheckpointMismatchError` naming ``source`` when it holds no PGGAN generator.
    """
    entry = None
    state = obj
    if isinstance(obj, dict):
        for name in _GENERATOR_ENTRIES:
            if isinstance(obj.get(name), dict):
                entry, state = name, obj[name]
                break
    if not _is_state_dict(state):
        top = _sample_keys([str(k) for k in obj]) if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointMismatchError(
            f"{source} holds no PGGAN generator: expected a state dict of tensors, or one under "
            f"'generator_smooth' / 'generator' (found {top})"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.endswith(old) for k in state for old, _ in _MGP_RENAMES):
        layout = MGANPRIOR_LAYOUT
        renamed = {}
        for key, value in state.items():
            for old, new in _MGP_RENAMES:
                if key.endswith(old):
                    key = key[: -len(old)] + new
                    break
            renamed[key] = value
        state = renamed
    else:
        layout = GENFORCE_LAYOUT
    kinds = {m.group(1) for k in state if (m := _KEY.fullmatch(k))}
    if kinds != {"layer", "output"} or "layer0.weight" not in state:
        where = f" (entry '{entry}')" if entry else ""
        raise CheckpointMismatchError(
            f"{source}{where} is not a PGGAN generator: expected keys 'layer{{i}}.conv.weight' / "
            "'layer{i}.wscale.bias' (mGANprior) or 'layer{i}.weight' / 'layer{i}.bias' (genforce) with toRGB "
            f"layers 'output{{j}}.*', found {_sample_keys(sorted(state, key=_natural))}"
        )
    return state, layout, entry


def _file_config(state: dict[str, Tensor]) -> str:
    """What the file's own shapes say about the network it was made for (for error hints)."""
    outputs = {int(m.group(2)) for k in state if (m := _KEY.fullmatch(k)) and m.group(1) == "output"}
    w0 = state["layer0.weight"]
    z = f"z_dim={w0.shape[1]}, " if w0.dim() == 4 else ""
    return f"{z}resolution={4 * 2 ** max(outputs)}" if outputs else z.rstrip(", ")


def _describe(g: PGGANGenerator) -> str:
    return (f"{type(g).__name__}(resolution={g.resolution}, z_dim={g.z_dim}, fmap_base={g.fmap_base}, "
            f"fmap_max={g.fmap_max})")


def _resolve(path: str | Path, offline_hint: str) -> Path:
    key = str(path)
    if key in REGISTRY and not Path(key).is_file():
        return fetch(key, offline_hint=offline_hint)
    return Path(path).expanduser()


def load_official_generator(generator: PGGANGenerator, path: str | Path, *, offline_hint: str = "") -> dict:
    """Load a converted official PGGAN generator file (either layout, detected) into ``generator``.

    ``path`` is a file, or a :data:`inpaint.weights.REGISTRY` name such as ``"pggan_bedroom256"`` (fetched
    into the torch hub cache; ``offline_hint`` is quoted when that is impossible). From a genforce dict the
    EMA ``generator_smooth`` is taken, else ``generator``. All shapes are checked first; the ``lod`` buffer
    is taken from the file when it has one (the released generators have 0).

    Returns ``{"path", "layout", "entry", "loaded" (number of tensors), "lod"}``. Raises
    :class:`inpaint.checkpoints.CheckpointMismatchError` (a ValueError) naming the file when it is missing,
    unreadable or not a PGGAN generator, when a tensor's shape differs (naming the key, the expected and the
    found shape), and when keys are missing or unexpected (listing them).
    """
    path = _resolve(path, offline_hint)
    if not path.is_file():
        raise CheckpointMismatchError(f"PGGAN generator file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, foreign pickle, an HTML page instead of the download
        raise CheckpointMismatchError(f"cannot read the PGGAN generator file {path}: {e}") from e
    state, layout, entry = official_generator_state(obj, str(path))
    ours = generator.state_dict()
    what = f"{path}" + (f" (entry '{entry}')" if entry else "")
    if "lod" in state:  # a scalar buffer or parameter, () or (1,) depending on the converter
        if state["lod"].numel() != 1:
            raise CheckpointMismatchError(f"{what}: 'lod' must hold one number, found shape {list(state['lod'].shape)}")
        state = {**state, "lod": state["lod"].reshape(ours["lod"].shape)}

    wrong = [
        f"'{k}': expected {list(ours[k].shape)}, found {list(v.shape)}"
        for k, v in state.items() if k in ours and tuple(v.shape) != tuple(ours[k].shape)
    ]
    if wrong:
        more = f" (and {len(wrong) - 5} more)" if len(wrong) > 5 else ""
        raise CheckpointMismatchError(
            f"{what} does not fit {_describe(generator)}: shape mismatch at {'; '.join(wrong[:5])}{more}. "
            f"The file's shapes suggest {_file_config(state)}"
        )
    missing = sorted((k for k in ours if k not in state and k != "lod"), key=_natural)
    unexpected = sorted((k for k in state if k not in ours), key=_natural)
    if missing or unexpected:
        parts = ([f"missing keys {_sample_keys(missing, 8)}"] if missing else []) + (
            [f"unexpected keys {_sample_keys(unexpected, 8)}"] if unexpected else [])
        raise CheckpointMismatchError(
            f"{what} does not fit {_describe(generator)}: {'; '.join(parts)}. The file's shapes suggest "
            f"{_file_config(state)}"
        )
    if "lod" not in state:
        state = {**state, "lod": ours["lod"]}
    generator.load_state_dict(state, strict=True)
    lod = float(generator.lod)
    if lod != 0.0:
        log.warning("%s has lod=%s: the generator outputs %d px until lod is set to 0", what, lod,
                    generator.resolution // 2 ** int(lod))
    report = {"path": str(path), "layout": layout, "entry": entry, "loaded": len(state), "lod": lod}
    log.info("loaded the PGGAN generator %s (%s layout): %d tensors", what, layout, len(state))
    return report

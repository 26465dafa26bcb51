"""Checkpoint helpers: refuse a checkpoint of another model class, load weights only (``init_from``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from inpaint.models.base import CHECKPOINT_CLASS_KEY, class_path

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not belong to the model the config builds."""


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint on the CPU with ``weights_only=True`` (no arbitrary code from pickles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file or a foreign pickle
        raise CheckpointMismatchError(f"cannot read checkpoint {path}: {e}") from e


def _config_name_for(target: str, model_conf_dir: Path | None) -> str | None:
    """The ``model=`` choice whose ``_target_`` is ``target`` (for the error message)."""
    if model_conf_dir is None or not Path(model_conf_dir).is_dir():
        return None
    for f in sorted(Path(model_conf_dir).glob("*.yaml")):
        if any(line.strip() == f"_target_: {target}" for line in f.read_text().splitlines()):
            return f.stem
    return None


def check_checkpoint_class(path: str | Path, model: torch.nn.Module, model_conf_dir: Path | None = None) -> dict:
    """Raise :class:`CheckpointMismatchError` naming both classes if ``path`` was saved by another model."""
    ckpt = read_checkpoint(path)
    saved = ckpt.get(CHECKPOINT_CLASS_KEY)
    wanted = class_path(model)
    if saved is None:
        raise CheckpointMismatchError(
            f"checkpoint {path} was not written by inpaint (no '{CHECKPOINT_CLASS_KEY}' entry); the config "
            f"builds {wanted}. To start from foreign weights use init_from={path}"
        )
    if saved != wanted:
        hint = _config_name_for(saved, model_conf_dir)
        fix = f"run with model={hint}" if hint else "choose the matching model= config"
        raise CheckpointMismatchError(
            f"checkpoint {path} holds a {saved} but the config builds a {wanted}: {fix}, or pass a checkpoint "
            "of this model"
        )
    return ckpt


def load_weights(model: torch.nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load the tensors of ``path`` whose names and shapes match ``model`` (weights only: no optimizer or
    step count). Logs and returns which keys loaded, which are missing, unexpected or of another shape."""
    ckpt = read_checkpoint(path)
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"init_from={path}: no state_dict found in the file")
    own = model.state_dict()
    loaded = [k for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)]
    report = {
        "loaded": loaded,
        "missing": [k for k in own if k not in loaded],
        "unexpected": [k for k in state if k not in own],
        "shape_mismatch": [k for k, v in state.items() if k in own and tuple(own[k].shape) != tuple(v.shape)],
    }
    if not loaded:
        raise CheckpointMismatchError(
            f"init_from={path}: none of its {len(state)} tensors match {class_path(model)} "
            f"(e.g. {list(state)[:3]} vs {list(own)[:3]})"
        )
    model.load_state_dict({k: state[k] for k in loaded}, strict=False)
    log.info(
        "init_from=%s: loaded %d/%d tensors; missing %d %s; unexpected %d %s; shape mismatch %d %s",
        path, len(loaded), len(own),
        len(report["missing"]), report["missing"][:5],
        len(report["unexpected"]), report["unexpected"][:5],
        len(report["shape_mismatch"]), report["shape_mismatch"][:5],
    )
    return report

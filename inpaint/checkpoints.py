"""Checkpoint helpers at the level of a run: refuse a checkpoint of another model class (``ckpt_path=``),
load weights only (``init_from=``).

Reading a checkpoint safely (:func:`read_checkpoint`) and the model-class tag (:data:`CHECKPOINT_CLASS_KEY`,
:func:`class_path`) live one layer lower, in :mod:`inpaint.checkpoint_io`, and the errors in
:mod:`inpaint.errors`; both are re-exported here for the callers that import them from this module."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inpaint.checkpoint_io import CHECKPOINT_CLASS_KEY, class_path, read_checkpoint
from inpaint.config_dir import CONF_DIR
from inpaint.errors import CheckpointMismatchError, NotACheckpointError, UnsafeCheckpointError
from inpaint.nets.state_check import state_dict_problems

if TYPE_CHECKING:
    from inpaint.models.base import InpaintModule

log = logging.getLogger(__name__)

__all__ = [
    "CHECKPOINT_CLASS_KEY",
    "CheckpointMismatchError",
    "NotACheckpointError",
    "UnsafeCheckpointError",
    "check_checkpoint_class",
    "class_path",
    "load_weights",
    "read_checkpoint",
]


def _default_model_conf_dir() -> Path | None:
    return CONF_DIR / "model"


def _config_name_for(target: str, model_conf_dir: Path | None) -> str | None:
    """The ``model=`` choice whose ``_target_`` is ``target`` (for the error message)."""
    if model_conf_dir is None or not Path(model_conf_dir).is_dir():
        return None
    for f in sorted(Path(model_conf_dir).glob("*.yaml")):
        if any(line.strip() == f"_target_: {target}" for line in f.read_text().splitlines()):
            return f.stem
    return None


def _refuse_other_class(ckpt: dict, path: str | Path, model: InpaintModule, model_conf_dir: Path | None,
                        option: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming both classes (and the ``model=`` config that builds the
    saved one) when ``ckpt`` was saved by an inpaint model of another class than ``model``."""
    saved = ckpt.get(CHECKPOINT_CLASS_KEY)
    wanted = class_path(model)
    if saved is None or saved == wanted:
        return
    if option == "init_from" and saved in model.needs().init_from_classes:
        return  # a model that starts from another's weights, e.g. the WGAN context encoder from the L2 one
    hint = _config_name_for(saved, _default_model_conf_dir() if model_conf_dir is None else model_conf_dir)
    fix = f"run with model={hint}" if hint else "choose the matching model= config"
    raise CheckpointMismatchError(
        f"{option}={path}: checkpoint {path} holds a {saved} but the config builds a {wanted}: {fix}, or pass "
        "a checkpoint of this model"
    )


def resolve_checkpoint(path: str | Path, prefer: tuple[str, ...] = ("best.ckpt", "last.ckpt"),
                       option: str = "ckpt_path") -> str:
    """``path`` itself when it is a file; a run directory (or its ``checkpoints/``) gives its first checkpoint of
    ``prefer`` (the best for a test, the last to resume), said in the log; else a one-line error."""
    p = Path(path)
    if not p.is_dir():
        return str(path)
    for name in prefer:
        for cand in (p / "checkpoints" / name, p / name):
            if cand.is_file():
                log.info("%s=%s is a directory: using %s", option, path, cand)
                return str(cand)
    raise FileNotFoundError(f"{option}={path} is a directory without {' or '.join(prefer)} (in it or its "
                            "checkpoints/): give a .ckpt file or a run directory")


def check_state_dict(state: dict, model: torch.nn.Module, path: str | Path, option: str = "ckpt_path") -> None:
    """Raise :class:`CheckpointMismatchError` in one line when the checkpoint's weights do not fit ``model``
    (missing or unexpected keys, other shapes; a few named): the same class built with other options, e.g.
    another ``model.net.widths``, or an edited file."""
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{option}={path}: the checkpoint holds no state_dict")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = state_dict_problems({k: v for k, v in state.items() if torch.is_tensor(v)}, expected)
    if problems:
        raise CheckpointMismatchError(
            f"{option}={path}: its weights do not fit the {type(model).__name__} this config builds: "
            f"{'; '.join(problems)}. Use the model options it was trained with (its run's .hydra/config.yaml), "
            "or a checkpoint of this model"
        )


def check_checkpoint_class(path: str | Path, model: torch.nn.Module, model_conf_dir: Path | None = None) -> dict:
    """Raise :class:`CheckpointMismatchError` naming both classes if ``path`` was saved by another model, or
    naming the keys when its weights do not fit ``model`` (:func:`check_state_dict`)."""
    ckpt = read_checkpoint(path, "ckpt_path")
    if ckpt.get(CHECKPOINT_CLASS_KEY) is None:
        raise CheckpointMismatchError(
            f"checkpoint {path} was not written by inpaint (no '{CHECKPOINT_CLASS_KEY}' entry); the config "
            f"builds {class_path(model)}. To start from foreign weights use init_from={path}"
        )
    _refuse_other_class(ckpt, path, model, model_conf_dir, "ckpt_path")
    check_state_dict(ckpt.get("state_dict"), model, path)
    return ckpt


def load_weights(model: torch.nn.Module, path: str | Path, model_conf_dir: Path | None = None) -> dict[str, list[str]]:
    """Load the tensors of ``path`` whose names and shapes match ``model`` (weights only: no optimizer or
    step count). Logs and returns which keys loaded, which are missing, unexpected or of another shape.

    A checkpoint written by inpaint for another model class is refused like ``ckpt_path=`` refuses it,
    unless the model lists that class in its ``init_from_classes``; a foreign file (no inpaint class entry,
    e.g. a plain state dict) loads whatever fits."""
    ckpt = read_checkpoint(path, "init_from")
    _refuse_other_class(ckpt, path, model, model_conf_dir, "init_from")
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

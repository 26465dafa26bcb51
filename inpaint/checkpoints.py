"""Checkpoint helpers: refuse a checkpoint of another model class, load weights only (``init_from``)."""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

import torch

from inpaint.models.base import CHECKPOINT_CLASS_KEY, class_path

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not belong to the model the config builds."""


class NotACheckpointError(CheckpointMismatchError):
    """A file torch cannot read as a checkpoint at all (random bytes, a text file, a truncated file)."""


class UnsafeCheckpointError(CheckpointMismatchError):
    """A real checkpoint whose pickle names a Python object that ``weights_only=True`` loading refuses."""


# torch's weights-only unpickler names the refused object like "unsupported GLOBAL posix.system" or
# "Unsupported global: GLOBAL os.system"; anything else it rejects is bytes that are no pickle at all
_REFUSED_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def read_checkpoint(path: str | Path, option: str = "ckpt_path") -> dict:
    """Load a checkpoint on the CPU with ``weights_only=True`` (no arbitrary code from pickles).

    A file that is no checkpoint raises :class:`NotACheckpointError`; a checkpoint whose pickle holds an
    object outside torch's allow-list raises :class:`UnsafeCheckpointError`. Both messages name the file and
    ``option`` (the config option that gave it), without torch's advice to load with ``weights_only=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option}={path}: checkpoint does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = _REFUSED_GLOBAL.search(str(e))
        if refused:
            raise UnsafeCheckpointError(
                f"{option}={path} was refused for safety: its pickle would import {refused.group(1)}, which "
                "loading with weights_only=True does not allow (it could run code). Re-save the checkpoint "
                "with plain tensors and containers, or pass a checkpoint written by inpaint.run"
            ) from None
        raise _not_a_checkpoint(path, option, "it is no pickle that torch can read") from None
    except Exception as e:  # zip/tar errors, EOFError (empty or truncated), KeyError (text), ...
        raise _not_a_checkpoint(path, option, f"torch.load fails with {type(e).__name__}") from None
    if not isinstance(ckpt, dict):
        raise _not_a_checkpoint(path, option, f"it holds a {type(ckpt).__name__}, not a dict")
    return ckpt


def _not_a_checkpoint(path: Path, option: str, why: str) -> NotACheckpointError:
    return NotACheckpointError(
        f"{option}={path} is not a checkpoint ({why}): give a .ckpt written by inpaint.run (RUN/checkpoints/"
        "best.ckpt) or a file saved with torch.save"
    )


def _default_model_conf_dir() -> Path | None:
    from inpaint.run import CONF_DIR  # lazy: inpaint.run imports this module

    return CONF_DIR / "model"


def _config_name_for(target: str, model_conf_dir: Path | None) -> str | None:
    """The ``model=`` choice whose ``_target_`` is ``target`` (for the error message)."""
    if model_conf_dir is None or not Path(model_conf_dir).is_dir():
        return None
    for f in sorted(Path(model_conf_dir).glob("*.yaml")):
        if any(line.strip() == f"_target_: {target}" for line in f.read_text().splitlines()):
            return f.stem
    return None


def _refuse_other_class(ckpt: dict, path: str | Path, model: torch.nn.Module, model_conf_dir: Path | None,
                        option: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming both classes (and the ``model=`` config that builds the
    saved one) when ``ckpt`` was saved by an inpaint model of another class than ``model``."""
    saved = ckpt.get(CHECKPOINT_CLASS_KEY)
    wanted = class_path(model)
    if saved is None or saved == wanted:
        return
    if option == "init_from" and saved in getattr(model, "init_from_classes", ()):
        return  # a model that starts from another's weights, e.g. the WGAN context encoder from the L2 one
    hint = _config_name_for(saved, _default_model_conf_dir() if model_conf_dir is None else model_conf_dir)
    fix = f"run with model={hint}" if hint else "choose the matching model= config"
    raise CheckpointMismatchError(
        f"{option}={path}: checkpoint {path} holds a {saved} but the config builds a {wanted}: {fix}, or pass "
        "a checkpoint of this model"
    )


def check_checkpoint_class(path: str | Path, model: torch.nn.Module, model_conf_dir: Path | None = None) -> dict:
    """Raise :class:`CheckpointMismatchError` naming both classes if ``path`` was saved by another model."""
    ckpt = read_checkpoint(path, "ckpt_path")
    if ckpt.get(CHECKPOINT_CLASS_KEY) is None:
        raise CheckpointMismatchError(
            f"checkpoint {path} was not written by inpaint (no '{CHECKPOINT_CLASS_KEY}' entry); the config "
            f"builds {class_path(model)}. To start from foreign weights use init_from={path}"
        )
    _refuse_other_class(ckpt, path, model, model_conf_dir, "ckpt_path")
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

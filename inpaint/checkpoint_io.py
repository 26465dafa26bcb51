"""Reading a checkpoint safely, and the tag that says which model class wrote it.

The low level of checkpoint handling: :func:`read_checkpoint` (``torch.load`` with ``weights_only=True``, with
one clear error for a file that is no checkpoint and one for a pickle that would run code),
:data:`CHECKPOINT_CLASS_KEY` (the entry ``InpaintModule.on_save_checkpoint`` writes) and :func:`class_path`.
It imports no model, so the models (``mganprior`` reading its prior) use it as freely as
:mod:`inpaint.checkpoints`, which adds the run-level checks (a checkpoint of another model class, weights-only
``init_from``). ``inpaint.models.base`` and ``inpaint.checkpoints`` re-export these names.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from inpaint.errors import NotACheckpointError, UnsafeCheckpointError

__all__ = ["CHECKPOINT_CLASS_KEY", "IMAGE_SIZE_KEY", "class_path", "read_checkpoint"]

#: the checkpoint entry naming the model class that wrote it (``module.QualName``)
CHECKPOINT_CLASS_KEY = "inpaint_model_class"
#: the checkpoint entry holding the ``[height, width]`` of the images the model was trained on (``inpaint.fill``
#: works at that scale on larger photos)
IMAGE_SIZE_KEY = "inpaint_image_size"

# torch's weights-only unpickler names the refused object like "unsupported GLOBAL posix.system" or
# "Unsupported global: GLOBAL os.system"; anything else it rejects is bytes that are no pickle at all
_REFUSED_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def class_path(obj_or_cls) -> str:
    """``module.QualName`` of a class, or of an object's class."""
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


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

"""The user-facing errors: what a wrong input raises (a bad checkpoint, an unreadable image, a file whose
checksum differs from the published one, weights that are not available), reported by the command-line
entry points as one message without a stack trace (``inpaint.cli.USER_ERRORS``).

This module is the bottom of the layers (``[tool.importlinter]`` in pyproject.toml): it imports nothing of
``inpaint`` and no third-party package, so any module at any layer can raise these and any caller can catch
them without importing what raised them. The old locations (``inpaint.checkpoints.CheckpointMismatchError``,
``inpaint.data.io.ImageReadError``, ``inpaint.weights.WeightsUnavailableError``, ...) re-export the same
classes.
"""

from __future__ import annotations

import os

__all__ = [
    "CheckpointMismatchError",
    "ChecksumError",
    "ImageReadError",
    "NotACheckpointError",
    "RunInterrupted",
    "UnsafeCheckpointError",
    "WeightsChecksumError",
    "WeightsUnavailableError",
]


# ------------------------------------------------------------------------------------------- checkpoints
class CheckpointMismatchError(ValueError):
    """A checkpoint that does not belong to the model the config builds."""


class NotACheckpointError(CheckpointMismatchError):
    """A file torch cannot read as a checkpoint at all (random bytes, a text file, a truncated file)."""


class UnsafeCheckpointError(CheckpointMismatchError):
    """A real checkpoint whose pickle names a Python object that ``weights_only=True`` loading refuses."""


# ------------------------------------------------------------------------------------------- images
class ImageReadError(RuntimeError):
    """An image file (or array) could not be read or converted to RGB uint8.

    The message names the file and the reason. ``path`` and ``reason`` are kept as
    attributes when given; the single-message constructor keeps the exception
    re-raisable by ``torch.utils.data`` worker processes.
    """

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason

    @classmethod
    def for_file(cls, path: str | os.PathLike[str], reason: str) -> ImageReadError:
        """Build the standard error ``cannot read image '<path>': <reason>``."""
        return cls(f"cannot read image '{path}': {reason}", path=str(path), reason=reason)


# ------------------------------------------------------------------------------------------- downloads
class ChecksumError(ValueError):
    """A file's checksum differs from the one its owners publish."""


class WeightsUnavailableError(FileNotFoundError):
    """A weight file is neither in the cache nor downloadable now. The message is self-contained (which
    file, where to put it, where to get it, how to run without it)."""


class WeightsChecksumError(ValueError):
    """A weight file's SHA-256 differs from the registry's."""


class RunInterrupted(Exception):
    """A stop signal (SIGTERM, SIGINT) ended a run; ``signum`` is the signal, ``128 + signum`` the exit status."""

    def __init__(self, signum: int, step: int | None = None, reported: bool = False) -> None:
        #: ``reported``: the run has printed its line and written its card
        self.signum, self.step, self.reported = int(signum), step, reported
        super().__init__(f"stopped by signal {self.signum}" + (f" at step {step}" if step is not None else ""))

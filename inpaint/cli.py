"""What the command-line entry points (``run``, ``predict``, ``prepare``) share: where the configs are
(re-exported from :mod:`inpaint.config_dir`), which errors are the user's (one message, no stack trace;
our own are defined in :mod:`inpaint.errors`), and a console and log file that tell the whole story.

Logging: Hydra configures the root logger (console + ``run.log`` / ``predict.log`` in the run directory,
``conf/hydra/job_logging/inpaint.yaml``). :func:`setup_logging` sends Lightning's own loggers and Python
warnings there too, drops a few messages that are noise on every run, and :func:`echo` prints a result to
the console and records it in the log file. A user error is printed to stderr and written to the log file
by :func:`report_user_error`.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from inpaint.config_dir import CONF_DIR, find_conf_dir
from inpaint.errors import CheckpointMismatchError, ImageReadError

if TYPE_CHECKING:
    import lightning as L

__all__ = ["CONF_DIR", "NOISE", "USER_ERRORS", "ConsoleFormatter", "echo", "find_conf_dir", "guarded",
           "build_datamodule", "build_mask", "instantiate", "plain", "report_user_error", "setup_logging", "user_message"]

#: errors caused by the user's input: reported as one message, without a stack trace
USER_ERRORS = (
    FileNotFoundError,
    NotADirectoryError,
    ValueError,
    ImageReadError,
    CheckpointMismatchError,
    FloatingPointError,
    MissingMandatoryValue,  # a `???` option left unset, e.g. data.root
)

#: the header torch puts before an exception re-raised from a DataLoader worker
_WORKER_WRAP = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback", re.S)


def user_message(e: BaseException) -> str:
    """The report of a user error: its message, without the traceback of a DataLoader worker."""
    if isinstance(e, MissingMandatoryValue) and getattr(e, "full_key", None):
        return f"{e.full_key} is not set (it has no default): add {e.full_key}=... to the command"
    text = str(e)
    if _WORKER_WRAP.match(text):
        # "...Traceback...\n  File ...\npackage.module.ImageReadError: <the message>": keep the message
        last = list(re.finditer(rf"^(?:[\w.]+\.)?{type(e).__name__}: ", text, re.M))
        if last:
            text = text[last[-1].end():].strip()
    return text


def instantiate(node, **kwargs):
    """``hydra.utils.instantiate`` that re-raises our own errors unwrapped, so the message reads cleanly."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, USER_ERRORS):
            raise cause from None
        raise


# ------------------------------------------------------------------------------------------- logging
#: messages (regular expressions) that are noise on every run, with why they are dropped
NOISE = {
    # advertisements for Lightning's cloud products
    r"💡 Tip": "logging",
    # inpaint.run.build_trainer adds the plain (logged) model summary on purpose, so run.log has it
    r"Trainer already configured with model summary callbacks": "logging",
    # torch deprecated LeafSpec; Lightning's pytree helper still uses it (not ours to fix)
    r".*isinstance\(treespec, LeafSpec\)": "warning",
    # our evaluation metrics are reduced across processes by torchmetrics before they are logged, so
    # Lightning's advice to sync them again does not apply (InpaintModule._finish_eval)
    r"It is recommended to use `self.log\('(val|test)/": "warning",
}


class _DropNoise(logging.Filter):
    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(p.match(msg) for p in self.patterns)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"{category.__name__}: {message} ({Path(filename).name}:{lineno})"


def setup_logging() -> None:
    """Route Lightning's loggers and Python warnings to the handlers Hydra configured, minus :data:`NOISE`."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    for pattern, kind in NOISE.items():
        if kind == "warning":
            warnings.filterwarnings("ignore", message=pattern)
    drop = _DropNoise([p for p, kind in NOISE.items() if kind == "logging"])
    for handler in logging.getLogger().handlers:
        handler.addFilter(drop)
    warnings.formatwarning = _format_warning
    logging.captureWarnings(True)


def _to_log_files(logger: str, level: int, text: str, exc_info=None) -> None:
    """Write one record to the log file(s) only (the console has it already, or Hydra prints it)."""
    record = logging.getLogger(logger).makeRecord(logger, level, "", 0, text, None, exc_info)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def echo(text: str, logger: str = "inpaint", file=None) -> None:
    """Print ``text`` to the console (stdout, or ``file``) and record it in the run's log file."""
    print(text, file=file or sys.stdout, flush=True)
    _to_log_files(logger, logging.ERROR if file is sys.stderr else logging.INFO, text)


def report_user_error(e: BaseException, logger: str) -> int:
    """Print the one-line report of a user error to stderr and the log file; returns the exit status.
    ``HYDRA_FULL_ERROR=1`` re-raises it for the traceback."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise e
    echo(f"\nerror: {user_message(e)}\n(set HYDRA_FULL_ERROR=1 for the traceback)", logger, file=sys.stderr)
    return 1


def guarded(job: Callable, logger: str) -> Callable:
    """Wrap a Hydra task function: logging set up first, user errors reported as one message (exit 1)."""

    @functools.wraps(job)  # Hydra names the job after the wrapped function's module
    def task(cfg):
        setup_logging()
        try:
            return job(cfg)
        except USER_ERRORS as e:
            _record_failure(cfg, f"{type(e).__name__}: {user_message(e)}")
            sys.exit(report_user_error(e, logger))
        except Exception as e:
            # Hydra prints the traceback to the console; keep it in the log file too
            _to_log_files(logger, logging.ERROR, "the run failed:", sys.exc_info())
            _record_failure(cfg, f"{type(e).__name__}: {e}")
            raise

    return task


def _record_failure(cfg, error: str) -> None:
    """A failed run leaves a results card saying why (``card.json`` with ``status: failed``) in its run
    directory, when it has one, so ``python -m inpaint.report`` can list it."""
    try:
        from inpaint.evaluation.card import write_failed_card

        write_failed_card(cfg, error)
    except Exception as e:  # the original error matters more than a card that could not be written
        logging.getLogger(__name__).warning("could not write the failed run's card: %s", e)


class ConsoleFormatter(logging.Formatter):
    """Plain messages on the console; warnings and errors carry their level."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        return text


def plain(node) -> dict:
    """A config mapping (or None) as a plain, resolved dict."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})


# ------------------------------------------------------------------------------------------- data of a config
def build_mask(cfg: DictConfig, mask_ratio: Sequence[float] | None = None):
    """The configured mask generator; ``mask_ratio`` restricts it to one hole-ratio range."""
    mask_cfg = cfg.mask
    if mask_ratio is not None:
        if "ratio" not in mask_cfg:
            raise ValueError(
                f"eval.per_bucket=true needs a mask generator with a hole-ratio option (mask=nvidia, freeform "
                f"or blocks); {mask_cfg._target_} has none. Use eval.per_bucket=false with this mask."
            )
        mask_cfg = OmegaConf.merge(mask_cfg, {"ratio": [float(r) for r in mask_ratio]})
    return instantiate(mask_cfg)


def build_datamodule(cfg: DictConfig, mask_ratio: Sequence[float] | None = None) -> L.LightningDataModule:
    """The configured DataModule; ``mask_ratio`` restricts the mask generator to one hole-ratio range."""
    return instantiate(cfg.data, mask=build_mask(cfg, mask_ratio), seed=cfg.seed)

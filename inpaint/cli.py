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
import signal
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
from inpaint.errors import CheckpointMismatchError, ImageReadError, RunInterrupted

if TYPE_CHECKING:
    import lightning as L

__all__ = ["CONF_DIR", "NOISE", "USER_ERRORS", "ConsoleFormatter", "echo", "find_conf_dir", "guarded",
           "build_datamodule", "build_mask", "instantiate", "plain", "SignalWatch", "report_user_error", "setup_logging", "user_message"]

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
    """Route Lightning's loggers and Python warnings to the handlers Hydra configured, minus :data:`NOISE`.

    Lightning is imported here (a job is starting): importing it gives its loggers handlers of their own, which
    must exist before they can be cleared."""
    import lightning.pytorch  # noqa: F401

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
        try:
            setup_logging()
            return job(cfg)
        except RunInterrupted as e:  # exit 128 + signal, like a shell; said once, with a card, by the run or here
            if not e.reported:
                _record_interruption(cfg, e, logger)
            sys.exit(128 + e.signum)
        except USER_ERRORS as e:
            _record_failure(cfg, f"{type(e).__name__}: {user_message(e)}")
            sys.exit(report_user_error(e, logger))
        except Exception as e:
            # Hydra prints the traceback to the console; keep it in the log file too
            _to_log_files(logger, logging.ERROR, "the run failed:", sys.exc_info())
            _record_failure(cfg, f"{type(e).__name__}: {e}")
            raise

    return task


def _record_interruption(cfg, e: RunInterrupted, logger: str) -> None:
    """A stop signal that came before the run could report it (while its job was starting): one line, and a card
    with status ``interrupted``."""
    name = signal.Signals(e.signum).name
    try:
        from inpaint.evaluation.card import write_interrupted_card

        write_interrupted_card(cfg, name, None, None)
    except Exception as err:  # the line below still says what happened
        logging.getLogger(logger).debug("no interrupted card: %s", err)
    echo(f"stopped by {name} before training started; run the same command again", logger, file=sys.stderr)


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


# ------------------------------------------------------------------------------------------- stop signals
class SignalWatch:
    """SIGTERM and SIGINT (Ctrl-C) stop a run cleanly, and the run says so.

    :meth:`install` records the first stop signal (:attr:`signum`). While Lightning runs a loop it has its own
    SIGTERM handler, composed with this one: the loop stops at the end of the current step (``fit`` leaves
    ``last.ckpt`` of that step, :meth:`inpaint.callbacks.LastCheckpoint.on_exception`); a Ctrl-C is sent there as
    a SIGTERM. Outside a loop (composing the config, scanning data, writing the report) the run stops at its next
    :meth:`check`. A second signal stops at once (a second Ctrl-C is Python's ``KeyboardInterrupt``). The entry point turns the stop into a card with status ``interrupted``, one line and
    exit status ``128 + signal``."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    #: the watch installed by the command line (``inpaint.run.main``), which a run adopts
    active: SignalWatch | None = None

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> SignalWatch:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        SignalWatch.active = self
        return self

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}
        if SignalWatch.active is self:
            SignalWatch.active = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum: int, frame: object) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
            logging.getLogger("inpaint").warning("received %s: stopping at the end of the current step",
                                                 signal.Signals(signum).name)
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
        if signal.getsignal(signal.SIGTERM) != self._handle:  # a Lightning loop runs: it stops after this step
            if signum == signal.SIGINT:  # through Lightning's SIGTERM handler, composed with this one
                os.kill(os.getpid(), signal.SIGTERM)
        elif not first:  # outside a loop the run stops at its next check; a second signal stops it now
            raise RunInterrupted(signum)

    def check(self) -> None:
        """Raise :class:`~inpaint.errors.RunInterrupted` if a stop signal came (the run calls this between its
        stages: raising from the handler itself could land inside an import or a file write)."""
        if self.signum is not None:
            raise RunInterrupted(self.signum)


# ------------------------------------------------------------------------------------------- override types
def _type_word(value: object) -> str:
    return {bool: "true or false", int: "an integer", float: "a number"}.get(type(value), type(value).__name__)


def check_override_types(overrides: Sequence[str], config_name: str = "train") -> None:
    """Refuse an override whose value cannot be of its key's type, before anything runs: ``trainer.max_steps=abc``
    names the key, the value and the type its default has (Lightning would fail later with "'<' not supported
    between 'str' and 'int'"). Numbers and booleans are checked (a word where a number or true/false belongs);
    keys that are null or structured by default, ``+`` additions and sweep ranges are left to the config. When
    the group choices themselves do not compose, nothing is checked here: Hydra reports that itself."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides([o for o in overrides if not o.startswith("-")])
    except Exception:
        return  # Hydra reports a malformed override itself
    choices = [o.input_line for o in parsed if "." not in o.key_or_group and not o.is_sweep_override()
               and not o.key_or_group.startswith("hydra") and not o.is_delete()]
    if GlobalHydra.instance().is_initialized():
        return
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            base = compose(config_name, overrides=choices)
    except Exception:
        return
    for o in parsed:
        key = o.key_or_group
        if o.is_add() or o.is_delete() or "." not in key or key.startswith("hydra"):
            continue
        try:
            default = OmegaConf.select(base, key, throw_on_missing=False)
        except Exception:
            continue
        if type(default) not in (bool, int, float):
            continue
        try:
            value = o.value()
        except Exception:
            continue
        values = list(getattr(value, "list", None) or []) if o.is_sweep_override() else [value]
        for v in values:
            wrong = not isinstance(v, bool) if isinstance(default, bool) else isinstance(v, (str, bool))
            if wrong:
                raise ValueError(f"{key}={v!r}: {key} takes {_type_word(default)} (its default is {default!r})")

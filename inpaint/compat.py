"""Every read of a third-party library's private attribute, each behind one named function.

Lightning and Hydra keep some of what we need in private attributes (no public accessor exists). Reading
them here, and nowhere else, means that an upgrade that renames one breaks one function, which
``tests/test_compat.py`` exercises against the installed libraries' real objects, instead of a line hidden in
a callback. Each function says the versions it was checked on and what it returns when the attribute is
gone (a documented fallback, never an AttributeError in the middle of a run).

Checked on: lightning 2.6.6, hydra-core 1.3.8, wandb 0.31.0, torch 2.13.0 (the versions installed when this
was written; pyproject.toml allows lightning >= 2.4, which was not checked).

This module imports nothing of ``inpaint`` and no third-party package at import time (the functions work on
the objects they are given), so any layer may use it.

Not wrapped, because they are a subclass using its base class's own members rather than a read of another
object's internals: the private methods and state that our subclasses of Lightning classes override or use,
listed in :data:`SUBCLASS_PRIVATE_API` (``tests/test_compat.py`` checks each still exists).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SUBCLASS_PRIVATE_API",
    "attached_trainer",
    "cpu_has_native_bf16",
    "ddp_find_unused_parameters",
    "defer_stop_signal",
    "job_return_value",
    "validation_follows_batch",
    "wandb_init_settings",
]

#: private members of Lightning classes that our subclasses override, call or keep state in:
#: ``{class path: (member, ...)}``, with the subclass that relies on them in the comment
SUBCLASS_PRIVATE_API: dict[str, tuple[str, ...]] = {
    # inpaint.callbacks.StepProgressBar
    "lightning.pytorch.callbacks.RichProgressBar": (
        "_get_train_description", "_initialize_train_progress_bar_id", "_update", "_update_metrics",
    ),
    # inpaint.loggers._ContinuingWriter
    "lightning.pytorch.loggers.csv_logs.ExperimentWriter": ("_check_log_dir_exists", "_fs"),
    # inpaint.loggers.ContinuingCSVLogger
    "lightning.pytorch.loggers.CSVLogger": ("_experiment",),
    # inpaint.loggers.ContinuingTensorBoardLogger
    "lightning.pytorch.loggers.TensorBoardLogger": ("_experiment", "_kwargs"),
}


def ddp_find_unused_parameters(strategy: Any) -> bool:
    """Whether a DDP strategy was configured with ``find_unused_parameters=True``.

    Reads ``DDPStrategy._ddp_kwargs`` (the keyword arguments it passes to ``DistributedDataParallel``;
    checked on lightning 2.6.6). Fallback when that attribute is missing: the ``find_unused_parameters``
    of the ``DistributedDataParallel`` wrapper when the strategy has already wrapped the model
    (``strategy.model``), else False (torch's default), so a check that relies on it errs on the side of
    asking for the option."""
    kwargs = getattr(strategy, "_ddp_kwargs", None)
    if isinstance(kwargs, dict):
        return bool(kwargs.get("find_unused_parameters", False))
    from torch.nn.parallel import DistributedDataParallel

    wrapped = getattr(strategy, "model", None)
    if isinstance(wrapped, DistributedDataParallel):
        return bool(wrapped.find_unused_parameters)
    return False


def validation_follows_batch(trainer: Any) -> bool:
    """During ``fit``, at ``on_train_batch_end``: whether Lightning runs a validation right after this
    training batch (the batch's ``val_check_interval`` falls on it, or its epoch ends with one).

    Asks the training epoch loop's own decision, ``trainer.fit_loop.epoch_loop._should_check_val_fx``,
    with the fit loop's ``trainer.fit_loop._data_fetcher`` (checked on lightning 2.6.6). Fallback when
    either is missing, or outside a running ``fit`` (no data fetcher yet): False. A periodic
    ``last.ckpt`` (``inpaint.callbacks.LastCheckpoint``) is then saved at once instead of after the
    validation, so a run resumed from it repeats nothing but lacks that one validation."""
    fit_loop = getattr(trainer, "fit_loop", None)
    should_check = getattr(getattr(fit_loop, "epoch_loop", None), "_should_check_val_fx", None)
    fetcher = getattr(fit_loop, "_data_fetcher", None)
    if should_check is None or fetcher is None:
        return False
    return bool(should_check(fetcher))


def defer_stop_signal(trainer: Any, deferred: bool | None = None) -> bool:
    """Take Lightning's record of a received stop signal off the trainer (``deferred=None``: returns whether there
    was one), or put it back (``deferred=True``), so that a signal arriving during a validation inside ``fit``
    stops the run after that validation instead of in its middle (where no exact checkpoint can be taken).

    The record is ``trainer._signal_connector.received_sigterm`` (what ``trainer.received_sigterm`` reads; the
    evaluation loop raises ``SIGTERMException`` after a batch when it is set; checked on lightning 2.6.6).
    Fallback when it is missing: nothing is taken (False) or put back, so Lightning stops mid-validation as it
    would without us."""
    connector = getattr(trainer, "_signal_connector", None)
    if connector is None or not hasattr(connector, "received_sigterm"):
        return False
    if deferred:
        connector.received_sigterm = True
        return True
    was = bool(connector.received_sigterm)
    connector.received_sigterm = False
    return was


def wandb_init_settings(logger: Any) -> dict[str, Any]:
    """The keyword arguments a ``WandbLogger`` will pass to ``wandb.init`` when its run starts: the live
    dict, so a change to it applies to that run.

    Reads ``WandbLogger._wandb_init`` (checked on lightning 2.6.6 with wandb 0.31.0). Fallback when it is
    missing: a new empty dict, which the logger never reads (changes to it have no effect; for
    ``inpaint.loggers.wandb_logger`` that means wandb warns once that ``anonymous`` has no effect)."""
    init = getattr(logger, "_wandb_init", None)
    return init if isinstance(init, dict) else {}


_MISSING = object()


def attached_trainer(callback: Any) -> Any | None:
    """The Trainer a progress bar callback is attached to, or None before Lightning has set it up.

    Reads ``ProgressBar._trainer`` (checked on lightning 2.6.6): the public ``trainer`` property raises
    instead of returning None. Fallback when the attribute is missing: that public property, with None
    when it raises."""
    trainer = getattr(callback, "_trainer", _MISSING)
    if trainer is not _MISSING:
        return trainer
    try:
        return callback.trainer
    except (AttributeError, TypeError, RuntimeError):
        return None


def job_return_value(job_return: Any) -> Any:
    """What a Hydra job returned, or for a failed job the exception it raised, without re-raising it.

    Reads ``JobReturn._return_value`` (checked on hydra-core 1.3.8): the public ``return_value`` property
    re-raises a failed job's exception and writes "Error executing job" to stderr. Fallback when the
    attribute is missing: that property, returning the exception it raises (Hydra's stderr line then
    appears)."""
    value = getattr(job_return, "_return_value", _MISSING)
    if value is not _MISSING:
        return value
    try:
        return job_return.return_value
    except Exception as e:
        return e


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has a fast bf16 path on this CPU (bf16 instructions, AVX512-BF16 / AMX, or AVX-512 by
    conversion), so bf16 autocast speeds training up rather than being emulated slowly.

    Reads ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` (checked on torch 2.13.0; no public accessor).
    Fallback when it is missing or fails: False (fp32, the safe choice)."""
    import torch

    probe = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False

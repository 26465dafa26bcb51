"""inpaint.compat against the installed Lightning, Hydra and wandb: each function that reads a private
attribute is exercised on the real objects it is meant for (a real Trainer, strategy, logger, job return),
so an upgrade that renames the attribute fails here, naming the function, instead of deep inside a run."""

from __future__ import annotations

import importlib
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import DDPStrategy

from inpaint import compat
from inpaint.callbacks import StepProgressBar


def _trainer(**kwargs) -> L.Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0)
    return L.Trainer(**{**options, **kwargs})


def test_ddp_find_unused_parameters_reads_the_strategy_configuration():
    assert compat.ddp_find_unused_parameters(DDPStrategy(find_unused_parameters=True)) is True
    assert compat.ddp_find_unused_parameters(DDPStrategy(find_unused_parameters=False)) is False
    assert compat.ddp_find_unused_parameters(DDPStrategy()) is False
    # the registered names the configs use (trainer.strategy=ddp_find_unused_parameters_true), as the Trainer
    # builds them
    trainer = _trainer(strategy="ddp_find_unused_parameters_true")
    assert isinstance(trainer.strategy, DDPStrategy)
    assert compat.ddp_find_unused_parameters(trainer.strategy) is True
    assert compat.ddp_find_unused_parameters(_trainer(strategy="ddp").strategy) is False
    # a strategy without DDP keyword arguments: the fallback (not wrapped in DDP) says False
    assert compat.ddp_find_unused_parameters(_trainer().strategy) is False


class _Record(L.Callback):
    def __init__(self) -> None:
        self.follows: list[bool] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.follows.append(compat.validation_follows_batch(trainer))


def test_validation_follows_batch_matches_lightnings_schedule():
    """During a real fit validating every 2 batches, it is True exactly on the batches a validation
    follows; outside fit (no data fetcher yet) it falls back to False."""
    torch.manual_seed(0)
    record = _Record()
    trainer = _trainer(max_steps=5, val_check_interval=2, limit_val_batches=1, callbacks=[record])
    assert compat.validation_follows_batch(trainer) is False
    trainer.fit(BoringModel())
    assert record.follows == [False, True, False, True, False]


def test_validation_follows_batch_sees_the_epoch_end():
    """Epoch-based validation (4 batches an epoch): the last batch of each epoch is followed by one."""
    record = _Record()
    trainer = _trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=1, callbacks=[record])
    trainer.fit(BoringModel())
    assert record.follows == [False, False, False, True] * 2


def test_wandb_init_settings_is_the_live_init_dict(tmp_path):
    """The settings the logger will pass to wandb.init, live: a change reaches the run (nothing is started
    here: the logger creates its run lazily)."""
    logger = WandbLogger(project="compat-test", save_dir=str(tmp_path), offline=True)
    settings = compat.wandb_init_settings(logger)
    assert settings["project"] == "compat-test" and settings["dir"] == str(tmp_path)
    assert "anonymous" in settings  # why inpaint.loggers.wandb_logger drops it
    settings["tags"] = ["x"]
    assert compat.wandb_init_settings(logger)["tags"] == ["x"]
    # and the one caller: inpaint.loggers.wandb_logger leaves `anonymous` out unless asked for
    from inpaint.loggers import wandb_logger

    assert "anonymous" not in compat.wandb_init_settings(wandb_logger(save_dir=str(tmp_path), offline=True))
    # an object that is no WandbLogger: the fallback, an empty dict
    assert compat.wandb_init_settings(object()) == {}


def test_attached_trainer_is_none_until_lightning_sets_the_bar_up():
    bar = StepProgressBar()
    assert compat.attached_trainer(bar) is None
    assert bar._step_based() is False
    trainer = _trainer(max_steps=3, callbacks=[bar], enable_progress_bar=True)
    bar.setup(trainer, BoringModel(), stage="fit")
    assert compat.attached_trainer(bar) is trainer
    assert bar._step_based() is True


def test_job_return_value_reads_a_failed_job_without_reraising(capsys):
    failed = JobReturn()
    failed.status = JobStatus.FAILED
    failed.return_value = ValueError("boom")
    value = compat.job_return_value(failed)
    assert isinstance(value, ValueError) and str(value) == "boom"
    assert capsys.readouterr().err == ""  # Hydra's property would have printed "Error executing job"
    done = JobReturn()
    done.status = JobStatus.COMPLETED
    done.return_value = 0.5
    assert compat.job_return_value(done) == 0.5 == done.return_value


def test_private_members_our_subclasses_rely_on_still_exist(tmp_path):
    """The private methods and state that StepProgressBar, _ContinuingWriter and ContinuingCSVLogger override
    or use (compat.SUBCLASS_PRIVATE_API) exist on the installed Lightning classes and their instances."""
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    instances = {
        "lightning.pytorch.callbacks.RichProgressBar": RichProgressBar(),
        "lightning.pytorch.loggers.csv_logs.ExperimentWriter": ExperimentWriter(log_dir=str(tmp_path / "w")),
        "lightning.pytorch.loggers.CSVLogger": CSVLogger(save_dir=str(tmp_path / "c")),
        "lightning.pytorch.loggers.TensorBoardLogger": TensorBoardLogger(save_dir=str(tmp_path / "t")),
    }
    assert set(instances) == set(compat.SUBCLASS_PRIVATE_API)
    for path, members in compat.SUBCLASS_PRIVATE_API.items():
        module, _, name = path.rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        assert isinstance(instances[path], cls)
        missing = [m for m in members if not hasattr(instances[path], m)]
        assert missing == [], f"{path} no longer has {missing}"


@pytest.mark.parametrize("name", [n for n in compat.__all__ if n != "SUBCLASS_PRIVATE_API"])
def test_every_compat_function_documents_versions_and_fallback(name):
    doc = getattr(compat, name).__doc__ or ""
    assert "checked on" in doc and "allback" in doc, name


def test_cpu_has_native_bf16_agrees_with_the_cpu_flags():
    """torch's probe against the kernel's own list of the CPU's features (Linux): bf16 instructions (AVX-512 BF16,
    AMX) mean yes, no AVX-512 at all means no (oneDNN also runs bf16 on plain AVX-512, by conversion)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system to compare with")
    flags = set(cpuinfo.read_text().split())
    if {"avx512_bf16", "amx_bf16"} & flags:
        assert compat.cpu_has_native_bf16() is True
    elif "avx512bw" not in flags:
        assert compat.cpu_has_native_bf16() is False
    else:
        assert isinstance(compat.cpu_has_native_bf16(), bool)


def test_defer_stop_signal_takes_and_returns_lightnings_record():
    import lightning as L

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert compat.defer_stop_signal(trainer) is False and trainer.received_sigterm is False
    trainer._signal_connector.received_sigterm = True  # what Lightning's handler sets on SIGTERM
    assert compat.defer_stop_signal(trainer) is True and trainer.received_sigterm is False
    compat.defer_stop_signal(trainer, deferred=True)
    assert trainer.received_sigterm is True
    assert compat.defer_stop_signal(object()) is False  # the documented fallback

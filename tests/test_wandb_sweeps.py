"""W&B for sweeps: a resumed run directory continues its W&B run; a multirun's jobs share a group and
carry their overrides (offline, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from inpaint.loggers import existing_wandb_run_id, wandb_logger
from inpaint.run import CONF_DIR


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    import wandb

    wandb.finish()


def test_a_resumed_run_dir_continues_its_wandb_run(tmp_path, offline):
    import wandb

    assert existing_wandb_run_id(tmp_path) is None
    first = wandb_logger(save_dir=str(tmp_path))
    run_id = first.experiment.id
    first.experiment.log({"x": 1})
    wandb.finish()
    assert existing_wandb_run_id(tmp_path) == run_id

    second = wandb_logger(save_dir=str(tmp_path))
    assert second.experiment.id == run_id
    wandb.finish()
    # another run dir starts another W&B run
    other = wandb_logger(save_dir=str(tmp_path / "other"))
    assert other.experiment.id != run_id


def test_newest_run_folder_wins(tmp_path):
    for name in ("offline-run-20260101_100000-aaa111", "run-20260102_090000-bbb222", "latest-run", "debug.log"):
        (tmp_path / "wandb" / name).mkdir(parents=True)
    assert existing_wandb_run_id(tmp_path) == "bbb222"


@pytest.fixture(autouse=True)
def _no_hydra_job_left_behind():
    yield
    HydraConfig.instance().cfg = None  # later tests in this process run outside any Hydra job


def _job(tmp_path: Path, *overrides: str, multirun: bool):
    """Make Hydra's job state what it is inside a job of ``python -m inpaint.run [-m] OVERRIDES``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.sweep.dir={tmp_path / 'my_sweep'}"],
                      return_hydra_config=True)
    out = tmp_path / "my_sweep" / "0"
    (out / ".hydra").mkdir(parents=True)
    with open_dict(cfg):
        cfg.hydra.mode = "MULTIRUN" if multirun else "RUN"
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.overrides.task = list(overrides)
    HydraConfig.instance().set_config(cfg)
    task_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.save(task_cfg, out / ".hydra" / "config.yaml")
    return out


def test_multirun_jobs_are_grouped_by_sweep_and_carry_their_overrides(tmp_path, offline):
    out = _job(tmp_path, "hparams_search=scnn_lr_optuna", "model.optimizer.lr=0.003", multirun=True)
    logger = wandb_logger(save_dir=str(out))
    init = logger._wandb_init
    assert init["group"] == "scnn_lr:my_sweep"
    assert init["config"]["hydra_overrides"] == {"hparams_search": "scnn_lr_optuna", "model.optimizer.lr": "0.003"}
    assert init["config"]["model"]["optimizer"]["lr"] == 0.003 and init["config"]["paths"]["output_dir"] == str(out)


def test_single_runs_have_no_group(tmp_path, offline):
    out = _job(tmp_path, "model.optimizer.lr=0.003", multirun=False)
    assert wandb_logger(save_dir=str(out))._wandb_init["group"] is None
    assert wandb_logger(save_dir=str(out), group="mine")._wandb_init["group"] == "mine"
    # wandb warns about any `anonymous` value on every run; Lightning's default None is left out
    assert "anonymous" not in wandb_logger(save_dir=str(out))._wandb_init

"""Experiment-logger helpers: a W&B logger that runs offline without a key, and logger-agnostic image
and table logging (W&B media, TensorBoard images/text; CSV gets neither, the run dir has both)."""

from __future__ import annotations

import csv
import glob
import logging
import netrc
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from inpaint.compat import wandb_init_settings
from inpaint.overrides import parse_overrides

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    """True when W&B can authenticate: WANDB_API_KEY is set or ``wandb login`` wrote a netrc entry."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        rc = netrc.netrc(os.environ.get("NETRC"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
    return rc.authenticators(host) is not None


def wandb_logger(
    project: str = "inpaint",
    save_dir: str = ".",
    offline: bool | None = None,
    tags: Sequence[str] = (),
    group: str | None = None,
    id: str | None = None,
    **kwargs,
) -> WandbLogger:
    """A ``WandbLogger`` that is offline when no credentials are configured (``offline=None``).

    Offline runs write their files under ``<save_dir>/wandb/offline-run-*``; upload them later with
    ``wandb sync <that folder>``.

    Inside a Hydra job it also
    - resumes: when ``<save_dir>/wandb`` already holds a run (a resumed run directory), its W&B run id is
      reused with ``resume="allow"``, so the curves continue in the same W&B run;
    - groups: in a multirun (``-m``) every job's run gets ``group=<study name>:<sweep dir name>`` (or the
      sweep dir name), so a sweep's trials sit together and a resumed sweep joins its group; single runs
      keep ``group=None``;
    - records the job: the composed config (``.hydra/config.yaml``) and ``hydra_overrides`` (the job's
      command-line and sweep overrides, ``{key: value}``) go into the run's config.
    An explicit ``group``/``id``/``config`` wins."""
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_has_credentials()
        if offline:
            log.info("W&B: no API key configured, logging offline to %s/wandb (upload with `wandb sync`)", save_dir)
    os.makedirs(save_dir, exist_ok=True)
    if id is None:
        id = existing_wandb_run_id(save_dir)
        if id is not None:
            log.info("W&B: %s/wandb already holds run %s: resuming it", save_dir, id)
            kwargs.setdefault("resume", "allow")
    job = hydra_job_info()
    if group is None:
        group = job.get("group")
    if "config" not in kwargs and job:
        kwargs["config"] = {**job.get("config", {}), "hydra_overrides": job.get("overrides", {})}
    logger = WandbLogger(project=project, save_dir=save_dir, offline=offline, tags=list(tags), group=group, id=id,
                         **kwargs)
    # Lightning always passes `anonymous` (None by default), and wandb warns on every run that the setting
    # has no effect; leave it out unless it was asked for
    init = wandb_init_settings(logger)
    if init.get("anonymous") is None:
        init.pop("anonymous", None)
    return logger


#: a W&B run folder: run-20240101_120000-<id> or offline-run-20240101_120000-<id>
_RUN_DIR = re.compile(r"(?:offline-)?run-(\d{8}_\d{6})-([A-Za-z0-9]+)")


def existing_wandb_run_id(save_dir: str | os.PathLike) -> str | None:
    """The id of the newest W&B run under ``<save_dir>/wandb``, or None when there is none."""
    root = Path(save_dir) / "wandb"
    if not root.is_dir():
        return None
    runs = [m for p in root.iterdir() if p.is_dir() and not p.is_symlink() and (m := _RUN_DIR.fullmatch(p.name))]
    return max(runs, key=lambda m: m.group(1)).group(2) if runs else None


def hydra_job_info() -> dict[str, Any]:
    """``{"group", "overrides", "config"}`` of the running Hydra job (empty outside Hydra)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    info: dict[str, Any] = {"overrides": parse_overrides(list(hc.overrides.task))}
    if hc.mode == RunMode.MULTIRUN:
        sweep = Path(str(hc.sweep.dir)).name
        study = hc.sweeper.get("study_name")
        info["group"] = f"{study}:{sweep}" if study else sweep
    output_dir = hc.runtime.get("output_dir")
    if output_dir and hc.output_subdir:
        path = Path(output_dir) / hc.output_subdir / "config.yaml"
        if path.is_file():
            saved = OmegaConf.load(path)
            try:
                info["config"] = OmegaConf.to_container(saved, resolve=True)
            except Exception:  # an interpolation only the live app can resolve: keep the raw values
                info["config"] = OmegaConf.to_container(saved, resolve=False)
    return info


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued instead of deleted.

    A resumed run starts again from its checkpoint's step; the rows the killed run wrote after that step
    are dropped at the first save, so every step appears once. It overrides a private method of Lightning's
    writer and uses its filesystem (:data:`inpaint.compat.SUBCLASS_PRIVATE_API`, checked by the tests)."""

    def _check_log_dir_exists(self) -> None:
        self._continuing = self._fs.isfile(self.metrics_file_path)

    def save(self) -> None:
        if self._continuing and self.metrics:
            self._continuing = False
            first = min(int(m["step"]) for m in self.metrics)
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                reader = csv.DictReader(f)
                header, rows = list(reader.fieldnames or []), list(reader)
            kept = [r for r in rows if not r.get("step") or int(float(r["step"])) < first]
            if len(kept) < len(rows):
                log.info("metrics.csv: dropped %d rows of steps >= %d written before the resume",
                         len(rows) - len(kept), first)
            self.metrics_keys = sorted(header)
            with self._fs.open(self.metrics_file_path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
        super().save()


class ContinuingCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume into the same run directory (see
    :class:`_ContinuingWriter`)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


def log_image(loggers: Iterable[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Log an ``HxWx3`` uint8 image to every logger that can show images."""
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[image], step=step)
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_image(key, image, global_step=step, dataformats="HWC")


class ContinuingTensorBoardLogger(TensorBoardLogger):
    """``TensorBoardLogger`` whose run survives a resume into the same directory without showing steps twice.

    A resumed run logs again from its checkpoint's step, so the event files of the killed run hold a tail of
    steps that would appear twice. When the log folder already held event files, the writer of the first logged
    metrics is opened with ``purge_step`` at that step: TensorBoard then drops the earlier files' events from
    that step on (a TensorBoard feature, ``SummaryWriter(purge_step=...)``). It sets the writer's arguments kept
    by its base class (:data:`inpaint.compat.SUBCLASS_PRIVATE_API`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._earlier_events = bool(glob.glob(os.path.join(self.log_dir, "events.out.tfevents.*")))
        self._purge_decided = False

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self._purge_decided and set(metrics) != {"hp_metric"}:  # the placeholder of log_hyperparams
            self._purge_decided = True
            if self._earlier_events and step is not None:
                if self._experiment is not None:  # opened early (hyperparameters): reopen with the purge step
                    self._experiment.close()
                    self._experiment = None
                self._kwargs["purge_step"] = int(step)
                log.info("tensorboard: events of steps >= %d written before the resume are hidden", int(step))
        super().log_metrics(metrics, step)

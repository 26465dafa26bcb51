"""Experiment-logger helpers: a W&B logger that runs offline without a key, and logger-agnostic image
and table logging (W&B media, TensorBoard images/text; CSV gets neither, the run dir has both)."""

from __future__ import annotations

import csv
import logging
import netrc
import os
from collections.abc import Iterable, Sequence

import numpy as np
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from inpaint.metrics import METRIC_NAMES, metric_rows, metrics_table

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
    **kwargs,
) -> WandbLogger:
    """A ``WandbLogger`` that is offline when no credentials are configured (``offline=None``).

    Offline runs write their files under ``<save_dir>/wandb/offline-run-*``; upload them later with
    ``wandb sync <that folder>``."""
    if offline is None:
        offline = os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_has_credentials()
        if offline:
            log.info("W&B: no API key configured, logging offline to %s/wandb (upload with `wandb sync`)", save_dir)
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(project=project, save_dir=save_dir, offline=offline, tags=list(tags), **kwargs)


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued instead of deleted.

    A resumed run starts again from its checkpoint's step; the rows the killed run wrote after that step
    are dropped at the first save, so every step appears once."""

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


def log_metric_table(
    loggers: Iterable[Logger],
    key: str,
    results: dict[str, float],
    buckets: Sequence[Sequence[float]],
    prefix: str = "",
) -> None:
    """Log the per-bucket metric table: a W&B Table, a TensorBoard markdown text."""
    loggers = list(loggers)
    if not loggers:
        return
    rows = [[label, int(count or 0), *values] for label, count, values in metric_rows(results, buckets, prefix)]
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.log_table(key=key, columns=["bucket", "n", *METRIC_NAMES], data=rows)
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_text(key, metrics_table(results, buckets, prefix=prefix))

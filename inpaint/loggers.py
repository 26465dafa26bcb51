"""Experiment-logger helpers: a W&B logger that runs offline without a key, and logger-agnostic image
and table logging (W&B media, TensorBoard images/text; CSV gets neither, the run dir has both)."""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Iterable, Sequence

import numpy as np
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

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

"""Evaluation runs that take more than one Lightning test (part of :mod:`inpaint.evaluation`).

``eval.per_bucket=true``: one test per hole-ratio bucket, with the mask generator restricted to it, merged
into one result (ISNet's Table 5 protocol): :func:`test_per_bucket`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import lightning as L

from inpaint.evaluation.evaluator import merge_bucket_runs
from inpaint.evaluation.metrics import bucket_name
from inpaint.evaluation.protocol import combine_digests
from inpaint.evaluation.tables import log_metric_table

log = logging.getLogger(__name__)


def test_per_bucket(
    model: L.LightningModule,
    trainer: L.Trainer,
    bucket_data: Callable[[float, float], L.LightningDataModule],
    buckets: Sequence[tuple[float, float]],
    ckpt: str | None,
) -> dict[str, float]:
    """One test run per bucket ``[lo, hi)`` on ``bucket_data(lo, hi)`` (the same images, masks restricted to the
    bucket), merged by :func:`~inpaint.evaluation.evaluator.merge_bucket_runs`: bucket ``[lo, hi)``'s overall
    numbers become ``test/<metric>@lo-hi``, the plain per-image keys the image-weighted mean over all runs.
    Sets ``model.test_digest`` (every bucket's, combined) and ``model.fill_seconds["test"]`` (over all runs)."""
    runs = []
    digests: dict[str, dict] = {}
    fill_total = n_total = 0.0
    for lo, hi in buckets:
        log.info("per-bucket evaluation: hole ratio [%s, %s)", lo, hi)
        # verbose=False: Lightning's table would show this one bucket's run as the plain test/ keys
        trainer.test(model, datamodule=bucket_data(lo, hi), ckpt_path=ckpt, weights_only=True, verbose=False)
        res = dict(model.test_results)
        name = bucket_name(lo, hi)
        runs.append((name, res))
        digests[name] = dict(model.test_digest)
        n = float(res.get("test/count", 0.0))
        if "test" in model.fill_seconds:
            fill_total += model.fill_seconds["test"] * n
        n_total += n
    merged = merge_bucket_runs(runs)
    model.test_digest = combine_digests(digests)
    if n_total and "test" in model.fill_seconds:  # the fill time per image over every bucket's run
        model.fill_seconds["test"] = fill_total / n_total
    log_metric_table(trainer.loggers, "test/per_bucket_table", merged, list(buckets), prefix="test/")
    return merged

"""Tables of evaluation results (part of :mod:`inpaint.evaluation`): the per-bucket markdown table of
``metrics.md`` and the cards, ISNet's side-by-side procedure table, and the same table logged to W&B /
TensorBoard (:func:`log_metric_table`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger

from inpaint.evaluation.metrics import DEFAULT_BUCKETS, bucket_name, reported_metrics

_TABLE_COLUMNS = (
    ("psnr", "PSNR", ".2f"),
    ("ssim", "SSIM", ".4f"),
    ("mae", "MAE(%)", ".3f"),
    ("l2", "L2", ".5f"),
    ("maem", "MAEM(%)", ".2f"),
    ("mse_hole", "MSE hole", ".5f"),
    ("l2_paper", "L2 paper", ".5f"),
    ("l2_paper_255", "L2 paper (0-255)", ".2f"),
    ("maem_hole", "MAEM hole(%)", ".2f"),
    ("maem_channel", "MAEM channel(%)", ".2f"),
    ("lpips_vgg", "LPIPS vgg", ".4f"),
    ("lpips_alex", "LPIPS alex", ".4f"),
    ("fid", "FID", ".3f"),
    ("kid", "KID", ".5f"),
    ("kid_std", "KID std", ".5f"),
    ("pids", "P-IDS", ".4f"),
    ("uids", "U-IDS", ".4f"),
)




def metric_rows(
    results: Mapping[str, Any],
    buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
    prefix: str = "",
    metrics: Sequence[str] | None = None,
) -> list[tuple[str, float | None, list[float | None]]]:
    """``(bucket label, count, [value per metric])`` for "all" and each bucket present in ``results``
    (keys optionally prefixed, e.g. ``"test/"``); a missing count or value is ``None``. ``metrics``
    defaults to :func:`reported_metrics`."""
    metrics = reported_metrics(results, prefix) if metrics is None else tuple(metrics)
    names = [bucket_name(float(lo), float(hi)) for lo, hi in buckets]
    rows = []
    for label, suffix in [("all", "")] + [(name, f"@{name}") for name in names]:
        keys = [f"{prefix}{metric}{suffix}" for metric in ("count", *metrics)]
        if not any(key in results for key in keys):
            continue
        values = [float(results[k]) if k in results else None for k in keys]
        rows.append((label, values[0], values[1:]))
    return rows


def metrics_table(
    results: Mapping[str, Any],
    buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
    prefix: str = "",
) -> str:
    """Markdown table of :meth:`InpaintMetrics.compute` results (keys optionally prefixed, e.g. ``"test/"``).

    One row "all" plus one row per bucket whose metrics are present in ``results``; missing cells show "-".
    The hole-metric columns appear only when ``results`` has them (:func:`reported_metrics`).
    """
    metrics = reported_metrics(results, prefix)
    columns = [c for c in _TABLE_COLUMNS if c[0] in metrics]
    header = "| bucket | n | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|" + "---|" * (2 + len(columns))]
    for label, count, values in metric_rows(results, buckets, prefix, metrics):
        cells = [label, "-" if count is None else f"{count:.0f}"]
        cells += ["-" if v is None else f"{v:{fmt}}" for v, (_, _, fmt) in zip(values, columns, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


_COMPARISON_METRICS = (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".3f"), ("mae", "MAE(%)", ".2f"))


def comparison_table(
    results: Mapping[str, Any],
    buckets: Sequence[Sequence[float]],
    variants: Mapping[str, str],
    prefix: str = "test/",
) -> str:
    """Markdown table shaped like ISNet's Table 5: one row per (hole-ratio bucket, metric), one column per
    variant. ``variants`` maps a column label to its key prefix after ``prefix`` (``""`` for the plain keys,
    e.g. ``{"ISNet": "single/", "ISNet+PRA": ""}``)."""
    labels = list(variants)
    lines = ["| mask ratio | metric | " + " | ".join(labels) + " |", "|" + "---|" * (2 + len(labels))]
    rows = [(bucket_name(float(lo), float(hi)) + "%", f"@{bucket_name(float(lo), float(hi))}") for lo, hi in buckets]
    rows.append(("all", ""))
    for label, suffix in rows:
        if not any(f"{prefix}{variants[v]}psnr{suffix}" in results for v in labels):
            continue
        for i, (name, title, fmt) in enumerate(_COMPARISON_METRICS):
            cells = []
            for v in labels:
                key = f"{prefix}{variants[v]}{name}{suffix}"
                cells.append(f"{float(results[key]):{fmt}}" if key in results else "-")
            lines.append(f"| {label if i == 0 else ''} | {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    metrics = reported_metrics(results, prefix)
    rows = [
        [label, int(count or 0), *values] for label, count, values in metric_rows(results, buckets, prefix, metrics)
    ]
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.log_table(key=key, columns=["bucket", "n", *metrics], data=rows)
        elif isinstance(lg, TensorBoardLogger):
            lg.experiment.add_text(key, metrics_table(results, buckets, prefix=prefix))

"""Sweep bookkeeping: one table of every trial of a Hydra multirun (Optuna or basic sweeper).

``TrialsTable`` is a Hydra callback (``hydra.callbacks``). After each job it appends the job's overrides,
objective and headline metrics as one JSON line to ``<sweep dir>/trials.jsonl`` (an append, so launchers
that run jobs in other processes are fine) and rewrites ``trials.md`` and ``trials.csv`` from it, best
first. An interrupted sweep therefore still leaves the table of the trials that finished.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

#: metrics read from each job's metrics.json (when present) into the table; a column is shown only when some
#: job has it (the hole metrics and rec_loss come from the context encoders' Table 1 sweep)
REPORTED = (
    "val/psnr", "val/ssim", "val/mae", "test/psnr", "test/ssim", "test/mae",
    "val/rec_loss", "val/l2_paper", "val/mse_hole", "val/maem_hole",
    "test/rec_loss", "test/l2_paper", "test/mse_hole", "test/maem_hole",
)


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    out = {}
    for item in overrides:
        key, _, value = item.partition("=")
        out[key.lstrip("+~")] = value
    return out


def _job_metrics(job_dir: Path) -> dict[str, float]:
    path = job_dir / "metrics.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    merged = {**report.get("last_val", {}), **report.get("test", {})}
    return {k: float(merged[k]) for k in REPORTED if k in merged}


class TrialsTable(Callback):
    """Writes ``trials.jsonl``, ``trials.md`` and ``trials.csv`` in the sweep directory.

    Args:
        objective: name of the value each job returns (``optimized_metric``), the table's sort key.
        direction: ``maximize`` or ``minimize``.
        filename: stem of the files written.
    """

    def __init__(self, objective: str = "val/psnr", direction: str = "maximize", filename: str = "trials") -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"TrialsTable direction={direction!r}: use maximize or minimize")
        self.objective = objective
        self.direction = direction
        self.filename = filename

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job_dir = Path(config.hydra.runtime.output_dir)
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if ok else None
        row = {
            "job": int(config.hydra.job.get("num", 0) or 0),
            "status": "ok" if ok else f"failed: {job_return._return_value!r}"[:200],
            "objective": float(value) if isinstance(value, (int, float)) else None,
            "overrides": parse_overrides(list(job_return.overrides or [])),
            "metrics": _job_metrics(job_dir),
            "dir": str(job_dir),
        }
        sweep_dir.mkdir(parents=True, exist_ok=True)
        with open(sweep_dir / f"{self.filename}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self.write(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if (sweep_dir / f"{self.filename}.jsonl").is_file():
            md = self.write(sweep_dir)
            log.info("all trials: %s", md)

    def rows(self, sweep_dir: Path) -> list[dict]:
        lines = (sweep_dir / f"{self.filename}.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
        sign = -1.0 if self.direction == "maximize" else 1.0

        def key(r):
            v = r["objective"]
            return (v is None or not math.isfinite(v), sign * v if v is not None else 0.0, r["job"])

        return sorted(rows, key=key)

    def write(self, sweep_dir: Path) -> Path:
        """Rewrite ``trials.md`` / ``trials.csv`` from ``trials.jsonl``; returns the markdown path."""
        rows = self.rows(sweep_dir)
        params = sorted({k for r in rows for k in r["overrides"]})
        metrics = [m for m in REPORTED if any(m in r["metrics"] for r in rows)]
        header = ["rank", "job", *params, f"objective ({self.objective})", *metrics, "status"]
        table = []
        for rank, r in enumerate(rows, 1):
            obj = r["objective"]
            table.append(
                [
                    str(rank),
                    str(r["job"]),
                    *[_fmt(r["overrides"].get(p, "")) for p in params],
                    "-" if obj is None else f"{obj:.4f}",
                    *[f"{r['metrics'][m]:.4f}" if m in r["metrics"] else "-" for m in metrics],
                    r["status"],
                ]
            )
        with open(sweep_dir / f"{self.filename}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(table)
        md = sweep_dir / f"{self.filename}.md"
        lines = [
            f"# Trials ({len(rows)}), best {self.objective} first ({self.direction})",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
        ]
        lines += ["| " + " | ".join(cells) + " |" for cells in table]
        md.write_text("\n".join(lines) + "\n")
        return md


def _fmt(value: str) -> str:
    """Round long floats sampled by a sweeper (0.123456789 -> 0.123457) for the table."""
    try:
        f = float(value)
    except ValueError:
        return value
    return f"{f:.6g}"

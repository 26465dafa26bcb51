"""Sweep bookkeeping: one table of every trial of a Hydra multirun (Optuna or basic sweeper).

``TrialsTable`` is a Hydra callback (``hydra.callbacks``). After each job it appends the job's overrides,
objective and headline metrics as one JSON line to ``<sweep dir>/trials.jsonl`` (an append, so launchers
that run jobs in other processes are fine) and rewrites ``trials.md`` and ``trials.csv`` from it, best
first. An interrupted sweep therefore still leaves the table of the trials that finished.

With ``tables`` it also pivots the trials into result tables shaped like a paper's (``tables.md``, rewritten
after each job and printed at the end of the sweep): one table per value of a ``split`` key, a row per value
of a ``rows`` key, a group of metric columns per value of a ``columns`` key. A key is an override of the
sweep (``model.attention.type``), a config group's choice (``mask``) or any config value (``data.category``);
each axis can name display labels, and ``include`` adds the trials of other sweeps to the tables. E.g.::

    tables:
      - split: {key: mask, labels: {blocks_12: "Mask 1", blocks_25: "Mask 2"}}
        rows: {key: model.attention.type, title: Method, labels: {none: original, sa: Self-Attention}}
        columns: {key: data.category, labels: {bedroom: LSUN-bedroom}}
        metrics: {test/raw/psnr: PSNR, test/raw/ssim: SSIM}
"""

from __future__ import annotations

import csv
import json
import logging
import math
import statistics
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from inpaint.compat import job_return_value
from inpaint.overrides import parse_overrides

log = logging.getLogger(__name__)

__all__ = ["REPORTED", "PivotTable", "TrialsTable", "parse_overrides"]

#: metrics read from each job's metrics.json (when present) into the table; a column is shown only when some
#: job has it (the hole metrics and rec_loss come from the context encoders' Table 1 sweep)
REPORTED = (
    "val/psnr", "val/ssim", "val/mae", "test/psnr", "test/ssim", "test/mae",
    "val/rec_loss", "val/l2_paper", "val/mse_hole", "val/maem_hole",
    "test/rec_loss", "test/l2_paper", "test/mse_hole", "test/maem_hole",
    "test/raw/psnr", "test/raw/ssim",
)


def _job_metrics(job_dir: Path, extra: tuple[str, ...] = ()) -> dict[str, float]:
    path = job_dir / "metrics.json"
    if not path.is_file():
        return {}
    report = json.loads(path.read_text())
    merged = {**report.get("last_val", {}), **report.get("test", {})}
    return {k: float(merged[k]) for k in (*REPORTED, *extra) if k in merged}


def _config_value(config: DictConfig, key: str) -> str | None:
    """``key``'s value in a job's config as the table shows it: a config group's choice (``mask`` ->
    ``blocks_12``), else the value at that path when it is not a node (``data.category`` -> ``bedroom``)."""
    choices = config.hydra.runtime.get("choices") or {}
    if key in choices:
        return str(choices[key])
    value = OmegaConf.select(config, key, default=None)
    return None if value is None or OmegaConf.is_config(value) else str(value)


class PivotTable:
    """One result-table spec of :class:`TrialsTable` (``tables``), checked when the callback is built.

    Keys: ``rows`` and ``columns`` (axes), optional ``split`` (an axis: one table per value), ``metrics``
    (``{metric: label}``; each column group has one cell per metric), ``title`` (``{split}`` is replaced by the
    split value's label), ``where`` (``{key: value}``: only trials with these values), ``format`` (of a cell,
    ``.2f``). An axis is ``{key, title, labels, default}``: ``labels`` maps values to the displayed text and
    orders them (values without a label follow, by job), ``default`` is the value of trials that have none.
    A cell of several trials (repeated seeds) is their mean ± their sample standard deviation, with the count."""

    AXIS_KEYS = {"key", "title", "labels", "default"}
    KEYS = {"rows", "columns", "split", "metrics", "title", "where", "format"}

    def __init__(self, spec: dict) -> None:
        unknown = sorted(set(spec) - self.KEYS)
        if unknown or not {"rows", "columns", "metrics"} <= set(spec):
            raise ValueError(f"TrialsTable tables: a table needs rows, columns and metrics (and may have split, "
                             f"title, where, format); got {sorted(spec)}")
        self.axes = {}
        for name in ("split", "rows", "columns"):
            axis = spec.get(name)
            if axis is None:
                continue
            if isinstance(axis, str):
                axis = {"key": axis}
            if "key" not in axis or set(axis) - self.AXIS_KEYS:
                raise ValueError(f"TrialsTable tables: {name} needs a key (and may have title, labels, default); "
                                 f"got {sorted(axis)}")
            self.axes[name] = {"labels": {}, "title": axis["key"], "default": None, **axis}
        self.metrics = {str(k): str(v) for k, v in dict(spec["metrics"]).items()}
        self.title = spec.get("title")
        self.where = {str(k): str(v) for k, v in dict(spec.get("where") or {}).items()}
        self.format = str(spec.get("format", ".2f"))

    @property
    def keys(self) -> set[str]:
        return {a["key"] for a in self.axes.values()} | set(self.where)

    def value(self, row: dict, key: str, default: str | None = None) -> str | None:
        found = row["overrides"].get(key, row.get("config", {}).get(key))
        return default if found is None else str(found)

    def _values(self, rows: list[dict], axis: dict) -> list[str]:
        seen = [self.value(r, axis["key"], axis["default"]) for r in rows]
        labelled = [str(v) for v in axis["labels"] if str(v) in seen]
        return labelled + [v for v in dict.fromkeys(seen) if v not in labelled and v is not None]

    def render(self, rows: list[dict]) -> list[str]:
        """Markdown lines of this spec's tables over the finished ``rows`` (trials)."""
        rows = [r for r in rows if r["status"] == "ok"
                and all(self.value(r, k) == v for k, v in self.where.items())]
        split = self.axes.get("split")
        parts = self._values(rows, split) if split else [None]
        out: list[str] = []
        for part in parts:
            chosen = [r for r in rows if split is None or self.value(r, split["key"], split["default"]) == part]
            out += self._table(chosen, part) + [""]
        return out

    def _label(self, axis: str, value: str) -> str:
        return str(self.axes[axis]["labels"].get(value, value))

    def _table(self, rows: list[dict], part: str | None) -> list[str]:
        r_axis, c_axis = self.axes["rows"], self.axes["columns"]
        cols = self._values(rows, c_axis)
        lines = []
        if self.title or part is not None:
            label = "" if part is None else self._label("split", part)
            lines += [f"### {self.title.replace('{split}', label) if self.title else label}", ""]
        header = [r_axis["title"]] + [f"{self._label('columns', c)} {m}" for c in cols for m in self.metrics.values()]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for value in self._values(rows, r_axis):
            cells = [self._label("rows", value)]
            for c in cols:
                cell = [r for r in rows if self.value(r, r_axis["key"], r_axis["default"]) == value
                        and self.value(r, c_axis["key"], c_axis["default"]) == c]
                for metric in self.metrics:
                    got = [r["metrics"][metric] for r in cell if metric in r["metrics"]]
                    text = "-" if not got else format(sum(got) / len(got), self.format)
                    if len(got) > 1:  # repeated seeds: the spread (sample standard deviation) and the count
                        text += f" ± {format(statistics.stdev(got), self.format)} (n={len(got)})"
                    cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        return lines


class TrialsTable(Callback):
    """Writes ``trials.jsonl``, ``trials.md`` and ``trials.csv`` in the sweep directory.

    Args:
        objective: name of the value each job returns (``optimized_metric``), the table's sort key.
        direction: ``maximize`` or ``minimize``.
        filename: stem of the files written.
        tables: result tables pivoted from the trials (:class:`PivotTable` specs), written to
            ``<tables_filename>.md`` after each job and printed at the end of the sweep.
        tables_filename: stem of that file.
        include: other sweep directories whose trials join this sweep's in the pivot tables (e.g. the rows a
            table shares with an earlier sweep); ``trials.md`` lists this sweep's only.
    """

    def __init__(self, objective: str = "val/psnr", direction: str = "maximize", filename: str = "trials",
                 tables: list[dict] | None = None, tables_filename: str = "tables",
                 include: list[str] | None = None) -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"TrialsTable direction={direction!r}: use maximize or minimize")
        self.objective = objective
        self.direction = direction
        self.filename = filename
        self.tables = [PivotTable(OmegaConf.to_container(t, resolve=True) if OmegaConf.is_config(t) else dict(t)) for t in (tables or [])]
        self.tables_filename = tables_filename
        self.include = [Path(p) for p in (include or [])]
        missing = [str(p) for p in self.include if not (p / f"{filename}.jsonl").is_file()]
        if missing:  # before the first job, not after it
            raise ValueError(f"TrialsTable include: no {filename}.jsonl in {missing} (sweep directories of earlier "
                             "sweeps with these tables)")

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job_dir = Path(config.hydra.runtime.output_dir)
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if ok else None
        row = {
            "job": int(config.hydra.job.get("num", 0) or 0),
            "status": "ok" if ok else f"failed: {job_return_value(job_return)!r}"[:200],
            "objective": float(value) if isinstance(value, (int, float)) else None,
            "overrides": parse_overrides(list(job_return.overrides or [])),
            "metrics": _job_metrics(job_dir, tuple(m for t in self.tables for m in t.metrics)),
            "config": {k: _config_value(config, k) for t in self.tables for k in sorted(t.keys)},
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
            if self.tables:
                tables = sweep_dir / f"{self.tables_filename}.md"
                print(tables.read_text(), flush=True)
                log.info("result tables: %s", tables)

    def _read(self, sweep_dir: Path) -> list[dict]:
        lines = (sweep_dir / f"{self.filename}.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def rows(self, sweep_dir: Path) -> list[dict]:
        rows = self._read(sweep_dir)
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
        if self.tables:
            self.write_tables(sweep_dir, rows)
        return md

    def write_tables(self, sweep_dir: Path, rows: list[dict]) -> Path:
        """Rewrite ``tables.md``: every :class:`PivotTable` over this sweep's trials and the included ones',
        in job order."""
        trials = sorted(rows, key=lambda r: r["job"])
        for other in self.include:
            trials += sorted(self._read(other), key=lambda r: r["job"])
        lines = [f"# Result tables ({len(trials)} trials: {sweep_dir}"
                 + "".join(f", {p}" for p in self.include) + ")", ""]
        for table in self.tables:
            lines += table.render(trials)
        path = sweep_dir / f"{self.tables_filename}.md"
        path.write_text("\n".join(lines))
        return path


def _fmt(value: str) -> str:
    """Round long floats sampled by a sweeper (0.123456789 -> 0.123457) for the table."""
    try:
        f = float(value)
    except ValueError:
        return value
    return f"{f:.6g}"

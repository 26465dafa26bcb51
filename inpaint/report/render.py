"""The leaderboard's files: ``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.png`` and a W&B Table.

The markdown has one ranked table per protocol group (and one of PSNR / SSIM per hole-ratio bucket), the CSV
one row per run (a card's :func:`~inpaint.evaluation.card.leaderboard_row`, then the failed and unfinished runs),
the PNG PSNR and SSIM against the hole-ratio bucket, one line per run. They are a pure function of the cards:
a rerun writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from inpaint.evaluation.card import _bucket_names, _display_dir, _fmt, leaderboard_row
from inpaint.report.leaderboard import (
    _group_buckets,
    build_leaderboard,
    protocol_differences,
    read_run,
    run_labels,
)

CSV_FLOAT = "{:.6g}"
#: the field's metrics, shown in a group's table when any of its runs has them
FIELD_COLUMNS = [("lpips_vgg", "LPIPS vgg", ".4f"), ("lpips_alex", "LPIPS alex", ".4f"), ("fid", "FID", ".3f"),
                 ("kid", "KID", ".5f"), ("pids", "P-IDS", ".4f"), ("uids", "U-IDS", ".4f")]


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else CSV_FLOAT.format(v)
    return str(v)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(board: Mapping[str, Any], png_name: str | None) -> str:
    groups, metric = board["groups"], board["metric"]
    n = sum(len(g) for g in groups)
    lines = [
        "# Leaderboard",
        "",
        f"{n} finished run(s) in {len(groups)} protocol group(s); {len(board['others'])} failed or unfinished.",
        f"Ranked by test {metric.upper()} (composite, all images) inside a group, best first; runs evaluated "
        "under different protocols (images, masks, image size, metric options) are never ranked together.",
        "",
    ]
    base = [("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f"), ("mae", "MAE(%)", ".3f"), ("l2", "L2", ".5f"),
            ("maem", "MAEM(%)", ".2f")]
    no_curve = []
    for gi, group in enumerate(groups, 1):
        # the field's metrics (LPIPS, FID, KID, P/U-IDS) get a column where any run of the group has them
        columns = base + [c for c in FIELD_COLUMNS if any(f"test/{c[0]}" in r["metrics"] for r in group)]
        p = group[0]["protocol"]
        lines += [
            f"## Group {gi} (protocol `{group[0]['fingerprint']}`)",
            "",
            f"{p['images']['count']} test images of size {p['image_size']} (hash `{p['images']['hash']}`), "
            f"mask={p['mask']['name']} (masks hash `{p['masks']['hash']}`), buckets "
            f"{'one test run per bucket' if p['metric_options']['per_bucket'] else 'by hole ratio'}"
            f"{', hole metrics' if p['metric_options']['hole_metrics'] else ''}.",
        ]
        if gi > 1:
            lines.append(f"Differs from group 1 in: {', '.join(protocol_differences(p, groups[0][0]['protocol']))}.")
        common = dict(set.intersection(*(set(c["settings"].items()) for c in group)))
        if common and len(group) > 1:
            lines.append("Settings of every run here: " + " ".join(f"`{k}={v}`" for k, v in sorted(common.items())))
        header = ["rank", "model", "settings", "train steps", "train s", "params", "s/image",
                  *[c[1] for c in columns], "run"]
        if any(c.get("random_feature_weights") for c in group):
            lines.append("Field metrics marked * were computed with RANDOM network weights: not comparable with "
                         "published values.")
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for rank, c in enumerate(group, 1):
            t = c["training"]
            own = {k: v for k, v in c["settings"].items() if len(group) == 1 or common.get(k) != v}
            described = " ".join(f"`{k}={v}`" for k, v in own.items())
            if c.get("source"):  # scored offline: say where the outputs came from
                described = (f"scored offline: {c['source'].get('description') or c['source'].get('outputs')} "
                             + described).strip()
            total = c["parameters"]["total"]
            cells = [str(rank), c["model"] + ("*" if c.get("random_feature_weights") else ""), described or "-",
                     _fmt(t["steps"], "d"), _fmt(t["seconds"], ".1f"), "-" if total is None else f"{total:,}",
                     _fmt(c["seconds_per_image"], ".4f"),
                     *[_fmt(c["metrics"].get(f"test/{k}"), spec) for k, _, spec in columns], _display_dir(c["dir"])]
            lines.append("| " + " | ".join(_md_escape(x) for x in cells) + " |")
        buckets = _group_buckets(group)
        if buckets:
            head = ["rank", "model", *[f"{b}% PSNR / SSIM" for b in buckets]]
            lines += ["", "PSNR / SSIM per hole-ratio bucket:", "", "| " + " | ".join(head) + " |",
                      "|" + "---|" * len(head)]
            for rank, (c, name) in enumerate(zip(group, run_labels(group), strict=True), 1):
                cells = [str(rank), name]
                for b in buckets:
                    ps, ss = c["metrics"].get(f"test/psnr@{b}"), c["metrics"].get(f"test/ssim@{b}")
                    cells.append(f"{_fmt(ps, '.2f')} / {_fmt(ss, '.4f')}")
                lines.append("| " + " | ".join(_md_escape(x) for x in cells) + " |")
        else:
            no_curve.append(gi)
            lines += ["", "(no per-bucket metrics in this group: nothing to plot)"]
        lines.append("")
    if png_name and len(no_curve) < len(groups):
        lines += [f"![PSNR and SSIM against the hole ratio]({png_name})", ""]
    if board["others"]:
        lines += ["## Failed or unfinished runs", "", "| status | model | settings | run | reason |",
                  "|---|---|---|---|---|"]
        for r in board["others"]:
            settings = " ".join(f"`{k}={v}`" for k, v in r.get("settings", {}).items()) or "-"
            cells = [r["status"], r.get("model", "?"), settings, _display_dir(r["dir"]), r.get("error") or "-"]
            lines.append("| " + " | ".join(_md_escape(x) for x in cells) + " |")
        lines.append("")
    return "\n".join(lines)


def render_csv(board: Mapping[str, Any]) -> str:
    rows = []
    for gi, group in enumerate(board["groups"], 1):
        for rank, c in enumerate(group, 1):
            header, row = leaderboard_row(c, c["dir"])
            rows.append({"group": gi, "rank": rank, "status": "ok", "reason": None} | dict(zip(header, row, strict=True)))
    for r in board["others"]:
        rows.append({"group": None, "rank": None, "status": r["status"], "reason": r.get("error"),
                     "model": r.get("model"), "settings": " ".join(f"{k}={v}" for k, v in r.get("settings", {}).items()),
                     "run": _display_dir(r["dir"])})
    fixed = ["group", "rank", "status", "model", "settings", "train steps", "train s", "params", "s/image",
             "fingerprint", "run", "reason"]
    seen = [k for r in rows for k in r if k not in fixed]
    metric_keys = sorted(dict.fromkeys(seen), key=lambda k: ("@" in k, _bucket_order(k), k))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fixed + metric_keys)
    for r in rows:
        writer.writerow([_cell(r.get(k)) for k in fixed + metric_keys])
    return buf.getvalue()


def _bucket_order(key: str) -> float:
    if "@" not in key:
        return -1.0
    try:
        return float(key.split("@", 1)[1].split("-")[0])
    except ValueError:
        return math.inf


def render_plot(board: Mapping[str, Any], path: Path) -> bool:
    """PSNR and SSIM against the hole-ratio bucket, one row of two panels per group with per-bucket
    metrics, one line per run. Returns False (no file) when no group has per-bucket metrics."""
    groups = [(gi, g) for gi, g in enumerate(board["groups"], 1) if any(_bucket_names(c) for c in g)]
    if not groups:
        return False
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "inpaint", "path.simplify": False}):
        fig, axes = plt.subplots(len(groups), 2, figsize=(14, 3.8 * len(groups)), squeeze=False)
        colours = plt.get_cmap("tab20").colors  # 20 distinct colours, and a marker cycle beyond them
        markers = "osD^vP*Xph"
        # one colour and marker per run label across all groups, so a method looks the same in every row
        style = {name: i for i, name in enumerate(dict.fromkeys(n for _, g in groups for n in run_labels(g)))}
        for row, (gi, group) in enumerate(groups):
            for col, (metric, label) in enumerate((("psnr", "PSNR (dB)"), ("ssim", "SSIM"))):
                ax = axes[row][col]
                x_of = {b: i for i, b in enumerate(_group_buckets(group))}
                for rank, (c, name) in enumerate(zip(group, run_labels(group), strict=True), 1):
                    names = _bucket_names(c)
                    ys = [c["metrics"][f"test/{metric}@{b}"] for b in names]
                    ax.plot([x_of[b] for b in names], ys, marker=markers[style[name] % len(markers)],
                            color=colours[style[name] % len(colours)], label=f"{rank}. {name}")
                ax.set_xticks(list(x_of.values()), [f"{b}%" for b in x_of])
                ax.set_xlabel("hole ratio")
                ax.set_ylabel(label)
                ax.set_title(f"group {gi} ({group[0]['fingerprint']}): {metric.upper()}")
                ax.grid(True, alpha=0.3)
            axes[row][1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=80, metadata={"Software": None})
        plt.close(fig)
    return True


def write_leaderboard(run_dirs: Sequence[Path], out: Path, metric: str = "psnr") -> dict[str, Any]:
    """Read the runs' cards and write ``leaderboard.md`` / ``.csv`` / ``.png`` into ``out``."""
    runs = [read_run(d) for d in sorted(run_dirs)]
    board = build_leaderboard(runs, metric)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "leaderboard.png"
    plotted = render_plot(board, png)
    if not plotted and png.exists():
        png.unlink()  # an earlier report's plot would not match these runs
    (out / "leaderboard.md").write_text(render_markdown(board, png.name if plotted else None))
    (out / "leaderboard.csv").write_text(render_csv(board))
    return board


def log_leaderboard_to_wandb(board: Mapping[str, Any], project: str, out: Path) -> str | None:
    """One W&B run (offline without credentials) holding the whole leaderboard as a Table."""
    import os

    import wandb

    from inpaint.loggers import wandb_has_credentials

    mode = "offline" if os.environ.get("WANDB_MODE") in ("offline", "disabled") or not wandb_has_credentials() \
        else "online"
    text = render_csv(board)
    reader = list(csv.reader(io.StringIO(text)))
    run = wandb.init(project=project, name="leaderboard", job_type="report", dir=str(out), mode=mode,
                     reinit=True)
    run.log({"leaderboard": wandb.Table(columns=reader[0], data=reader[1:])})
    url = getattr(run, "url", None)
    run.finish()
    return url

"""The leaderboard as data: the run directories found, their cards read, grouped and ranked.

Runs are grouped by protocol fingerprint (:mod:`inpaint.evaluation.card`) and ranked by one test metric only
inside a group; runs evaluated under different protocols are never ranked together, and a group says in
words how its protocol differs from the first group's. Failed and unfinished runs are kept aside with the
reason (the card's error, or the last error line of the run's ``run.log``).
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from inpaint.evaluation.card import CARD_JSON, _bucket_names, settings_of
from inpaint.evaluation.metrics import bucket_name

#: error metrics: ``--metric`` ranks them lowest first (the others highest first)
LOWER_IS_BETTER = ("mae", "l2", "mse_hole", "l2_paper", "l2_paper_255", "lpips_vgg", "lpips_alex", "fid", "kid", "kid_std")


# ------------------------------------------------------------------------------------------- reading runs
def _is_run_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir() or (path / CARD_JSON).is_file()


def find_run_dirs(paths: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Run directories under ``paths`` (run dirs, parents searched recursively, or glob patterns), sorted,
    and the problems (a path that does not exist or holds no run directory), each naming the path."""
    found: set[Path] = set()
    problems = []
    for arg in paths:
        matches = sorted(glob.glob(arg)) if glob.has_magic(arg) else [arg]
        if not matches:
            problems.append(f"{arg}: no path matches this pattern")
        for m in matches:
            p = Path(m)
            if not p.exists():
                problems.append(f"{m}: no such file or directory")
            elif not p.is_dir():
                problems.append(f"{m}: not a run directory (a file)")
            elif _is_run_dir(p):
                found.add(p)
            else:
                inside = {q.parent for q in p.rglob(".hydra") if q.is_dir()}
                inside |= {q.parent for q in p.rglob(CARD_JSON)}
                inside = {q for q in inside if not any(a in inside for a in q.parents)}  # outermost only
                if inside:
                    found |= inside
                else:
                    problems.append(f"{m}: not a run directory (no .hydra/ or {CARD_JSON}) and none below it")
    return sorted(found), problems


def _last_error_line(run_dir: Path) -> str | None:
    log_file = run_dir / "run.log"
    if not log_file.is_file():
        return None
    lines = [ln.strip() for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "Error" in ln]
    return errors[-1] if errors else None


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run's card (``status`` ok/failed), or an ``unfinished`` stand-in with the reason."""
    card_path = run_dir / CARD_JSON
    if not card_path.is_file():
        reason = f"no {CARD_JSON}: run did not finish testing"
        last = _last_error_line(run_dir)
        if last:
            reason += f" (last error in run.log: {last})"
        over = run_dir / ".hydra" / "overrides.yaml"
        overrides = (yaml.safe_load(over.read_text()) or []) if over.is_file() else []
        model = next((o.split("=", 1)[1] for o in overrides if o.lstrip("+~").startswith("model=")), "?")
        return {"status": "unfinished", "error": reason, "model": model, "settings": settings_of(overrides),
                "dir": run_dir}
    try:
        card = json.loads(card_path.read_text())
    except ValueError as e:
        return {"status": "failed", "error": f"unreadable {CARD_JSON}: {e}", "model": "?", "settings": {},
                "dir": run_dir}
    card["dir"] = run_dir
    if card.get("status") == "failed" and not card.get("error"):
        card["error"] = _last_error_line(run_dir) or "failed (no message recorded)"
    return card


# ------------------------------------------------------------------------------------------- grouping, ranking
def _group_buckets(group: Sequence[Mapping[str, Any]]) -> list[str]:
    """The buckets any run of a protocol group has metrics for, in the protocol's order."""
    return [b for b in (bucket_name(lo, hi) for lo, hi in group[0]["protocol"]["metric_options"]["buckets"])
            if any(b in _bucket_names(c) for c in group)]


def group_runs(cards: Sequence[Mapping[str, Any]], metric: str) -> list[list[Mapping[str, Any]]]:
    """Cards grouped by fingerprint (biggest group first, then by fingerprint), ranked by ``metric``
    inside a group, best first (:data:`LOWER_IS_BETTER`; runs without it last; ties by model, run directory)."""
    by_fp: dict[str, list] = {}
    for c in cards:
        by_fp.setdefault(c["fingerprint"], []).append(c)

    def rank(c):
        v = c["metrics"].get(f"test/{metric}")
        ok = v is not None and math.isfinite(v)
        sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
        return (not ok, sign * v if ok else 0.0, c["model"], str(c["dir"]))

    groups = [sorted(g, key=rank) for g in by_fp.values()]
    return sorted(groups, key=lambda g: (-len(g), g[0]["fingerprint"]))


def protocol_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Why protocol ``a`` is not ``b``, in words (``a``'s values first)."""
    out = []
    if a["images"] != b["images"]:
        if a["images"]["count"] != b["images"]["count"]:
            out.append(f"test images ({a['images']['count']} vs {b['images']['count']} images)")
        else:
            out.append("test images hash")
    if a["image_size"] != b["image_size"]:
        out.append(f"image size ({a['image_size']} vs {b['image_size']})")
    ma, mb = a["mask"], b["mask"]
    if ma != mb:
        if ma["name"] != mb["name"]:
            out.append(f"mask config (mask={ma['name']} vs {mb['name']})")
        else:
            keys = sorted(k for k in set(ma["config"]) | set(mb["config"]) if ma["config"].get(k) != mb["config"].get(k))
            out.append("mask config (" + ", ".join(
                f"{k}={json.dumps(ma['config'].get(k))} vs {json.dumps(mb['config'].get(k))}" for k in keys) + ")")
    if a["masks"] != b["masks"]:
        out.append("masks hash")
    for key in sorted(set(a["metric_options"]) | set(b["metric_options"])):
        va, vb = a["metric_options"].get(key), b["metric_options"].get(key)
        if va != vb:
            out.append(f"metric option {key} ({json.dumps(va)} vs {json.dumps(vb)})")
    if not out and a != b:
        out.append("per-bucket digests")
    return out


def build_leaderboard(runs: Sequence[Mapping[str, Any]], metric: str = "psnr") -> dict[str, Any]:
    cards = [r for r in runs if r.get("status") == "ok"]
    others = sorted((r for r in runs if r.get("status") != "ok"), key=lambda r: (r["status"], str(r["dir"])))
    return {"groups": group_runs(cards, metric), "others": others, "metric": metric}


def run_labels(group: Sequence[Mapping[str, Any]]) -> list[str]:
    """A name per run of a ranked group: the model, and for models with several runs there the settings
    in which those runs differ (``mganprior (model.attention.type=sa)``), else their position."""
    labels = []
    for c in group:
        same = [o for o in group if o["model"] == c["model"]]
        if len(same) == 1:
            labels.append(c["model"])
            continue
        keys = sorted({k for o in same for k in o["settings"]})
        differ = [k for k in keys if len({o["settings"].get(k) for o in same}) > 1]
        own = ", ".join(f"{k}={c['settings'][k]}" for k in differ if k in c["settings"])
        position = next(i for i, o in enumerate(same) if o is c) + 1  # by identity: equal cards are two runs
        labels.append(f"{c['model']} ({own or f'run {position} of {len(same)}'})")
    return labels

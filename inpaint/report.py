"""Results cards and the leaderboard: ``python -m inpaint.report RUN_DIR...``.

Every test run of ``inpaint.run`` leaves a results card in its run directory: ``card.json`` (machine
readable) and ``card.md``. It holds the command and config, the evaluation protocol and its fingerprint,
the metrics per hole-ratio bucket, the parameter count, the fill time per image, the training steps and
wall time, the checkpoint and (``logger=wandb``) the W&B run. A run that fails leaves a card with
``"status": "failed"`` and the error.

The protocol fingerprint is a short sha256 over the canonical JSON of what makes two runs' numbers
comparable: the test images actually evaluated (count and an order-independent hash of each sample's
uint8 image), the evaluation masks actually used (same hash of each binary mask), the image size, the
mask config (the ``mask`` choice and its options, paths left out) and the metric options (``eval.buckets``,
``eval.per_bucket``, ``eval.hole_metrics`` and the metric definitions' constants).

``python -m inpaint.report RUN_DIR... [--out DIR]`` (run directories, their parents or sweep directories,
searched recursively, or quoted glob patterns) reads the cards and writes ``leaderboard.md``,
``leaderboard.csv`` and ``leaderboard.png`` (PSNR and SSIM against the hole-ratio bucket, one line per
run). Runs are grouped by fingerprint and ranked by PSNR only inside a group; failed and unfinished runs
are listed with the reason. The files are a pure function of the cards: a rerun writes the same bytes.
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import io
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from inpaint import metrics as M
from inpaint.metrics import bucket_name, metrics_table, reported_metrics
from inpaint.sweeps import parse_overrides

log = logging.getLogger(__name__)

CARD_JSON, CARD_MD = "card.json", "card.md"
#: override keys that name files or folders (they differ between machines, not between methods)
PATH_KEYS = ("root", "dir", "path", "file", "ckpt_path", "init_from", "resume", "save_dir")
PATH_PREFIXES = ("hydra.", "paths.", "hydra/")
CSV_FLOAT = "{:.6g}"
#: error metrics: ``--metric`` ranks them lowest first (the others highest first)
LOWER_IS_BETTER = ("mae", "l2", "mse_hole", "l2_paper", "l2_paper_255")


# ------------------------------------------------------------------------------------------- helpers
def _is_path_key(key: str) -> bool:
    key = key.lstrip("+~")
    last = key.rsplit(".", 1)[-1]
    return key.startswith(PATH_PREFIXES) or last in PATH_KEYS or last.endswith(tuple(f"_{k}" for k in PATH_KEYS))


def settings_of(overrides: Sequence[str]) -> dict[str, str]:
    """The run's overrides as ``{key: value}`` minus path-like keys and the model choice (its own column)."""
    return {k: v for k, v in sorted(parse_overrides(list(overrides)).items()) if k != "model" and not _is_path_key(k)}


def _without_paths(node: Any) -> Any:
    """A config mapping without path-like keys (recursively)."""
    if isinstance(node, Mapping):
        return {k: _without_paths(v) for k, v in sorted(node.items()) if not _is_path_key(str(k))}
    if isinstance(node, (list, tuple)):
        return [_without_paths(v) for v in node]
    return node


def fingerprint_of(protocol: Mapping[str, Any]) -> str:
    """Short sha256 over the protocol's canonical JSON."""
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def combine_digests(per_bucket: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One digest for the test runs of ``eval.per_bucket`` (in bucket order), each bucket's kept too."""
    joined = json.dumps(list(per_bucket.items()), sort_keys=True)
    images = {(d.get("count"), d.get("images")) for d in per_bucket.values()}
    if len(images) == 1:  # the usual case: every bucket's run saw the same images (with other masks)
        count, image_hash = images.pop()
    else:
        count = sum(int(d.get("count", 0)) for d in per_bucket.values())
        image_hash = hashlib.sha256(("images" + joined).encode()).hexdigest()[:16]
    return {
        "count": count,
        "images": image_hash,
        "masks": hashlib.sha256(("masks" + joined).encode()).hexdigest()[:16],
        "buckets": {k: dict(v) for k, v in per_bucket.items()},
    }


def relative_paths(node: Any, base: Path) -> Any:
    """``node`` with every path under ``base`` written relative to it, also inside longer strings such as the
    command (recursively), so a card names no directory of the machine it was written on."""
    if isinstance(node, Mapping):
        return {k: relative_paths(v, base) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [relative_paths(v, base) for v in node]
    return node.replace(f"{base}/", "") if isinstance(node, str) else node


def _hydra_runtime() -> tuple[dict[str, str], list[str]]:
    """The Hydra job's config-group choices and overrides; empty outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return dict(hc.runtime.choices), list(hc.overrides.task)
    except Exception:  # composed without @hydra.main (tests, scripts)
        return {}, []


def _container(cfg: DictConfig) -> dict:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that needs the Hydra job
        return OmegaConf.to_container(cfg, resolve=False)


def protocol_of(cfg: DictConfig, digest: Mapping[str, Any], choices: Mapping[str, str]) -> dict[str, Any]:
    """What a test's numbers depend on besides the model (see the module docstring)."""
    mask_cfg = _container(cfg.mask) if "mask" in cfg else {}
    return {
        "images": {"count": int(digest.get("count", 0)), "hash": digest.get("images")},
        "masks": {"hash": digest.get("masks")},
        **({"bucket_digests": digest["buckets"]} if "buckets" in digest else {}),
        "image_size": cfg.data.get("image_size") if "data" in cfg else None,
        "mask": {"name": choices.get("mask") or str(mask_cfg.get("_target_", "")).rsplit(".", 1)[-1],
                 "config": _without_paths(mask_cfg)},
        "metric_options": {
            "buckets": [[float(x) for x in b] for b in cfg.eval.buckets],
            "per_bucket": bool(cfg.eval.get("per_bucket", False)),
            "hole_metrics": bool(cfg.eval.get("hole_metrics", False)),
            "definitions": {"psnr_max": M.PSNR_MAX, "ssim_sigma": M.SSIM_SIGMA, "ssim_radius": M.SSIM_RADIUS,
                            "ssim_k": [M.SSIM_K1, M.SSIM_K2], "maem_tolerance": M.MAEM_TOLERANCE},
        },
    }


def _checkpoint_training(ckpt: str | None) -> dict[str, Any]:
    """Training steps (and seconds, from the training run's own card) of a checkpoint a ``task=test`` run
    evaluated; None where unknown."""
    out: dict[str, Any] = {"steps": None, "seconds": None}
    if not ckpt or not Path(ckpt).is_file():
        return out
    try:
        import torch

        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
        out["steps"] = int(state["global_step"]) if "global_step" in state else None
    except Exception as e:
        log.debug("no step count in %s: %s", ckpt, e)
    for cand in (Path(ckpt).parent.parent, Path(ckpt).parent):
        card = cand / CARD_JSON
        if card.is_file():
            try:
                trained = json.loads(card.read_text()).get("training") or {}
            except ValueError:
                continue
            if trained.get("steps") == out["steps"]:
                out["seconds"] = trained.get("seconds")
            break
    return out


def _wandb_loggers(loggers) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


# ------------------------------------------------------------------------------------------- cards
def write_card(cfg: DictConfig, out_dir: Path, model, trainer, results: Mapping[str, float], ckpt: str | None,
               training: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``card.json`` and ``card.md`` for a finished test; with a W&B logger, log the card's
    leaderboard row as a W&B Table (``test/leaderboard_row``). Returns the card."""
    choices, overrides = _hydra_runtime()
    protocol = protocol_of(cfg, model.test_digest, choices)
    if training.get("steps") is None and cfg.task == "test":
        training = _checkpoint_training(ckpt)
    params = list(model.parameters())
    wandb_runs = _wandb_loggers(trainer.loggers)
    url = run_id = None
    if wandb_runs:
        exp = wandb_runs[0].experiment
        url = getattr(exp, "url", None) or None  # None offline
        run_id = getattr(exp, "id", None)
    card = {
        "status": "ok",
        "error": None,
        "model": choices.get("model") or type(model).__name__,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "task": str(cfg.task),
        "command": " ".join(["python -m inpaint.run", *sys.argv[1:]]) if overrides else None,
        "overrides": overrides,
        "settings": settings_of(overrides),
        "procedure": model.procedure,
        # for people; the fingerprint identifies the data by the images' content (paths differ between machines)
        "data": {"name": choices.get("data") or str(cfg.data.get("_target_", "")).rsplit(".", 1)[-1],
                 "config": _without_paths(_container(cfg.data))},
        "fingerprint": fingerprint_of(protocol),
        "protocol": protocol,
        "metrics": {k: float(v) for k, v in sorted(results.items())},
        "parameters": {"total": sum(p.numel() for p in params),
                       "trainable": sum(p.numel() for p in params if p.requires_grad)},
        "seconds_per_image": model.fill_seconds.get("test"),
        "training": {"steps": training.get("steps"), "seconds": training.get("seconds")},
        "checkpoint": str(ckpt) if ckpt else None,
        "wandb_url": url,
        "wandb_run_id": run_id,
        "config": _container(cfg),
    }
    card = relative_paths(card, Path.cwd())  # the run's working directory: where its relative paths start
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    (out_dir / CARD_MD).write_text(card_markdown(card))
    if wandb_runs:
        header, row = leaderboard_row(card, out_dir)
        for lg in wandb_runs:
            lg.log_table(key="test/leaderboard_row", columns=header, data=[row])
    return card


def write_failed_card(cfg: DictConfig, error: str) -> Path | None:
    """``card.json`` with ``"status": "failed"`` and ``error`` in a failed ``inpaint.run`` job's directory
    (when the config is a run's and its directory exists); returns its path."""
    if not isinstance(cfg, DictConfig) or "task" not in cfg or "eval" not in cfg:
        return None  # not inpaint.run (predict, prepare)
    try:
        out_dir = Path(cfg.paths.output_dir)
    except Exception:
        return None
    if not out_dir.is_dir():
        return None
    choices, overrides = _hydra_runtime()
    card = {
        "status": "failed",
        "error": error.strip().splitlines()[-1] if error.strip() else "unknown error",
        "model": choices.get("model") or str(cfg.model.get("_target_", "?")).rsplit(".", 1)[-1],
        "task": str(cfg.task),
        "command": " ".join(["python -m inpaint.run", *sys.argv[1:]]) if overrides else None,
        "overrides": overrides,
        "settings": settings_of(overrides),
    }
    card = relative_paths(card, Path.cwd())
    path = out_dir / CARD_JSON
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out_dir / CARD_MD).write_text(f"# Results card: {card['model']} (failed)\n\nerror: `{card['error']}`\n")
    return path


def _fmt(v: Any, spec: str = ".4g") -> str:
    """A number for a markdown cell or line: ``-`` when unknown."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


def card_markdown(card: Mapping[str, Any]) -> str:
    p = card["protocol"]
    buckets = p["metric_options"]["buckets"]
    t = card["training"]
    lines = [
        f"# Results card: {card['model']}",
        "",
        f"- command: `{card['command'] or '(composed in Python: no command line)'}`",
        f"- model: `{card['model_class']}`, inference procedure `{card['procedure']}`",
        f"- parameters: {card['parameters']['total']:,} ({card['parameters']['trainable']:,} trainable)",
        f"- latency: {_fmt(card['seconds_per_image'])} s per image (test fill time)",
        f"- training: {_fmt(t['steps'], 'd')} steps, {_fmt(t['seconds'], '.1f')} s" if t["steps"] is not None
        else "- training: none recorded (not trained in this run and no step count in the checkpoint)",
        f"- checkpoint: `{card['checkpoint']}`",
    ]
    if card.get("wandb_url"):
        lines.append(f"- W&B run: {card['wandb_url']}")
    elif card.get("wandb_run_id"):
        lines.append(f"- W&B run: `{card['wandb_run_id']}`, offline (upload with `wandb sync` on the run's wandb/ folder)")
    lines += [
        "",
        f"## Protocol (fingerprint `{card['fingerprint']}`)",
        "",
        f"- data: data={card['data']['name']}, {p['images']['count']} test images (hash `{p['images']['hash']}`), "
        f"image size {p['image_size']}",
        f"- masks: mask={p['mask']['name']} (hash `{p['masks']['hash']}`), "
        f"config `{json.dumps(p['mask']['config'], sort_keys=True)}`",
        f"- metric options: `{json.dumps(p['metric_options'], sort_keys=True)}`",
        "",
        "## Metrics (composite, per image then averaged)",
        "",
        metrics_table(card["metrics"], buckets, prefix="test/") if any(k.startswith("test/psnr") for k in
                                                                          card["metrics"]) else "(no inpainting scores)",
        "",
        "## Config",
        "",
        "```yaml",
        yaml.safe_dump(card["config"], sort_keys=True).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


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


# ------------------------------------------------------------------------------------------- leaderboard
def _bucket_names(card: Mapping[str, Any]) -> list[str]:
    buckets = card["protocol"]["metric_options"]["buckets"]
    return [bucket_name(lo, hi) for lo, hi in buckets if f"test/psnr@{bucket_name(lo, hi)}" in card["metrics"]]


def _group_buckets(group: Sequence[Mapping[str, Any]]) -> list[str]:
    """The buckets any run of a protocol group has metrics for, in the protocol's order."""
    return [b for b in (bucket_name(lo, hi) for lo, hi in group[0]["protocol"]["metric_options"]["buckets"])
            if any(b in _bucket_names(c) for c in group)]


def _display_dir(run_dir: Path) -> str:
    try:
        return str(run_dir.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(run_dir)


def leaderboard_row(card: Mapping[str, Any], run_dir: Path) -> tuple[list[str], list[Any]]:
    """The card's row of the leaderboard (header, values): identity, cost, then every test metric."""
    t = card["training"]
    header = ["model", "settings", "train steps", "train s", "params", "s/image", "fingerprint", "run"]
    row = [card["model"], " ".join(f"{k}={v}" for k, v in card["settings"].items()), t["steps"], t["seconds"],
           card["parameters"]["total"], card["seconds_per_image"], card["fingerprint"], _display_dir(run_dir)]
    names = reported_metrics(card["metrics"], "test/")
    keys = [f"{m}{suffix}" for suffix in ["", *(f"@{b}" for b in _bucket_names(card))] for m in ("count", *names)]
    keys = [k for k in keys if f"test/{k}" in card["metrics"]]
    return header + keys, row + [card["metrics"][f"test/{k}"] for k in keys]


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
    columns = [("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".4f"), ("mae", "MAE(%)", ".3f"), ("l2", "L2", ".5f"),
               ("maem", "MAEM(%)", ".2f")]
    no_curve = []
    for gi, group in enumerate(groups, 1):
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
        lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for rank, c in enumerate(group, 1):
            t = c["training"]
            own = {k: v for k, v in c["settings"].items() if len(group) == 1 or common.get(k) != v}
            cells = [str(rank), c["model"], " ".join(f"`{k}={v}`" for k, v in own.items()) or "-",
                     _fmt(t["steps"], "d"), _fmt(t["seconds"], ".1f"), f"{c['parameters']['total']:,}",
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


# ------------------------------------------------------------------------------------------- command
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inpaint.report",
        description="Leaderboard of inpaint.run test runs, from their results cards (card.json).",
    )
    parser.add_argument("runs", nargs="+", help="run directories, folders holding them (searched recursively) "
                                                "or glob patterns")
    parser.add_argument("--out", default="leaderboard", help="output folder (default: ./leaderboard)")
    parser.add_argument("--metric", default="psnr", help="test metric ranked on, best first: highest, or lowest for an error "
                        "(mae, l2, mse_hole, l2_paper, l2_paper_255) (default: psnr)")
    parser.add_argument("--wandb", metavar="PROJECT", default=None,
                        help="also log the leaderboard as a W&B Table in one run of PROJECT (offline without "
                             "credentials)")
    args = parser.parse_args(argv)
    run_dirs, problems = find_run_dirs(args.runs)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    if not run_dirs:
        print(f"error: no run directories found in {' '.join(args.runs)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    board = write_leaderboard(run_dirs, out, args.metric)
    n_ok = sum(len(g) for g in board["groups"])
    print(f"{len(run_dirs)} run(s): {n_ok} ranked in {len(board['groups'])} protocol group(s), "
          f"{len(board['others'])} failed or unfinished -> {out / 'leaderboard.md'}")
    if args.wandb:
        started = time.perf_counter()
        url = log_leaderboard_to_wandb(board, args.wandb, out)
        print(f"W&B: leaderboard logged to project {args.wandb} ({url or 'offline run under ' + str(out / 'wandb')},"
              f" {time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

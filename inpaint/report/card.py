"""Results cards: what a test run of ``inpaint.run`` leaves in its run directory.

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

A card also gives its own row of the leaderboard (:func:`leaderboard_row`): the leaderboard's CSV is made
of these rows, and a W&B run logs its card's row as a table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from inpaint import metrics as M
from inpaint.metrics import bucket_name, metrics_table, reported_metrics
from inpaint.overrides import parse_overrides

log = logging.getLogger(__name__)

CARD_JSON, CARD_MD = "card.json", "card.md"
#: override keys that name files or folders (they differ between machines, not between methods)
PATH_KEYS = ("root", "dir", "path", "file", "ckpt_path", "init_from", "resume", "save_dir")
PATH_PREFIXES = ("hydra.", "paths.", "hydra/")


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


# ------------------------------------------------------------------------------------------- protocol
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
    out: dict[str, Any] = {"steps": None, "seconds": None, "command": None}
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
                training_card = json.loads(card.read_text())
            except ValueError:
                continue
            trained = training_card.get("training") or {}
            if trained.get("steps") == out["steps"]:
                out["seconds"] = trained.get("seconds")
                out["command"] = training_card.get("command")
            break
    return out


def file_sha256(path: str | Path | None) -> str | None:
    """The sha256 of a file (a checkpoint kept out of git: the card says which one its numbers came from)."""
    if not path or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    command = " ".join(["python -m inpaint.run", *sys.argv[1:]]) if overrides else None
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
        "command": command,
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
        "checkpoint_sha256": file_sha256(ckpt),
        # the command that trained the checkpoint: this run's own for task=fit, the training run's card's for a test
        "checkpoint_command": (command if cfg.task == "fit" else training.get("command")) if ckpt else None,
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
        f"- checkpoint: `{card['checkpoint']}`" + (f", sha256 `{card['checkpoint_sha256']}`"
                                                   if card.get("checkpoint_sha256") else ""),
    ]
    if card.get("checkpoint_command") and card.get("task") == "test":
        lines.append(f"- trained by: `{card['checkpoint_command']}`")
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


# ------------------------------------------------------------------------------------------- a card's row
def _bucket_names(card: Mapping[str, Any]) -> list[str]:
    buckets = card["protocol"]["metric_options"]["buckets"]
    return [bucket_name(lo, hi) for lo, hi in buckets if f"test/psnr@{bucket_name(lo, hi)}" in card["metrics"]]


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

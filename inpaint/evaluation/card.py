"""Results cards: what a test run of ``inpaint.run`` leaves in its run directory.

Every test run of ``inpaint.run`` leaves a results card in its run directory: ``card.json`` (machine
readable) and ``card.md``. It holds the command and config, the evaluation protocol and its fingerprint,
the metrics per hole-ratio bucket, the parameter count, the fill time per image, the training steps and
wall time, the checkpoint and (``logger=wandb``) the W&B run. A run that fails leaves a card with
``"status": "failed"`` and the error.

The protocol fingerprint (:mod:`inpaint.evaluation.protocol`) says which runs' numbers are comparable.
``python -m inpaint.evaluate score`` writes the same card for outputs made by another codebase
(:func:`write_score_card`): its ``source`` says where they came from, and it ranks next to our runs when its
fingerprint matches. ``metrics.md`` is rendered from the card (:func:`metrics_markdown`).

Field metrics computed with random network weights (``eval.feature_weights=random``) are flagged in the card
(``random_feature_weights``), its markdown and the leaderboard: such a number is never an FID.

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

from inpaint.evaluation.metrics import bucket_name, reported_metrics
from inpaint.evaluation.protocol import (
    PATH_KEYS,
    PATH_PREFIXES,
    build_protocol,
    fingerprint_of,
    is_path_key,
    metric_options,
    without_paths,
)
from inpaint.evaluation.tables import comparison_table, metrics_table
from inpaint.overrides import parse_overrides

log = logging.getLogger(__name__)

CARD_JSON, CARD_MD = "card.json", "card.md"
__all__ = ["CARD_JSON", "CARD_MD", "PATH_KEYS", "PATH_PREFIXES", "card_markdown", "fingerprint_of",
           "leaderboard_row", "metrics_markdown", "protocol_of", "relative_paths", "settings_of", "write_card",
           "write_failed_card", "write_interrupted_card", "write_score_card"]


# ------------------------------------------------------------------------------------------- helpers
def settings_of(overrides: Sequence[str]) -> dict[str, str]:
    """The run's overrides as ``{key: value}`` minus path-like keys and the model choice (its own column)."""
    return {k: v for k, v in sorted(parse_overrides(list(overrides)).items()) if k != "model" and not is_path_key(k)}


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
def protocol_of(cfg: DictConfig, digest: Mapping[str, Any], choices: Mapping[str, str],
                field: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The protocol (:mod:`inpaint.evaluation.protocol`) of a run of ``inpaint.run`` with config ``cfg``;
    ``field``: the field metrics' options (:meth:`~inpaint.evaluation.evaluator.EvalSpec.field_options`)."""
    mask_cfg = _container(cfg.mask) if "mask" in cfg else {}
    return build_protocol(
        digest,
        cfg.data.get("image_size") if "data" in cfg else None,
        choices.get("mask") or str(mask_cfg.get("_target_", "")).rsplit(".", 1)[-1],
        mask_cfg,
        metric_options(cfg.eval.buckets, cfg.eval.get("per_bucket", False), cfg.eval.get("hole_metrics", False),
                       field),
    )


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
def _save(card: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    card = relative_paths(card, Path.cwd())  # the run's working directory: where its relative paths start
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    (out_dir / CARD_MD).write_text(card_markdown(card))
    return card


def write_card(cfg: DictConfig, out_dir: Path, model, trainer, results: Mapping[str, float], ckpt: str | None,
               training: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``card.json`` and ``card.md`` for a finished test; with a W&B logger, log the card's
    leaderboard row as a W&B Table (``test/leaderboard_row``). Returns the card."""
    choices, overrides = _hydra_runtime()
    spec = model.eval_spec
    protocol = protocol_of(cfg, model.test_digest, choices, spec.field_options())
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
        "variants": dict(model.eval_variants or {}),
        # for people; the fingerprint identifies the data by the images' content (paths differ between machines)
        "data": {"name": choices.get("data") or str(cfg.data.get("_target_", "")).rsplit(".", 1)[-1],
                 "config": without_paths(_container(cfg.data))},
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
    if spec.metrics:
        card["random_feature_weights"] = spec.random_weights
    card = _save(card, out_dir)
    if wandb_runs:
        header, row = leaderboard_row(card, out_dir)
        for lg in wandb_runs:
            lg.log_table(key="test/leaderboard_row", columns=header, data=[row])
    return card


def write_score_card(out_dir: Path, name: str, results: Mapping[str, float], protocol: Mapping[str, Any],
                     source: Mapping[str, Any], command: str, data: Mapping[str, Any],
                     random_feature_weights: bool | None) -> dict[str, Any]:
    """The card of outputs scored offline by ``python -m inpaint.evaluate score`` (any codebase's):
    ``source`` says where the outputs came from and what was checked (files, known pixels); the protocol is
    the exported set's, so it groups with our runs on the same images, masks and metrics."""
    card = {
        "status": "ok",
        "error": None,
        "model": name,
        "model_class": None,
        "task": "score",
        "command": command,
        "overrides": [],
        "settings": {},
        "procedure": None,
        "variants": {},
        "source": dict(source),
        "data": dict(data),
        "fingerprint": fingerprint_of(protocol),
        "protocol": dict(protocol),
        "metrics": {k: float(v) for k, v in sorted(results.items())},
        "parameters": {"total": None, "trainable": None},
        "seconds_per_image": None,
        "training": {"steps": None, "seconds": None},
        "checkpoint": None,
        "checkpoint_sha256": None,
        "checkpoint_command": None,
        "wandb_url": None,
        "wandb_run_id": None,
        "config": None,
    }
    if random_feature_weights is not None:
        card["random_feature_weights"] = bool(random_feature_weights)
    return _save(card, out_dir)


def _write_status_card(cfg: DictConfig, status: str, error: str, extra: Mapping[str, Any]) -> Path | None:
    """``card.json`` / ``card.md`` with ``status`` (``failed``, ``interrupted``) and a one-line reason in an
    ``inpaint.run`` job's directory (when the config is a run's and its directory exists); returns its path."""
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
        "status": status,
        "error": error.strip().splitlines()[-1] if error.strip() else "unknown error",
        "model": choices.get("model") or str(cfg.model.get("_target_", "?")).rsplit(".", 1)[-1],
        "task": str(cfg.task),
        "command": " ".join(["python -m inpaint.run", *sys.argv[1:]]) if overrides else None,
        "overrides": overrides,
        "settings": settings_of(overrides),
        **extra,
    }
    card = relative_paths(card, Path.cwd())
    path = out_dir / CARD_JSON
    path.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    (out_dir / CARD_MD).write_text(f"# Results card: {card['model']} ({status})\n\n{status}: `{card['error']}`\n")
    return path


def write_failed_card(cfg: DictConfig, error: str) -> Path | None:
    """``card.json`` with ``"status": "failed"`` and ``error`` in a failed ``inpaint.run`` job's directory."""
    return _write_status_card(cfg, "failed", error, {})


def write_interrupted_card(cfg: DictConfig, signal_name: str, step: int | None, checkpoint: str | None
                           ) -> Path | None:
    """``card.json`` with ``"status": "interrupted"``: the signal, the step reached and the checkpoint left (the
    leaderboard lists the run with the failed and unfinished ones)."""
    where = f"at step {step}" if step is not None else "before training started"
    return _write_status_card(cfg, "interrupted", f"stopped by {signal_name} {where}",
                              {"signal": signal_name, "step": step, "checkpoint": checkpoint})


def _fmt(v: Any, spec: str = ".4g") -> str:
    """A number for a markdown cell or line: ``-`` when unknown."""
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


RANDOM_WEIGHTS_WARNING = ("**computed with RANDOM network weights (eval.feature_weights=random): LPIPS, FID, KID and "
                          "P/U-IDS here test the machinery only and are not comparable with any published value**")


def metric_tables(card: Mapping[str, Any]) -> str:
    """The card's test numbers: the per-bucket table, the model's other numbers and, for a model that scores
    several procedures (or its raw output), the side-by-side table."""
    metrics = card["metrics"]
    buckets = card["protocol"]["metric_options"]["buckets"]
    if any(k.startswith("test/psnr") for k in metrics):
        table = metrics_table(metrics, buckets, prefix="test/")
    else:  # a model that does not inpaint (a generative prior): only its own numbers below
        table = "(no inpainting scores: the model does not inpaint)"
    shown = set(reported_metrics(metrics, "test/")) | {"count"}
    others = {k: v for k, v in metrics.items() if k.startswith("test/") and "@" not in k and "/" not in k[5:]
              and k[5:] not in shown}
    if others:  # a model's own numbers (a density model's NLL, a prior's SWD), listed under the table
        table += "\n\nOther test metrics:\n\n| metric | value |\n|---|---|\n" + "\n".join(
            f"| {k} | {float(v):.5g} |" for k, v in sorted(others.items()))
    variants = card.get("variants") or {}
    if len(variants) > 1:
        table += ("\n\nSide by side (" + ", ".join(variants) + "):\n\n"
                  + comparison_table(metrics, buckets, variants))
    if card.get("random_feature_weights"):
        table += "\n\n" + RANDOM_WEIGHTS_WARNING
    return table


def metrics_markdown(card: Mapping[str, Any]) -> str:
    """``metrics.md`` of a run directory, rendered from its card."""
    per_bucket = card["protocol"]["metric_options"]["per_bucket"]
    protocol = ("one test run per bucket, masks restricted to its hole ratio (eval.per_bucket=true)" if per_bucket
                else "one test run, images grouped by their mask's hole ratio")
    header = (
        f"# Test metrics\n\nmodel: `{card.get('model_class') or card['model']}`  \n"
        f"inference procedure: `{card['procedure'] or 'none (the model does not inpaint)'}`  \n"
        f"checkpoint: `{card['checkpoint']}`  \nbuckets: {protocol}\n\n"
    )
    return header + metric_tables(card) + "\n"


def card_markdown(card: Mapping[str, Any]) -> str:
    p = card["protocol"]
    t = card["training"]
    source = card.get("source")
    params = card["parameters"]
    lines = [f"# Results card: {card['model']}", ""]
    if source:
        lines += [
            f"- command: `{card['command']}`",
            f"- outputs scored offline: `{source.get('outputs')}` ({source.get('description') or 'no description'})",
            f"- known pixels changed by the method: {source.get('known_pixels_changed', {}).get('images', 0)} "
            f"image(s), {source.get('known_pixels_changed', {}).get('pixels', 0)} pixel(s); "
            + ("scored as given" if source.get("as_is") else "pasted back (the composite is scored)"),
        ]
    else:
        lines += [
            f"- command: `{card['command'] or '(composed in Python: no command line)'}`",
            f"- model: `{card['model_class']}`, inference procedure `{card['procedure']}`",
            f"- parameters: {params['total']:,} ({params['trainable']:,} trainable)",
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
        metric_tables(card),
        "",
    ]
    if card.get("config") is not None:
        lines += ["## Config", "", "```yaml", yaml.safe_dump(card["config"], sort_keys=True).rstrip(), "```", ""]
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
    settings = " ".join(f"{k}={v}" for k, v in card["settings"].items())
    if card.get("source"):
        settings = ("scored offline: " + str(card["source"].get("description") or card["source"].get("outputs"))
                    + (" " + settings if settings else ""))
    if card.get("random_feature_weights"):
        settings = (settings + " " if settings else "") + "[field metrics: RANDOM weights]"
    row = [card["model"], settings, t["steps"], t["seconds"],
           card["parameters"]["total"], card["seconds_per_image"], card["fingerprint"], _display_dir(run_dir)]
    names = reported_metrics(card["metrics"], "test/")
    keys = [f"{m}{suffix}" for suffix in ["", *(f"@{b}" for b in _bucket_names(card))] for m in ("count", *names)]
    keys = [k for k in keys if f"test/{k}" in card["metrics"]]
    return header + keys, row + [card["metrics"][f"test/{k}"] for k in keys]

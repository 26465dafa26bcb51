"""``python -m inpaint.run``: compose the config, train, test the best checkpoint, write the report.

  python -m inpaint.run                                   # scnn on the embedded sample photos, CPU
  python -m inpaint.run task=test ckpt_path=RUN/checkpoints/best.ckpt
  python -m inpaint.run model=biharmonic task=test        # non-learned baseline, no checkpoint
  python -m inpaint.run -m model.lr=1e-3,1e-4             # sweep

The run directory (printed at the end) holds ``.hydra/`` (the composed config), ``checkpoints/``
(``best.ckpt``, ``last.ckpt``), ``metrics.json``, ``metrics.md``, ``grids/`` and the logger's files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
import lightning as L
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from inpaint.checkpoints import CheckpointMismatchError, check_checkpoint_class, load_weights
from inpaint.data.io import ImageReadError
from inpaint.loggers import log_metric_table
from inpaint.metrics import bucket_name, comparison_table, metrics_table
from inpaint.models.base import InpaintModule

log = logging.getLogger("inpaint.run")


def find_conf_dir() -> Path:
    """The ``conf/`` folder next to the package (a source checkout or an editable install)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "conf", here / "conf"):
        if (cand / "train.yaml").is_file():
            return cand
    raise RuntimeError(
        f"cannot find the Hydra configs (conf/train.yaml) next to {here}; install with `pip install -e .`"
    )


CONF_DIR = find_conf_dir()

#: errors caused by the user's input: reported as one message, without a stack trace
USER_ERRORS = (
    FileNotFoundError,
    NotADirectoryError,
    ValueError,
    ImageReadError,
    CheckpointMismatchError,
    FloatingPointError,
    MissingMandatoryValue,  # a `???` option left unset, e.g. data.root
)


def user_message(e: BaseException) -> str:
    """The one-line report of a user error."""
    if isinstance(e, MissingMandatoryValue) and getattr(e, "full_key", None):
        return f"{e.full_key} is not set (it has no default): add {e.full_key}=... to the command"
    return str(e)


def _instantiate(node, **kwargs):
    """``hydra.utils.instantiate`` that re-raises our own errors unwrapped, so the message reads cleanly."""
    try:
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        cause = e.__cause__
        while isinstance(cause, InstantiationException) and cause.__cause__ is not None:
            cause = cause.__cause__
        if isinstance(cause, USER_ERRORS):
            raise cause from None
        raise


def build_model(cfg: DictConfig) -> InpaintModule:
    model = _instantiate(cfg.model, buckets=OmegaConf.to_container(cfg.eval.buckets))
    if not isinstance(model, InpaintModule):
        raise ValueError(f"model._target_={cfg.model._target_} is not an inpaint.models.base.InpaintModule")
    if cfg.get("channels_last"):
        model = model.use_channels_last()
    return model


def build_mask(cfg: DictConfig, mask_ratio: Sequence[float] | None = None):
    """The configured mask generator; ``mask_ratio`` restricts it to one hole-ratio range."""
    mask_cfg = cfg.mask
    if mask_ratio is not None:
        if "ratio" not in mask_cfg:
            raise ValueError(
                f"eval.per_bucket=true needs a mask generator with a hole-ratio option (mask=nvidia, freeform "
                f"or blocks); {mask_cfg._target_} has none. Use eval.per_bucket=false with this mask."
            )
        mask_cfg = OmegaConf.merge(mask_cfg, {"ratio": [float(r) for r in mask_ratio]})
    return _instantiate(mask_cfg)


def build_datamodule(cfg: DictConfig, mask_ratio: Sequence[float] | None = None) -> L.LightningDataModule:
    """The configured DataModule; ``mask_ratio`` restricts the mask generator to one hole-ratio range."""
    return _instantiate(cfg.data, mask=build_mask(cfg, mask_ratio), seed=cfg.seed)


def build_trainer(cfg: DictConfig) -> L.Trainer:
    loggers = [_instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [_instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    return _instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks)


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or test as ``cfg.task`` says.

    Returns the test metrics (``test/psnr``, ...) and the validation metrics (``val/psnr``: the best
    checkpoint's monitored value, else the last validation), for sweepers and scripts."""
    if cfg.task not in ("fit", "test"):
        raise ValueError(f"task={cfg.task} is not a task: use task=fit (train, then test) or task=test")
    L.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)

    model = build_model(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path:
        check_checkpoint_class(ckpt_path, model, CONF_DIR / "model")
    if cfg.get("init_from"):
        load_weights(model, cfg.init_from)
    if cfg.task == "fit" and not model.trainable:
        raise ValueError(f"{type(model).__name__} has nothing to train: evaluate it with task=test")
    pretrained = getattr(model, "has_pretrained_weights", False)
    if cfg.task == "test" and model.trainable and not ckpt_path and not cfg.get("init_from") and not pretrained:
        raise ValueError(
            "task=test needs ckpt_path=PATH/TO/best.ckpt (or init_from=...) for a trainable model"
        )

    datamodule = build_datamodule(cfg)
    trainer = build_trainer(cfg)
    if cfg.get("compile"):
        model.compile_networks()

    if cfg.task == "fit":
        # checkpoints are read with weights_only=True: tensors and plain containers, no arbitrary pickles
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        if not cfg.get("test_after_fit", True):
            return {}
        cb = _checkpoint_callback(trainer)
        test_ckpt = (cb.best_model_path or cb.last_model_path) if cb else None
    else:
        test_ckpt = ckpt_path
    if cfg.eval.get("per_bucket"):
        results = test_per_bucket(cfg, model, trainer, datamodule, test_ckpt or None)
    else:
        trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt or None, weights_only=True)
        results = dict(model.test_results)

    if trainer.is_global_zero:
        write_report(cfg, out_dir, results, model.val_results, test_ckpt, getattr(model, "eval_variants", None))
    # validation numbers for sweepers: the checkpoint's monitored best, else the last validation
    summary = {**model.val_results, **results}
    cb = _checkpoint_callback(trainer)
    if cb is not None and cb.monitor and cb.best_model_score is not None:
        summary[cb.monitor] = float(cb.best_model_score)
    return summary


def test_per_bucket(
    cfg: DictConfig,
    model: InpaintModule,
    trainer: L.Trainer,
    datamodule: L.LightningDataModule,
    ckpt: str | None,
) -> dict[str, float]:
    """One test run per ``eval.buckets`` entry with the masks restricted to it, merged into one result.

    The images are ``datamodule``'s; only its mask generator changes per bucket (the dataset's lists,
    checks and carved splits are not rebuilt).

    Bucket ``[lo, hi)``'s overall numbers become ``test/<metric>@lo-hi`` (and ``test/count@lo-hi``); the
    plain ``test/<metric>`` keys are the image-weighted mean over all bucket runs."""
    merged: dict[str, float] = {}
    totals: dict[str, float] = {}
    n_total = 0.0
    for lo, hi in cfg.eval.buckets:
        log.info("per-bucket evaluation: hole ratio [%s, %s)", lo, hi)
        mask = build_mask(cfg, mask_ratio=(lo, hi))
        bucket_data = (
            datamodule.with_mask(mask)
            if hasattr(datamodule, "with_mask")
            else build_datamodule(cfg, (lo, hi))
        )
        trainer.test(model, datamodule=bucket_data, ckpt_path=ckpt, weights_only=True)
        suffix = "@" + bucket_name(lo, hi)
        res = model.test_results
        n = float(res.get("test/count", 0.0))
        for key, value in res.items():
            if "@" in key:  # the run's own ratio grouping: superseded by the bucket it was restricted to
                continue
            merged[key + suffix] = value
            if key != "test/count" and n > 0:
                totals[key] = totals.get(key, 0.0) + value * n
        n_total += n
    merged.update({k: v / n_total for k, v in totals.items()} if n_total else {})
    merged["test/count"] = n_total
    log_metric_table(
        trainer.loggers, "test/per_bucket_table", merged, [tuple(b) for b in cfg.eval.buckets], prefix="test/"
    )
    return merged


def write_report(
    cfg: DictConfig, out_dir: Path, test: dict, val: dict, ckpt: str | None, variants: dict[str, str] | None = None
) -> None:
    """``metrics.json`` (every number) and ``metrics.md`` (the per-bucket table) in the run dir.

    ``variants`` (label -> key prefix, from a model that scores several inference procedures, e.g. ISNet
    with and without PRA) adds a side-by-side table shaped like ISNet's Table 5."""
    out_dir.mkdir(parents=True, exist_ok=True)
    buckets = [tuple(b) for b in cfg.eval.buckets]
    report = {
        "model": cfg.model._target_,
        "task": cfg.task,
        "checkpoint": str(ckpt) if ckpt else None,
        "protocol": "per_bucket" if cfg.eval.get("per_bucket") else "pooled",
        "test": test,
        "last_val": val,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    table = metrics_table(test, buckets, prefix="test/")
    protocol = (
        "one test run per bucket, masks restricted to its hole ratio (eval.per_bucket=true)"
        if cfg.eval.get("per_bucket")
        else "one test run, images grouped by their mask's hole ratio"
    )
    header = (
        f"# Test metrics\n\nmodel: `{cfg.model._target_}`  \ncheckpoint: `{ckpt}`  \nbuckets: {protocol}\n\n"
    )
    side = ""
    if variants and len(variants) > 1:
        side = "\n\nSide by side (" + ", ".join(variants) + "):\n\n" + comparison_table(test, buckets, variants)
    (out_dir / "metrics.md").write_text(header + table + side + "\n")
    print(
        f"\nTest metrics (composite, per image then averaged):\n{table}{side}\n\nRun directory: {out_dir.resolve()}"
    )


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    try:
        results = run(cfg)
    except USER_ERRORS as e:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"\nerror: {user_message(e)}\n(set HYDRA_FULL_ERROR=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None


if __name__ == "__main__":
    main()

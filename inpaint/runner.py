"""What ``python -m inpaint.run`` does once its config is composed: train, test the best checkpoint, write the
report (:func:`run`). The command itself (:mod:`inpaint.run`) imports this module only when a job starts, so
``--help`` and a config error answer before Lightning and torch are loaded.

  python -m inpaint.run                                   # scnn on the embedded sample photos, CPU
  python -m inpaint.run task=test ckpt_path=RUN/checkpoints/best.ckpt
  python -m inpaint.run model=biharmonic task=test        # non-learned baseline, no checkpoint
  python -m inpaint.run -m model.lr=1e-3,1e-4             # sweep

The run directory (printed at the end) holds ``.hydra/`` (the composed config), ``checkpoints/``
(``best.ckpt``, ``last.ckpt``), ``metrics.json``, ``metrics.md``, the results card (``card.json``, ``card.md``:
see :mod:`inpaint.report`), ``grids/`` and the logger's files.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, ProgressBar
from omegaconf import DictConfig, OmegaConf

from inpaint import compat
from inpaint.callbacks import StepProgressBar
from inpaint.checkpoints import check_checkpoint_class, load_weights, resolve_checkpoint
from inpaint.cli import (
    USER_ERRORS,
    SignalWatch,
    build_datamodule,
    build_mask,
    echo,
    instantiate,
    plain,
    user_message,
)
from inpaint.config_dir import CONF_DIR
from inpaint.data.datamodule import InpaintDataModule
from inpaint.errors import RunInterrupted
from inpaint.evaluation.card import metric_tables, metrics_markdown, write_card, write_interrupted_card
from inpaint.evaluation.evaluator import EvalSpec
from inpaint.evaluation.runs import test_per_bucket
from inpaint.models.base import InpaintModule
from inpaint.models.needs import ModelNeeds, check_data
from inpaint.resume import latest_checkpoint

log = logging.getLogger("inpaint.run")  # the command's logger: its lines go to run.log

__all__ = ["CONF_DIR", "USER_ERRORS", "build_datamodule", "build_mask", "build_model", "build_trainer",
           "callback_config", "check_accelerator", "trainer_precision", "user_message", "run", "write_report"]


def build_model(cfg: DictConfig) -> InpaintModule:
    model = instantiate(cfg.model, buckets=OmegaConf.to_container(cfg.eval.buckets))
    if not isinstance(model, InpaintModule):
        raise ValueError(f"model._target_={cfg.model._target_} is not an inpaint.models.base.InpaintModule")
    model.inference_seed = int(cfg.seed)  # per-sample randomness of stochastic fills (sample_generators)
    model.configure_evaluation(EvalSpec.from_config(cfg.eval))
    compare = cfg.eval.get("compare")
    model.configure_inference(
        procedure=cfg.eval.get("procedure"),
        compare=None if compare is None else list(compare),
        **plain(cfg.eval.get("inference")),
    )
    if cfg.get("channels_last"):
        model = model.use_channels_last()
    return model


def check_accelerator(cfg: DictConfig) -> None:
    """``trainer=gpu`` / ``trainer=ddp`` on a machine where torch sees no CUDA device: say so plainly."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"trainer.accelerator={accelerator} (trainer=gpu/ddp) but torch {torch.__version__} ({build}) sees no "
            "CUDA GPU on this machine. Run on the CPU with trainer=cpu (or trainer=ddp_cpu), or install a CUDA "
            "build of torch on a machine with an NVIDIA GPU."
        )


#: ``callbacks.<name>.monitor: model`` / ``mode: model``: the metric and mode the model declares
FROM_MODEL = "model"


def callback_config(node: DictConfig, needs: ModelNeeds) -> DictConfig:
    """A callback's config with ``monitor: model`` / ``mode: model`` replaced by the model's declaration."""
    if node.get("monitor") != FROM_MODEL and node.get("mode") != FROM_MODEL:
        return node
    node = OmegaConf.merge(node)  # a copy
    if node.get("monitor") == FROM_MODEL:
        node.monitor = needs.monitor
    if node.get("mode") == FROM_MODEL:
        node.mode = needs.monitor_mode
    return node


class _SignalRelay(L.Callback):
    """A stop signal that came while the trainer was starting (before Lightning's own SIGTERM handler was in
    place) is handed to that handler when the loop starts, so the loop stops at its first step boundary."""

    def _relay(self, *args) -> None:
        watch = SignalWatch.active
        if watch is not None and watch.signum is not None:
            os.kill(os.getpid(), signal.SIGTERM)

    on_train_start = on_validation_start = on_test_start = _relay


def trainer_precision(cfg: DictConfig, needs: ModelNeeds) -> str:
    """``trainer.precision``, with ``model`` (trainer=cpu's default) replaced by the model's declared CPU precision
    (:attr:`~inpaint.models.needs.ModelNeeds.cpu_precision`): ``bf16-mixed`` needs a CPU with native bf16 (else
    fp32, which emulated bf16 would only slow down); on another accelerator ``model`` means ``32-true``."""
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision != FROM_MODEL:
        return precision
    chosen = "32-true"
    if str(cfg.trainer.get("accelerator", "cpu")) == "cpu" and needs.cpu_precision != "32-true":
        native = needs.cpu_precision != "bf16-mixed" or compat.cpu_has_native_bf16()
        chosen = needs.cpu_precision if native else "32-true"
        log.info("trainer.precision=model: %s (the model's CPU default%s; trainer.precision=32-true for fp32)",
                 chosen, "" if native else ": this CPU has no native bf16, so fp32")
    return chosen


def build_trainer(cfg: DictConfig, model: InpaintModule | None = None) -> L.Trainer:
    """The configured Trainer for ``model``: its declared checkpoint monitor, and ``inference_mode=False`` when
    its inference needs autograd (without a model, the defaults of :class:`ModelNeeds`)."""
    check_accelerator(cfg)
    needs = model.needs() if model is not None else ModelNeeds()
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    callbacks = [instantiate(callback_config(c, needs)) for c in (cfg.get("callbacks") or {}).values()
                 if c is not None]
    if cfg.trainer.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(StepProgressBar())  # step/max_steps instead of "Epoch 2/-2"
    if cfg.trainer.get("enable_model_summary", True) and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks.append(ModelSummary(max_depth=1))  # logged, so run.log has it (the rich one is only drawn)
    callbacks.append(_SignalRelay())
    extra = {"inference_mode": False} if needs.inference_needs_grad else {}
    return instantiate(cfg.trainer, logger=loggers or False, callbacks=callbacks,
                       precision=trainer_precision(cfg, needs), **extra)


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    """The callback that keeps the best checkpoint (the one with a monitored metric)."""
    return next((c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)), None)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or test as ``cfg.task`` says.

    Returns the test metrics (``test/psnr``, ...) and the validation metrics (``val/psnr``: the best
    checkpoint's monitored value, else the last validation), for sweepers and scripts.

    SIGTERM or Ctrl-C stops the run at the end of the current step (:class:`~inpaint.cli.SignalWatch`):
    ``fit`` leaves ``last.ckpt`` of that step, the run directory a card with status ``interrupted``, the console
    one line saying how to resume, and :class:`~inpaint.errors.RunInterrupted` is raised (exit status
    ``128 + signal`` on the command line)."""
    own = SignalWatch.active is None  # the command line installs one before Hydra; scripts get their own here
    watch = SignalWatch().install() if own else SignalWatch.active
    state: dict = {"watch": watch}
    try:
        results = _run(cfg, state)
        if watch.signum is None:
            return results
    except BaseException:  # after a stop signal, whatever ends the run (Lightning's SIGTERMException, a
        if watch.signum is None:  # RunInterrupted wrapped by Hydra's instantiate) is that stop
            raise
    finally:
        if own:
            watch.uninstall()
    raise _interrupted(cfg, watch, state.get("trainer"))


def _interrupted(cfg: DictConfig, watch: SignalWatch, trainer: L.Trainer | None) -> RunInterrupted:
    """Record a run stopped by a signal: a card with status ``interrupted``, one line on the console."""
    out_dir = Path(cfg.paths.output_dir)
    step = int(trainer.global_step) if trainer is not None else None
    fitting = trainer is not None and trainer.state.fn == "fit"
    last = next((Path(c.last_model_path) for c in (trainer.checkpoint_callbacks if trainer else [])
                 if getattr(c, "last_model_path", "") and Path(c.last_model_path).name == "last.ckpt"), None)
    checkpoint = str(last) if fitting and last is not None and last.is_file() else None
    write_interrupted_card(cfg, watch.name, step, checkpoint)
    where = f"at step {step}" if step is not None else "before training started"
    best = _checkpoint_callback(trainer) if trainer is not None else None
    if cfg.task == "fit" and checkpoint:
        advice = f"last.ckpt saved; resume with: python -m inpaint.run resume={out_dir}"
    elif cfg.task == "fit" and trainer is not None and trainer.state.fn == "test" and best and best.best_model_path:
        advice = ("training had finished; test its best checkpoint with: python -m inpaint.run task=test "
                  f"ckpt_path={best.best_model_path}")
    elif cfg.task == "fit":
        advice = "no checkpoint yet; run the same command again"
    else:
        advice = "nothing to resume in a test; run the same command again"
    echo(f"stopped by {watch.name} {where} ({cfg.task}); {advice}", file=sys.stderr)
    return RunInterrupted(watch.signum, step, reported=True)


def _run(cfg: DictConfig, state: dict) -> dict[str, float]:
    if cfg.task not in ("fit", "test"):
        raise ValueError(f"task={cfg.task} is not a task: use task=fit (train, then test) or task=test")
    if cfg.get("resume"):
        raise ValueError(
            f"resume={cfg.resume} is read by the command line (python -m inpaint.run resume=RUN), which turns it "
            "into ckpt_path= and the run directory; here pass ckpt_path=RUN/checkpoints/last.ckpt"
        )
    watch = state["watch"]
    watch.check()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = Path(cfg.paths.output_dir)

    model = build_model(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path and cfg.task == "fit" and cfg.get("auto_resume", True):
        found = latest_checkpoint(out_dir)
        if found is not None:  # e.g. a cluster job requeued after preemption, in its own directory
            log.info("resuming from %s, found in the run directory (auto_resume=false starts over)", found)
            ckpt_path = str(found)
    if ckpt_path:  # a run directory stands for its best checkpoint (test) or its last (fit: resuming)
        ckpt_path = resolve_checkpoint(ckpt_path, ("last.ckpt", "best.ckpt") if cfg.task == "fit" else
                                       ("best.ckpt", "last.ckpt"))
        check_checkpoint_class(ckpt_path, model, CONF_DIR / "model")
    if cfg.get("init_from"):
        load_weights(model, cfg.init_from, CONF_DIR / "model")
    needs = model.needs()
    if cfg.task == "fit" and not needs.trainable:
        raise ValueError(f"{type(model).__name__} has nothing to train: evaluate it with task=test")
    if (cfg.task == "test" and needs.trainable and not ckpt_path and not cfg.get("init_from")
            and not needs.pretrained_weights):
        raise ValueError(
            "task=test needs ckpt_path=PATH/TO/best.ckpt (or init_from=...) for a trainable model"
        )

    datamodule = build_datamodule(cfg)
    if isinstance(datamodule, InpaintDataModule):  # refuse data the model cannot take, before any step
        check_data(needs, cfg.model._target_.rpartition(".")[2], datamodule.image_size, datamodule.mask)
        if cfg.task == "fit":  # the scale the model learns; saved in its checkpoints for inpaint.fill
            model.trained_image_size = tuple(int(s) for s in datamodule.image_size)
    watch.check()
    trainer = state["trainer"] = build_trainer(cfg, model)
    if cfg.get("compile"):
        model.compile_networks()

    training: dict[str, float | int | None] = {"steps": None, "seconds": None}
    if cfg.task == "fit":
        started = time.perf_counter()
        with warnings.catch_warnings():
            if ckpt_path:  # resuming into the run's own checkpoint folder is the point
                warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
            # checkpoints are read with weights_only=True: tensors and plain containers, no arbitrary pickles
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        training = {"steps": int(trainer.global_step), "seconds": time.perf_counter() - started}
        if not cfg.get("test_after_fit", True):
            return {}
        cb = _checkpoint_callback(trainer)
        test_ckpt = cb.best_model_path if cb and cb.best_model_path else None
        if test_ckpt is None:
            last = [c.last_model_path for c in trainer.checkpoint_callbacks if getattr(c, "last_model_path", "")]
            test_ckpt = last[0] if last else None
    else:
        test_ckpt = ckpt_path
    watch.check()
    if cfg.eval.get("per_bucket"):
        def bucket_data(lo: float, hi: float) -> L.LightningDataModule:
            mask = build_mask(cfg, mask_ratio=(lo, hi))  # only the masks change: the same images and splits
            return datamodule.with_mask(mask) if isinstance(datamodule, InpaintDataModule) else \
                build_datamodule(cfg, (lo, hi))

        results = test_per_bucket(model, trainer, bucket_data, [tuple(b) for b in cfg.eval.buckets],
                                  test_ckpt or None)
    else:
        trainer.test(model, datamodule=datamodule, ckpt_path=test_ckpt or None, weights_only=True, verbose=False)
        results = dict(model.test_results)

    watch.check()
    if trainer.is_global_zero:
        card = write_card(cfg, out_dir, model, trainer, results, test_ckpt, training)
        write_report(cfg, out_dir, card, model.val_results)
    # validation numbers for sweepers: the checkpoint's monitored best, else the last validation
    summary = {**model.val_results, **results}
    cb = _checkpoint_callback(trainer)
    if cb is not None and cb.monitor and cb.best_model_score is not None:
        summary[cb.monitor] = float(cb.best_model_score)
    return summary


def write_report(cfg: DictConfig, out_dir: Path, card: dict, val: dict) -> None:
    """``metrics.json`` (every number) and ``metrics.md`` (rendered from the results card) in the run dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "model": cfg.model._target_,
        "task": cfg.task,
        "procedure": card["procedure"],
        "seconds_per_image": card["seconds_per_image"],
        "checkpoint": card["checkpoint"],
        "protocol": "per_bucket" if cfg.eval.get("per_bucket") else "pooled",
        "test": card["metrics"],
        "last_val": val,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    (out_dir / "metrics.md").write_text(metrics_markdown(card))
    echo(f"\nTest metrics (composite, per image then averaged):\n{metric_tables(card)}\n\n"
         f"Run directory: {out_dir.resolve()}")

"""Callbacks: ``last.ckpt`` kept current (periodic, validation-independent, with the RNG states, and on a stop
signal: :meth:`LastCheckpoint.on_exception`), and PNG grids of fixed validation samples at every validation."""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from PIL import Image

from inpaint.compat import attached_trainer, defer_stop_signal, validation_follows_batch
from inpaint.loggers import log_image

log = logging.getLogger(__name__)

GRID_COLUMNS = ("masked input", "mask", "composite", "ground truth")


def masked_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image`` with its holes (``mask`` 1) drawn white."""
    mask3 = mask.expand_as(image)
    return image * (1 - mask3) + mask3


def tile_columns(columns: list[torch.Tensor], pad: int = 2) -> np.ndarray:
    """A grid of ``[B,3,H,W]`` tensors in [0, 1] on the CPU: one row per sample, one column per tensor, on a
    white background; returns an ``HxWx3`` uint8 array."""
    b, _, h, w = columns[0].shape
    grid = torch.ones(3, b * (h + pad) + pad, len(columns) * (w + pad) + pad)
    for i in range(b):
        for j, col in enumerate(columns):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, y : y + h, x : x + w] = col[i].clamp(0, 1)
    return (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def make_grid(image: torch.Tensor, mask: torch.Tensor, composite: torch.Tensor, pad: int = 2) -> np.ndarray:
    """One row per sample, columns :data:`GRID_COLUMNS`; holes drawn white in the masked input and mask.

    All tensors are on the CPU in [0,1]; returns an ``HxWx3`` uint8 array."""
    return tile_columns([masked_input(image, mask), mask.expand_as(image), composite, image], pad)


class ImageGrids(L.Callback):
    """At the end of each validation, inpaint the first ``num_samples`` validation samples (their masks
    are fixed by the seed, so every grid shows the same holes) and save ``<dirpath>/step=NNNNNN.png``;
    image-capable loggers (W&B, TensorBoard) receive it as ``val/grid``. A model whose ``sample_grid(n)`` hook
    returns a grid (a generative prior such as ``model=pggan``, which does not inpaint) gives its own grid of
    ``n`` samples instead."""

    def __init__(self, dirpath: str, num_samples: int = 8) -> None:
        self.dirpath = Path(dirpath)
        self.num_samples = int(num_samples)
        self._batch: dict[str, torch.Tensor] | None = None
        self.last_path: Path | None = None

    def _samples(self, trainer: L.Trainer) -> dict[str, torch.Tensor] | None:
        if self._batch is None:
            dataset = getattr(trainer.datamodule, "val_dataset", None)
            if dataset is None or self.num_samples <= 0:
                return None
            items = [dataset[i] for i in range(min(self.num_samples, len(dataset)))]
            self._batch = {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in ("image", "mask")}
            # each sample's identity, so a stochastic procedure fills it as in the evaluation
            self._batch["index"] = torch.as_tensor([int(it.get("index", i)) for i, it in enumerate(items)])
        return self._batch

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        own = pl_module.sample_grid(self.num_samples) if self.num_samples > 0 else None
        if own is not None:  # a generative prior (model=pggan): a grid of its samples, nothing to inpaint
            self._save(trainer, own)
            return
        batch = self._samples(trainer)
        if batch is None:
            return
        image, mask, index = (batch[k].to(pl_module.device) for k in ("image", "mask", "index"))
        # one fill per sample (a procedure may be expensive), in the model's inference context
        composite = pl_module.timed_inpaint(image, mask, index)[0].float()
        self._save(trainer, make_grid(*(t.detach().float().cpu() for t in (image, mask, composite))))

    def _save(self, trainer: L.Trainer, grid: np.ndarray) -> None:
        self.dirpath.mkdir(parents=True, exist_ok=True)
        path = self.dirpath / f"step={trainer.global_step:06d}.png"
        Image.fromarray(grid).save(path)
        self.last_path = path
        log_image(trainer.loggers, "val/grid", grid, step=trainer.global_step)


def rng_states() -> dict[str, Any]:
    """The process's random states (torch CPU and CUDA, numpy's global, Python's) as tensors and plain
    containers, so a checkpoint holding them still loads with ``weights_only=True``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured (CUDA states only onto as many devices as were saved)."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def rng_for_rank(saved: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """The random states a resumed process restores: its own rank's when the checkpoint holds every rank's for
    the same world size, else the saved process's (rank 0's; a checkpoint from another world size, or from
    before the states were kept per rank, with a warning under DDP)."""
    per_rank = saved.get("rng_per_rank")
    if per_rank is not None and len(per_rank) == world_size:
        return per_rank[rank]
    if world_size > 1:
        log.warning("the checkpoint holds the random states of %s: every rank restores rank 0's",
                    f"{len(per_rank)} rank(s)" if per_rank else "one process")
    return saved["rng"]


def _requeue_handles_signals(trainer: L.Trainer) -> bool:
    """Whether Lightning's SLURM auto-requeue owns the stop signals of this run (it saves ``hpc_ckpt_N.ckpt``)."""
    env = getattr(trainer.strategy, "cluster_environment", None)
    return type(env).__name__ == "SLURMEnvironment" and bool(getattr(env, "auto_requeue", False))


class LastCheckpoint(Checkpoint):
    """Keeps ``<dirpath>/last.ckpt`` current, independently of the validation schedule, so a killed run
    loses at most ``minutes`` minutes or ``steps`` steps of training:

    * every ``steps`` optimizer steps and/or every ``minutes`` minutes of training (``null`` turns a
      trigger off), at the end of the training batch;
    * after every validation during ``fit`` (then the best-checkpoint callback has already updated its
      state, which is part of the file);
    * at the end of training.

    A periodic save that falls on a step followed by validation waits until the validation has run:
    Lightning resumes from a checkpoint taken at the end of a training batch *without* that batch's
    validation, so saving before it would drop one validation from a resumed run.

    The file is written to ``last.ckpt.tmp`` and renamed, so a kill during the write leaves the previous
    ``last.ckpt`` intact. The loggers are flushed with it, and once more when the next step starts:
    Lightning hands a step's metrics to the loggers just after ``on_train_batch_end``, so a kill in the
    moment between the two loses that one row. Its state holds the random states of the process (torch, CUDA, numpy,
    Python), restored when training starts again; together with the resumable data order
    (:mod:`inpaint.data.resumable`) a resumed run continues exactly as the uninterrupted one. Under DDP every
    rank's states are stored and each rank restores its own (:func:`rng_for_rank`)."""

    def __init__(self, dirpath: str, steps: int | None = None, minutes: float | None = None,
                 filename: str = "last.ckpt") -> None:
        for name, value in (("steps", steps), ("minutes", minutes)):
            if value is not None and value <= 0:
                raise ValueError(
                    f"callbacks.checkpoint_every.{name}={value} must be positive, or null to turn it off"
                )
        self.dirpath = Path(dirpath)
        self.steps = int(steps) if steps else None
        self.minutes = float(minutes) if minutes else None
        self.last_model_path = ""
        self.filename = filename
        self._saved_step = -1
        self._since = time.monotonic()
        self._flush_pending = False
        self._rng_to_restore: dict[str, Any] | None = None
        self._stop_after_validation = False

    @property
    def path(self) -> Path:
        return self.dirpath / self.filename

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}{{filename={self.filename}}}"

    # ---------------------------------------------------------------------------------------- triggers
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._since = time.monotonic()
        self._saved_step = trainer.global_step
        if self._rng_to_restore is not None:
            set_rng_states(rng_for_rank(self._rng_to_restore, trainer.global_rank, trainer.world_size))
            self._rng_to_restore = None

    def _due(self, trainer: L.Trainer) -> bool:
        step = trainer.global_step
        due = bool(self.steps) and step % self.steps == 0 and step != self._saved_step
        if self.minutes:
            timed = time.monotonic() - self._since >= 60.0 * self.minutes
            if trainer.world_size > 1:  # every rank must take the collective save together
                timed = bool(trainer.strategy.broadcast(timed, src=0))
            due = due or timed
        return due

    @staticmethod
    def _validation_follows(trainer: L.Trainer) -> bool:
        return bool(trainer.enable_validation) and validation_follows_batch(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        # a stop signal (Lightning stops after this step): save here, where every periodic save is taken
        if (trainer.received_sigterm and not _requeue_handles_signals(trainer)) or self._due(trainer):
            if self._validation_follows(trainer):
                return  # on_validation_end saves after it
            self.save(trainer)

    def _flush_loggers(self, trainer: L.Trainer) -> None:
        if self._flush_pending:
            self._flush_pending = False
            for logger in trainer.loggers:
                logger.save()

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        # Lightning hands a batch's metrics to the loggers just after on_train_batch_end, so the row of the
        # step a checkpoint was taken at reaches the disk here, before the next step runs
        self._flush_loggers(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush_loggers(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        # a stop signal during a validation inside fit: Lightning would stop after this batch, in the middle of the
        # validation, where no checkpoint continues exactly; the validation finishes first, is saved, then the run
        # stops (on_validation_end hands the signal back to Lightning)
        if trainer.sanity_checking or trainer.state.fn != "fit" or _requeue_handles_signals(trainer):
            return
        if defer_stop_signal(trainer):
            self._stop_after_validation = True

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        self.save(trainer)
        if self._stop_after_validation:
            self._stop_after_validation = False
            defer_stop_signal(trainer, deferred=True)  # Lightning stops at the end of this step, as saved

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_step:
            self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        """A stop signal during ``fit`` (Lightning stops at the end of a training step with ``SIGTERMException``;
        :class:`inpaint.cli.SignalWatch` routes Ctrl-C there too): ``last.ckpt`` of that step was saved at the end
        of the batch (or after its validation), where ``resume=RUN`` continues exactly; here only a step not saved
        yet is (a signal during validation). Not when a SLURM requeue handles the signal (it saves its own
        ``hpc_ckpt``)."""
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        if _requeue_handles_signals(trainer):
            log.info("stop signal under SLURM auto-requeue: its checkpoint is Lightning's hpc_ckpt")
            return
        if trainer.global_step != self._saved_step:
            self.save(trainer)

    # ---------------------------------------------------------------------------------------- saving
    def save(self, trainer: L.Trainer) -> Path:
        for logger in trainer.loggers:  # what was logged up to the checkpoint is on disk with it
            logger.save()
        tmp = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, self.path)
        self.last_model_path = str(self.path)
        self._flush_pending = True
        self._saved_step = trainer.global_step
        self._since = time.monotonic()
        log.debug("saved %s at step %d", self.path, trainer.global_step)
        return self.path

    def state_dict(self) -> dict[str, Any]:
        """The random states of this process, and under DDP of every rank (``rng_per_rank``, gathered: every
        rank takes part in a checkpoint save), so that each rank continues its own streams."""
        state: dict[str, Any] = {"rng": rng_states()}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, state["rng"])
            state["rng_per_rank"] = gathered
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict


class ProgressLog(L.Callback):
    """A progress line every ``every_seconds`` when nobody watches a progress bar (stdout is not a terminal:
    ``make demo > log``, a cluster job, a pipe), to the console and ``run.log``::

        train: step 120/300 (40%), loss 0.0123, 3.2 steps/s, ETA 0:00:56
        test: batch 12/50 (24%), 4.1 batches/s, ETA 0:00:09

    ``every_seconds=0`` logs every batch; ``always=true`` logs even with a terminal."""

    def __init__(self, every_seconds: float = 30.0, always: bool = False) -> None:
        if every_seconds < 0:
            raise ValueError(f"callbacks.progress_log.every_seconds={every_seconds} must be >= 0")
        self.every = float(every_seconds)
        self.enabled = bool(always) or not sys.stdout.isatty()
        self._start: dict[str, tuple[float, int]] = {}
        self._last = 0.0

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.every:
            return False
        self._last = now
        return True

    @staticmethod
    def _eta(done: int, total: int, rate: float) -> str:
        if rate <= 0 or total <= done:
            return "0:00:00"
        seconds = int((total - done) / rate)
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"

    def _line(self, stage: str, unit: str, done: int, total: int | None, extra: str | None = None) -> str:
        start, first = self._start.setdefault(stage, (time.monotonic(), done))
        rate = (done - first) / max(time.monotonic() - start, 1e-9)
        parts = [f"{unit} {done}/{total} ({100 * done / total:.0f}%)" if total else f"{unit} {done}"]
        parts += [extra] if extra else []
        parts.append(f"{rate:.2f} {unit}{'s' if unit.endswith('p') else 'es'}/s")
        parts += [f"ETA {self._eta(done, total, rate)}"] if total else []
        return f"{stage}: " + ", ".join(parts)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["train"] = (time.monotonic(), trainer.global_step)  # a resumed run counts from its step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, *args: Any
                           ) -> None:
        if not self.enabled or not trainer.is_global_zero or not self._due():
            return
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None
        loss = trainer.callback_metrics.get("train/loss")
        log.info(self._line("train", "step", trainer.global_step, total,
                            None if loss is None else f"loss {float(loss):.4g}"))

    def _eval_batch(self, trainer: L.Trainer, stage: str, batch_idx: int, totals: Any) -> None:
        if not self.enabled or not trainer.is_global_zero or trainer.sanity_checking or not self._due():
            return
        total = int(totals[0]) if totals and totals[0] != float("inf") else None
        log.info(self._line(stage, "batch", batch_idx + 1, total))

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["val"] = (time.monotonic(), 0)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start["test"] = (time.monotonic(), 0)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, "val", batch_idx, trainer.num_val_batches)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, "test", batch_idx, trainer.num_test_batches)


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, counting a step-based run (``trainer.max_steps`` set, epochs
    unbounded) as one bar of ``global_step / max_steps`` instead of one bar per epoch labelled
    ``Epoch 2/-2``. Epoch-based runs look as usual. It overrides and calls private methods of
    ``RichProgressBar`` (listed in :data:`inpaint.compat.SUBCLASS_PRIVATE_API`, checked by the tests)."""

    def _step_based(self) -> bool:
        trainer = attached_trainer(self)
        return trainer is not None and trainer.max_steps > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._step_based() else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if self._step_based():
            return f"{'Training':{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._step_based() and self.train_progress_bar_id is not None:
            return  # one bar for the whole run
        super().on_train_epoch_start(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._step_based():
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


def reference_workload_seconds(repeats: int = 5) -> float:
    """Median seconds of a fixed CPU/GPU-independent workload on this machine (a 3x3 convolution of a batch of
    32 x 64 x 32 x 32, forward and backward, on the CPU with torch's current threads): recorded next to wall
    times, so a time measured on one machine can be compared with another's as a ratio to it."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, 32, 32, generator=gen)
    w = torch.randn(64, 64, 3, 3, generator=gen, requires_grad=True)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        for _ in range(4):
            torch.nn.functional.conv2d(x, w, padding=1).square().mean().backward()
        if i:  # the first is a warm-up
            times.append(time.perf_counter() - start)
    return float(np.median(times))


class FloorWatch(L.Callback):
    """Time to beat the floor: at the start of training, score a floor model (biharmonic by default) on the very
    validation batches the run validates on; after every validation, compare the model's scores with it and record
    when each first beats it, in wall minutes (training only, and in all), steps and images seen. The curve and the
    crossings are written to ``path`` (JSON) after every validation, so a killed run keeps them.

    Args:
        path: the JSON file.
        floor: the floor model (any inpaint model that needs no training), built from this config node.
        metrics: ``{name: "max" | "min"}`` of the ``val/`` scores compared (PSNR higher, hole MSE lower: the mean
            PSNR ranks the leaderboard, the hole MSE is "Beyond CNNs"' number); each has its own crossing, and
            ``beaten`` is when all are beaten at one validation.
        reference_repeats: repeats of :func:`reference_workload_seconds`, timed at the start (0: skipped).
    """

    def __init__(self, path: str, floor: Any = None, metrics: dict[str, str] | None = None,
                 reference_repeats: int = 5) -> None:
        self.path = Path(path)
        self.floor = floor
        self.metrics = dict(metrics or {"val/psnr": "max", "val/mse_hole": "min"})
        bad = {k: v for k, v in self.metrics.items() if v not in ("max", "min")}
        if bad:
            raise ValueError(f"FloorWatch metrics: give max or min for each, got {bad}")
        self.reference_repeats = int(reference_repeats)
        self.record: dict[str, Any] = {}
        self._fit_start = self._train_seconds = 0.0
        self._val_start: float | None = None
        self._images = 0

    def _floor_scores(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        from inpaint.evaluation.metrics import (
            InpaintMetrics,  # the same metric definitions as the model's validation
        )

        floor = self.floor
        if floor is None or isinstance(floor, dict):
            from inpaint.models.biharmonic import BiharmonicModule

            floor = BiharmonicModule(buckets=pl_module.buckets)
        metrics = InpaintMetrics(pl_module.buckets, hole_metrics=True)
        limit = trainer.limit_val_batches
        loader = trainer.datamodule.val_dataloader()
        n = len(loader) if isinstance(limit, float) else min(int(limit), len(loader))
        if isinstance(limit, float):
            n = int(n * limit)
        for i, batch in enumerate(loader):
            if i >= n:
                break
            with torch.no_grad():
                composite = floor.inpaint(batch["image"], batch["mask"], batch.get("index"))
            metrics.update(composite.float(), batch["image"].float(), batch["mask"].float())
        return {f"val/{k}": float(v) for k, v in metrics.compute().items()}

    @rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        reference = reference_workload_seconds(self.reference_repeats) if self.reference_repeats else None
        floor = self._floor_scores(trainer, pl_module)
        missing = [k for k in self.metrics if k not in floor]
        if missing:
            raise ValueError(f"FloorWatch: the floor has no {missing} (eval.hole_metrics=true gives val/mse_hole)")
        self.record = {
            "floor": {k: floor[k] for k in self.metrics}, "floor_count": floor.get("val/count"),
            "floor_all": {k: v for k, v in floor.items() if "@" not in k},
            "reference_workload_seconds": reference, "threads": torch.get_num_threads(),
            "batch_size": None, "curve": [], "crossed": {}, "beaten": None,
        }
        self._fit_start = time.perf_counter()
        self._train_seconds = 0.0
        self._images = 0
        self._write()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += int(batch["image"].shape[0]) * int(trainer.world_size)
        if self.record and self.record["batch_size"] is None:
            self.record["batch_size"] = int(batch["image"].shape[0])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    @rank_zero_only
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not self.record or self._val_start is None:
            return
        # training time: wall time since fit start less the validations so far (this one included)
        now = time.perf_counter()
        self._train_seconds = (now - self._fit_start) - self._val_seconds(now)
        scores = {k: float(pl_module.val_results[k]) for k in self.metrics if k in pl_module.val_results}
        row = {"step": int(trainer.global_step), "images": self._images,
               "train_minutes": self._train_seconds / 60.0, "wall_minutes": (now - self._fit_start) / 60.0,
               **scores}
        self.record["curve"].append(row)
        floor = self.record["floor"]
        better = {k: (v > floor[k]) if self.metrics[k] == "max" else (v < floor[k]) for k, v in scores.items()}
        for k, ok in better.items():
            if ok and k not in self.record["crossed"]:
                self.record["crossed"][k] = row
        if self.record["beaten"] is None and len(better) == len(self.metrics) and all(better.values()):
            self.record["beaten"] = row
            log.info("beat the floor at step %d (%d images, %.1f training minutes): %s", row["step"], row["images"],
                     row["train_minutes"], {k: round(v, 5) for k, v in scores.items()})
        self._write()

    def _val_seconds(self, now: float) -> float:
        done = self.record.setdefault("_validation_seconds", 0.0)
        total = done + (now - self._val_start)
        self.record["_validation_seconds"] = total
        self._val_start = None
        return total

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=2))
        os.replace(tmp, self.path)

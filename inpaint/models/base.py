"""What every inpainting LightningModule shares: the model API, evaluation, NaN guard, checkpoint tag.

Model API (DESIGN.md section 3):
  ``forward(image, mask) -> prediction`` ``[B,3,H,W]`` in [0,1] (before compositing);
  ``inpaint(image, mask) -> composite = pred*mask + image*(1-mask)``.
Scoring belongs to :mod:`inpaint.evaluation` (an :class:`~inpaint.evaluation.evaluator.Evaluator` per stage); a
model adds its own numbers or images through the one hook :meth:`InpaintModule.evaluation_terms`.
Validation, test, the image grids and ``inpaint.predict`` all go through ``inpaint``, which runs one of the
model's named inference procedures (:meth:`InpaintModule.inference_procedures`: ``forward`` by default; ISNet's
``pra``, a density model's ``argmax`` / ``sample`` / ``mean`` decoding, GAN inversion), so every procedure is
scored like the rest and several of one model can be scored side by side (``eval.compare``).
The mask is 1 = hole everywhere outside a model; a paper with the opposite polarity converts inside.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from inpaint.checkpoint_io import CHECKPOINT_CLASS_KEY, IMAGE_SIZE_KEY, class_path
from inpaint.evaluation.evaluator import EvalSpec, EvalTerms, Evaluator
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.evaluation.protocol import DIGEST_MOD, DigestAccumulator
from inpaint.evaluation.tables import log_metric_table
from inpaint.models.needs import ModelNeeds
from inpaint.models.optimizers import Injected, scheduler_config
from inpaint.models.options import read_options

log = logging.getLogger(__name__)

#: per-model optimizer keys of checkpoints written before ``model.optimizer`` was injected
LEGACY_OPTIMIZER_KEYS = frozenset({"lr", "betas", "eps", "weight_decay", "lr_decay", "optim"})


def compose(prediction: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """Paste the prediction into the hole (mask 1) and keep the known pixels (mask 0) exactly."""
    return prediction * mask + image * (1.0 - mask)


@dataclass(frozen=True)
class Procedure:
    """An inference procedure, declared once: ``name`` (``eval.procedure=``, predict's ``procedure=``),
    ``run(image, mask, index) -> composite``, ``label`` (the column of a side-by-side table; the name when
    None) and ``needs_grad`` (it optimises per image, so it runs with autograd outside training)."""

    name: str
    run: Callable[[Tensor, Tensor, Tensor], Tensor]
    label: str | None = None
    needs_grad: bool = False


class InpaintModule(L.LightningModule):
    """Base class: subclasses implement ``forward`` and (if trainable) ``training_step``; the optimizer and
    scheduler are injected from the config (:mod:`inpaint.models.optimizers`) and built by the one
    :meth:`configure_optimizers` here.

    Args:
        buckets: hole-ratio buckets ``[lo, hi)`` reported next to the overall metrics.
        nan_check_every: check the training loss for NaN/Inf every this many steps (1 = every step;
            each check is one host sync, so raise it on GPUs if the sync shows up in a profile;
            0 disables the check).
        optimizer: ``model.optimizer``, a partial of the optimizer class (``_target_: torch.optim.Adam``,
            ``_partial_: true``, its arguments) called with :meth:`optimized_parameters`.
        scheduler: ``model.scheduler`` (optional), a partial of a learning-rate scheduler called with the
            optimizer; its ``interval`` / ``frequency`` / ``monitor`` keys go to Lightning.

    What is scored (``eval.hole_metrics``, ``eval.metrics``: LPIPS, FID, KID, P/U-IDS) is set after
    construction with :meth:`configure_evaluation`, so a subclass's ``__init__`` needs no argument for it.
    """

    #: inputs are padded to a multiple of this by ``inpaint.predict`` (e.g. 16 for a 4x-downsampling net)
    size_multiple: int = 1
    #: False for non-learned baselines: ``task=fit`` is refused and ``task=test`` needs no checkpoint
    trainable: bool = True
    #: names of the submodules (networks) that ``compile=true`` compiles
    compile_targets: tuple[str, ...] = ()
    #: the validation metric and mode that choose the best checkpoint (``callbacks.model_checkpoint.monitor:
    #: model`` reads it)
    checkpoint_monitor: tuple[str, str] = ("val/psnr", "max")
    #: model classes (dotted paths) whose checkpoints ``init_from=`` may start this one from
    init_from_classes: tuple[str, ...] = ()
    #: what ``trainer.precision=model`` (trainer=cpu) becomes on a CPU with native bf16: ``bf16-mixed`` only where
    #: measured faster and tested within tolerance of fp32 (:attr:`inpaint.models.needs.ModelNeeds.cpu_precision`)
    cpu_precision: str = "32-true"

    def __init__(self, buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS, nan_check_every: int = 1,
                 optimizer: Any = None, scheduler: Any = None) -> None:
        super().__init__()
        #: the injected optimizers and scheduler (``model.optimizer``, ``model.scheduler``; a GAN adds
        #: ``model.optimizer_d``), as plain data
        self.injected: dict[str, Injected | None] = {
            "optimizer": Injected.parse(optimizer, "model.optimizer"),
            "scheduler": Injected.parse(scheduler, "model.scheduler"),
        }
        #: set by ``channels_last=true``: weights and every batch's tensors use the NHWC memory format
        self.channels_last = False
        #: the inference procedure and compared ones chosen by :meth:`configure_inference` (None: the defaults)
        self._chosen_procedure: str | None = None
        self._chosen_compare: tuple[str, ...] | None = None
        #: the current inference options (an :attr:`InferenceOptions`; None for a model without options)
        self.inference_opts = self.InferenceOptions() if self.InferenceOptions is not None else None
        self.buckets = tuple(tuple(float(x) for x in b) for b in buckets)
        self.nan_check_every = int(nan_check_every)
        #: what validation and test score (:meth:`configure_evaluation`)
        self.eval_spec = EvalSpec(buckets=self.buckets)
        #: the scoring of each stage (metric states only: nothing of it is in a checkpoint)
        self.evaluators = nn.ModuleDict({"val": Evaluator(self.eval_spec), "test": Evaluator(self.eval_spec)})
        self.test_results: dict[str, float] = {}
        self.val_results: dict[str, float] = {}
        #: the run seed (``inpaint.run`` sets it from ``seed``) that :meth:`sample_generators` combines with
        #: each sample's index
        self.inference_seed = 0
        #: fill time per image of the last validation / test (also logged as ``<stage>/seconds_per_image``)
        self.fill_seconds: dict[str, float] = {}
        #: what the last test evaluated (:meth:`on_test_end`): ``{"count", "images", "masks"}``, the number of
        #: test samples and order-independent hashes of their images and masks (the results card's protocol)
        self.test_digest: dict[str, Any] = {}
        self._digest = DigestAccumulator()
        #: (height, width) of the training images (``inpaint.run`` sets it from the data; saved in checkpoints):
        #: the scale ``inpaint.fill`` works at on larger photos; None: unknown
        self.trained_image_size: tuple[int, int] | None = None

    # ----------------------------------------------------------------------------------- declaration
    @property
    def has_pretrained_weights(self) -> bool:
        """True when the model carries released weights (then ``task=test`` needs no checkpoint)."""
        return False

    def needs(self) -> ModelNeeds:
        """What the model declares (:class:`~inpaint.models.needs.ModelNeeds`): generic code reads this and
        never probes the model. A subclass with more to say (the sizes it is built for, the one centre hole
        it fills) returns ``dataclasses.replace(super().needs(), ...)``."""
        monitor, mode = self.checkpoint_monitor
        procedures = self.procedures()
        return ModelNeeds(
            trainable=self.trainable, pretrained_weights=self.has_pretrained_weights, monitor=monitor,
            monitor_mode=mode, size_multiple=int(self.size_multiple), procedures=tuple(p.name for p in procedures),
            inference_needs_grad=any(p.needs_grad for p in procedures), init_from_classes=tuple(self.init_from_classes),
            cpu_precision=self.cpu_precision,
        )

    @property
    def hole_metrics(self) -> bool:
        return self.eval_spec.hole_metrics

    def configure_evaluation(self, spec: EvalSpec) -> InpaintModule:
        """Score validation and test as ``spec`` says (``inpaint.run`` passes ``eval.*``): the hole metrics, the
        field's metrics (:mod:`inpaint.evaluation.field`). The evaluators are rebuilt, so call it before
        evaluating; their states are not part of the checkpoint. The buckets stay the model's."""
        self.eval_spec = dataclasses.replace(spec, buckets=self.buckets)
        self.evaluators = nn.ModuleDict({"val": Evaluator(self.eval_spec), "test": Evaluator(self.eval_spec)})
        self.evaluators.to(self.device)
        return self

    def enable_hole_metrics(self, enabled: bool = True) -> InpaintModule:
        """``eval.hole_metrics=true``: also score ``mse_hole``, ``l2_paper``, ``l2_paper_255``, ``maem_hole``
        and ``maem_channel`` (``val/mse_hole``, ``test/l2_paper@10-20``, ...; see
        :func:`inpaint.evaluation.metrics.per_image_hole_metrics`)."""
        return self.configure_evaluation(dataclasses.replace(self.eval_spec, hole_metrics=bool(enabled)))

    def compile_networks(self, **kwargs) -> InpaintModule:
        """``compile=true``: compile each network in :attr:`compile_targets` in place (``nn.Module.compile``,
        so state-dict keys, and thus checkpoints, are the same as without it). The training logic and
        logging stay eager."""
        if not self.compile_targets:
            log.warning("compile=true: %s declares no networks to compile; running eagerly", type(self).__name__)
        for name in self.compile_targets:
            getattr(self, name).compile(**kwargs)
        return self

    def use_channels_last(self) -> InpaintModule:
        """NHWC memory format for the weights and (through ``on_after_batch_transfer``) every batch.

        The hook is installed on this instance only when the switch is on: Lightning warns on every run
        about a LightningModule that overrides it next to a LightningDataModule."""
        self.channels_last = True
        self.on_after_batch_transfer = self._batch_to_channels_last  # type: ignore[method-assign]
        return self.to(memory_format=torch.channels_last)

    @staticmethod
    def _batch_to_channels_last(batch: dict, dataloader_idx: int = 0) -> dict:
        return {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) and v.ndim == 4 else v
                for k, v in batch.items()}

    # ----------------------------------------------------------------------------------- model API
    def forward(self, image: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement forward(image, mask)")

    @staticmethod
    def masked_input(image: Tensor, mask: Tensor) -> Tensor:
        """The corrupted image a model sees: holes zeroed."""
        return image * (1.0 - mask)

    def inpaint(self, image: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """Fill the holes of ``image`` (mask 1 = hole) with the active inference procedure (:attr:`procedure`);
        known pixels are returned unchanged. ``index`` (the batch's ``index``: each sample's identity) seeds a
        stochastic procedure per sample (:meth:`sample_generators`); without it the samples count 0, 1, ..."""
        return self.run_procedure(self.procedure, image, mask, index)

    def run_procedure(self, name: str, image: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """The composite of inference procedure ``name`` (one of :meth:`procedures`)."""
        if index is None:
            index = torch.arange(image.shape[0], device=image.device)
        return self._procedure(name).run(image, mask, index)

    def _procedure(self, name: str | None) -> Procedure:
        procedures = {p.name: p for p in self.procedures()}
        if not procedures:
            raise ValueError(f"{type(self).__name__} does not inpaint: it has no inference procedure")
        if name not in procedures:
            raise ValueError(
                f"{type(self).__name__} has no inference procedure {name!r}; choose one of {', '.join(procedures)}"
            )
        return procedures[name]

    def inpaint_forward(self, image: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """The one-pass procedure: the prediction of ``forward``, clamped and composited."""
        return compose(self(image, mask).clamp(0.0, 1.0), image, mask)

    # ----------------------------------------------------------------------------------- inference procedures
    #: the typed options of the model's inference procedures (a frozen dataclass whose ``__post_init__``
    #: validates them), set with ``eval.inference.*`` / predict's ``inference.*``; None: no options
    InferenceOptions: ClassVar[type | None] = None

    def procedures(self) -> list[Procedure]:
        """The model's inference procedures (:class:`Procedure`: name, ``run(image, mask, index) -> composite``,
        label, whether it needs autograd), the default first; empty for a model that does not inpaint (a
        generative prior). The one hook a method with more than one pass (ISNet's PRA, pixel-by-pixel decoding,
        GAN inversion) overrides; generic code (run, predict, callbacks) only ever goes through these names."""
        return [Procedure("forward", self.inpaint_forward)]

    def inference_procedures(self) -> dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]]:
        """``{name: run}`` of :meth:`procedures`, in order."""
        return {p.name: p.run for p in self.procedures()}

    @property
    def procedure(self) -> str | None:
        """The procedure ``inpaint`` runs: chosen by :meth:`configure_inference`, else the model's default."""
        return self._chosen_procedure if self._chosen_procedure is not None else self.default_procedure()

    def default_procedure(self) -> str | None:
        """The procedure ``inpaint`` runs unless one is chosen: the first (a model whose default follows its
        config, e.g. ISNet's ``pra.enabled``, overrides this); None for a model that does not inpaint."""
        return next((p.name for p in self.procedures()), None)

    def sample_grid(self, n: int) -> np.ndarray | None:
        """A model's own ``HxWx3`` uint8 image grid for the validation grids (a generative prior's samples);
        None (the default): the grid callback shows ``n`` inpainted validation samples."""
        return None

    @property
    def compared_procedures(self) -> tuple[str, ...]:
        """Procedures scored next to :attr:`procedure` in validation and test (keys ``<stage>/<name>/psnr``)."""
        chosen = self._chosen_compare
        names = self.default_compare() if chosen is None else chosen
        return tuple(n for n in names if n != self.procedure)

    def default_compare(self) -> tuple[str, ...]:
        return ()

    def configure_inference(
        self, procedure: str | None = None, compare: Sequence[str] | None = None, **options: Any
    ) -> None:
        """Choose the inference procedure (``procedure=``), the ones scored side by side with it
        (``compare=[...]``; ``[]`` none) and the model's inference options (e.g. a density model's
        ``temperature``, a step budget). ``inpaint.run`` passes ``eval.procedure`` / ``eval.compare`` /
        ``eval.inference``, ``inpaint.predict`` its ``procedure=`` / ``inference.*``. The options are read into
        the model's :attr:`InferenceOptions` (typed, validated; an unknown one is refused by name) and kept in
        :attr:`inference_opts`, which the procedures read."""
        unknown = {k: v for k, v in options.items() if k not in self.inference_options()}
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no inference option {', '.join(f'{k}={v}' for k, v in unknown.items())}"
                f" (it has {', '.join(self.inference_options()) or 'none'})"
            )
        if options:
            given = {k: v for k, v in options.items() if v is not None}
            current = dataclasses.asdict(self.inference_opts)
            self.inference_opts = read_options(self.InferenceOptions, {**current, **given}, "eval.inference")
        names = self.inference_procedures()
        for name in ([procedure] if procedure is not None else []) + list(compare or []):
            if name not in names:
                raise ValueError(
                    f"inference procedure {name!r} is not one of {type(self).__name__}'s: {', '.join(names)}"
                )
        if procedure is not None:
            self._chosen_procedure = str(procedure)
        if compare is not None:
            self._chosen_compare = tuple(str(n) for n in compare)

    def inference_options(self) -> tuple[str, ...]:
        """Names of the options :meth:`configure_inference` accepts besides ``procedure`` and ``compare``."""
        return tuple(f.name for f in dataclasses.fields(self.InferenceOptions)) if self.InferenceOptions else ()

    @property
    def eval_variants(self) -> dict[str, str]:
        """Inference procedures scored side by side: column label -> key prefix after ``<stage>/`` (the
        active procedure's keys have none). Empty: one procedure, no comparison table in the report."""
        compared = self.compared_procedures
        if not compared:
            return {}
        labels = self.procedure_labels()
        return {labels.get(name, name): "" if name == self.procedure else f"{name}/"
                for name in self.inference_procedures() if name == self.procedure or name in compared}

    def procedure_labels(self) -> dict[str, str]:
        """Column labels of the side-by-side table (procedure name -> label); unnamed ones show their name."""
        return {p.name: p.label for p in self.procedures() if p.label}

    def sample_generators(self, index: Tensor, device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One random generator per sample for a stochastic inference procedure (sampled pixels, random
        latent starts), seeded by ``(inference_seed, index)`` only: a sample gets the same fill whatever its
        batch, its place in the batch, the batch size or the DDP rank. ``index`` is the batch's ``index``."""
        gens = []
        for i in index.tolist():
            seed = int(np.random.SeedSequence([self.inference_seed, int(i)]).generate_state(1, np.uint64)[0] >> 1)
            gens.append(torch.Generator(device=device).manual_seed(seed))
        return gens

    def inference_context(self, procedure: str | None = None):
        """The autograd context a procedure (default: the active one) runs in outside training: gradients only
        for one that declares ``needs_grad`` (per-image optimisation); everything else is gradient-free."""
        name = procedure or self.procedure
        needs_grad = name is not None and self._procedure(name).needs_grad
        return torch.enable_grad() if needs_grad else torch.no_grad()

    # ----------------------------------------------------------------------------------- evaluation
    def timed_inpaint(self, image: Tensor, mask: Tensor, index: Tensor | None = None,
                      procedure: str | None = None) -> tuple[Tensor, float]:
        """``inpaint`` (or another procedure) in the inference context, detached; also its wall time in
        seconds (CUDA work is waited for)."""
        sync = image.is_cuda and torch.cuda.is_available()
        if sync:
            torch.cuda.synchronize(image.device)
        start = time.perf_counter()
        with self.inference_context(procedure):
            if procedure is None or procedure == self.procedure:
                composite = self.inpaint(image, mask, index).detach()
            else:
                composite = self.run_procedure(procedure, image, mask, index).detach()
        if sync:
            torch.cuda.synchronize(image.device)
        return composite, time.perf_counter() - start

    def evaluation_terms(self, batch: dict, composite: Tensor | None, stage: str) -> EvalTerms | None:
        """The one hook through which a model adds to evaluation (:class:`~inpaint.evaluation.evaluator.EvalTerms`):
        numbers of its own (a density model's NLL, the context encoder's reconstruction loss; weighted means,
        ``<stage>/<name>``), images scored like the composite (mGANprior's raw output, ``<stage>/raw/...``) and
        samples kept for :meth:`evaluation_summary` (a prior's real images). Called after the batch is filled
        (``composite`` is None for a model that does not inpaint); None: nothing."""
        return None

    def evaluation_summary(self, stage: str, samples: dict[str, Tensor]) -> dict[str, float]:
        """Numbers over the whole stage from the samples :meth:`evaluation_terms` kept (gathered from every
        process, each once, in index order): ``{key: value}`` reported as ``<stage>/<key>``."""
        return {}

    def _eval_step(self, batch: dict, stage: str) -> Tensor | None:
        """Score the active procedure (and each compared one, and the model's :meth:`evaluation_terms`) on a
        batch; record the fill time per image. A model that does not inpaint only adds its terms."""
        image, mask, index = batch["image"], batch.get("mask"), batch.get("index")
        if self.procedure is None:
            self.evaluators[stage].add_terms(self.evaluation_terms(batch, None, stage), image, mask, index)
            return None
        composite, seconds = self.timed_inpaint(image, mask, index)
        n = image.shape[0]
        evaluator = self.evaluators[stage]
        evaluator.add_time(seconds, n)
        # per batch in the debug log only: the progress lines (callbacks.progress_log) and the stage's summary say it
        log.debug("%s: %d image(s) filled by %s in %.2f s (%.3f s/image)", stage, n, self.procedure, seconds,
                  seconds / n)
        evaluator.update(composite, image, mask, index)
        for name in self.compared_procedures:
            other, _ = self.timed_inpaint(image, mask, index, procedure=name)
            evaluator.update(other, image, mask, index, variant=name)
        evaluator.add_terms(self.evaluation_terms(batch, composite, stage), image, mask, index)
        return composite

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _finish_eval(self, stage: str) -> dict[str, float]:
        evaluator = self.evaluators[stage]
        results, seconds = evaluator.compute(stage, lambda kept: self.evaluation_summary(stage, kept))
        evaluator.reset()
        if seconds is not None:
            # logged, and kept apart from the scores: two runs of one model on the same images must compare equal
            self.fill_seconds[stage] = seconds
            self.log(f"{stage}/seconds_per_image", seconds, sync_dist=False)
            if stage == "test" and not self.trainer.sanity_checking:
                log.info("%s: %d image(s) filled by %s, %.4f s per image", stage, results.get(f"{stage}/count", 0),
                         self.procedure, seconds)
        headline = f"{stage}/psnr"
        scalars = {k: v for k, v in results.items() if "/count" not in k and k != headline}
        # compute() already reduced across processes: no further sync
        self.log_dict(scalars, sync_dist=False)
        if headline in results:
            self.log(headline, results[headline], prog_bar=True, sync_dist=False)
        if not self.trainer.sanity_checking and headline in results:
            log_metric_table(self.loggers, f"{stage}/table", results, self.buckets, prefix=f"{stage}/")
        return results

    # ----------------------------------------------------------------------------------- test protocol digest
    def on_test_epoch_start(self) -> None:
        self._digest.reset()

    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        """Add each test sample's image and mask (quantised to uint8) to the order-independent digest."""
        if not isinstance(batch, dict) or not torch.is_tensor(batch.get("image")):
            return
        mask = batch.get("mask")
        self._digest.add(batch["image"], mask if torch.is_tensor(mask) else None)

    def on_test_end(self) -> None:
        """Combine the digests of every process (a sum, so batch order and sharding do not matter; a sampler
        that pads a shard with repeated samples would count those twice)."""
        acc = torch.tensor([a % DIGEST_MOD for a in self._digest.sums], dtype=torch.int64, device=self.device)
        gathered = self.all_gather(acc).reshape(-1, 3).cpu().tolist()
        self.test_digest = DigestAccumulator.finish(gathered)

    def on_validation_epoch_end(self) -> None:
        self.val_results = self._finish_eval("val")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._finish_eval("test")

    # ----------------------------------------------------------------------------------- training
    def check_finite(self, loss: Tensor, name: str = "loss") -> None:
        """Stop training with a clear message when ``loss`` is NaN/Inf (before the optimizer step, so the
        weights stay good and no checkpoint with NaNs is written)."""
        every = self.nan_check_every
        if every <= 0 or self.global_step % every:
            return
        if not bool(torch.isfinite(loss.detach()).all()):
            saved = [getattr(cb, attr, "") for attr in ("last_model_path", "best_model_path")
                     for cb in self.trainer.checkpoint_callbacks]
            ckpt = next((p for p in saved if p), None)
            raise FloatingPointError(
                f"{name} of {type(self).__name__} is {loss.detach().float().flatten()[0].item()} at global "
                f"step {self.global_step} (epoch {self.current_epoch}); training stopped before the "
                f"optimizer step. Last good checkpoint: {ckpt or 'none saved yet'}. Try a lower model.lr, "
                "trainer.gradient_clip_val=1.0, or trainer.precision=32-true."
            )

    def optimized_parameters(self) -> list[nn.Parameter]:
        """What ``model.optimizer`` steps: every parameter that requires a gradient (frozen loss networks and
        EMA copies do not)."""
        return [p for p in self.parameters() if p.requires_grad]

    def build_optimizer(self, key: str, params) -> torch.optim.Optimizer:
        """The injected optimizer ``model.<key>`` over ``params``; a clear error when the config has none."""
        spec = self.injected.get(key)
        if spec is None:
            raise ValueError(
                f"{type(self).__name__} has no model.{key}: give one in the model config, e.g. "
                f"model.{key}={{_target_: torch.optim.Adam, _partial_: true, lr: 1e-3}} (each conf/model/*.yaml "
                "holds its paper's recipe)"
            )
        return spec.build(params)

    def configure_optimizers(self):
        """``model.optimizer`` over :meth:`optimized_parameters`, with ``model.scheduler`` when configured."""
        if not self.trainable:
            raise ValueError(f"{type(self).__name__} has nothing to train: evaluate it with task=test")
        opt = self.build_optimizer("optimizer", self.optimized_parameters())
        sched = self.injected.get("scheduler")
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": scheduler_config(sched, opt)}

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        """Lightning's, with the injected optimizers and scheduler stored in their config form (plain data:
        the checkpoint stays loadable with ``weights_only=True`` and rebuilds the same optimizer)."""
        frame = frame or inspect.currentframe().f_back
        ignore = [ignore] if isinstance(ignore, str) else list(ignore or [])
        injected = {k: spec.config() for k, spec in self.injected.items() if spec is not None}
        super().save_hyperparameters(*args, ignore=[*ignore, *injected], frame=frame, logger=logger)
        if injected and not args:
            super().save_hyperparameters({**self.hparams, **injected}, logger=logger)

    @classmethod
    def from_hyperparameters(cls, hparams: dict) -> InpaintModule:
        """The model a checkpoint's ``hyper_parameters`` describe. Checkpoints written before the optimizers
        were injected hold the old per-model keys (``lr``, ``betas``, ``optim``, ...): they only configured
        training, so they are dropped (logged) and the model still loads for evaluation and prediction."""
        accepted = inspect.signature(cls.__init__).parameters
        legacy = {k: v for k, v in hparams.items() if k in LEGACY_OPTIMIZER_KEYS and k not in accepted}
        if legacy:
            log.info("checkpoint hyperparameters from before injected optimizers: ignoring %s", sorted(legacy))
        return cls(**{k: v for k, v in hparams.items() if k not in legacy})

    # ----------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_CLASS_KEY] = class_path(self)
        if self.trained_image_size is not None:
            checkpoint[IMAGE_SIZE_KEY] = [int(s) for s in self.trained_image_size]

"""What every inpainting LightningModule shares: the model API, evaluation, NaN guard, checkpoint tag.

Model API (DESIGN.md section 3):
  ``forward(image, mask) -> prediction`` ``[B,3,H,W]`` in [0,1] (before compositing);
  ``inpaint(image, mask) -> composite = pred*mask + image*(1-mask)``.
Validation, test and ``inpaint.predict`` all go through ``inpaint``, so a method with its own inference
procedure (PRA, autoregressive fill, GAN inversion) overrides ``inpaint`` and is scored like the rest.
The mask is 1 = hole everywhere outside a model; a paper with the opposite polarity converts inside.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import lightning as L
import numpy as np
import torch
from torch import Tensor

from inpaint.loggers import log_metric_table
from inpaint.metrics import DEFAULT_BUCKETS, InpaintMetrics

log = logging.getLogger(__name__)

CHECKPOINT_CLASS_KEY = "inpaint_model_class"


def compose(prediction: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """Paste the prediction into the hole (mask 1) and keep the known pixels (mask 0) exactly."""
    return prediction * mask + image * (1.0 - mask)


def class_path(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


class InpaintModule(L.LightningModule):
    """Base class: subclasses implement ``forward`` and (if trainable) ``training_step`` and
    ``configure_optimizers``.

    Args:
        buckets: hole-ratio buckets ``[lo, hi)`` reported next to the overall metrics.
        nan_check_every: check the training loss for NaN/Inf every this many steps (1 = every step;
            each check is one host sync, so raise it on GPUs if the sync shows up in a profile;
            0 disables the check).

    The hole metrics (``eval.hole_metrics=true``) are switched on after construction with
    :meth:`enable_hole_metrics`, so a subclass's ``__init__`` needs no argument for them.
    """

    #: inputs are padded to a multiple of this by ``inpaint.predict`` (e.g. 16 for a 4x-downsampling net)
    size_multiple: int = 1
    #: False for non-learned baselines: ``task=fit`` is refused and ``task=test`` needs no checkpoint
    trainable: bool = True
    #: names of the submodules (networks) that ``compile=true`` compiles
    compile_targets: tuple[str, ...] = ()
    #: True for an inference procedure that needs autograd (e.g. per-image optimisation of a latent):
    #: evaluation, the grids and ``inpaint.predict`` then run ``inpaint`` with gradients enabled, and
    #: ``inpaint.run`` builds the trainer with ``inference_mode=False`` (inference tensors cannot be saved
    #: for backward); everything else stays gradient-free
    inference_needs_grad: bool = False

    def __init__(self, buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS, nan_check_every: int = 1) -> None:
        super().__init__()
        #: set by ``channels_last=true``: weights and every batch's tensors use the NHWC memory format
        self.channels_last = False
        self.buckets = tuple(tuple(float(x) for x in b) for b in buckets)
        self.nan_check_every = int(nan_check_every)
        self.hole_metrics = False
        self.val_metrics = InpaintMetrics(self.buckets)
        self.test_metrics = InpaintMetrics(self.buckets)
        self.test_results: dict[str, float] = {}
        self.val_results: dict[str, float] = {}
        #: the run seed (``inpaint.run`` sets it from ``seed``) that :meth:`sample_generators` combines with
        #: each sample's index
        self.inference_seed = 0

    def enable_hole_metrics(self, enabled: bool = True) -> InpaintModule:
        """``eval.hole_metrics=true``: also score ``mse_hole``, ``l2_paper``, ``l2_paper_255``, ``maem_hole``
        and ``maem_channel`` (``val/mse_hole``, ``test/l2_paper@10-20``, ...; see
        :func:`inpaint.metrics.per_image_hole_metrics`).

        Every :class:`~inpaint.metrics.InpaintMetrics` child is rebuilt with the switch (the base class's
        and any a subclass added, e.g. ISNet's single-pass scores), so call it before evaluating; the
        metrics' states are not part of the checkpoint."""
        self.hole_metrics = bool(enabled)
        for name, child in list(self.named_children()):
            if isinstance(child, InpaintMetrics):
                setattr(self, name, InpaintMetrics(child.buckets, hole_metrics=self.hole_metrics))
        return self

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

    def inpaint(self, image: Tensor, mask: Tensor) -> Tensor:
        """Fill the holes of ``image`` (mask 1 = hole); known pixels are returned unchanged."""
        return compose(self(image, mask).clamp(0.0, 1.0), image, mask)

    @property
    def eval_variants(self) -> dict[str, str]:
        """Inference procedures scored side by side: column label -> key prefix after ``<stage>/`` (e.g.
        ISNet with and without PRA). Empty: one procedure, no comparison table in the report."""
        return {}

    def sample_generators(self, index: Tensor, device: torch.device | str = "cpu") -> list[torch.Generator]:
        """One random generator per sample for a stochastic inference procedure (sampled pixels, random
        latent starts), seeded by ``(inference_seed, index)`` only: a sample gets the same fill whatever its
        batch, its place in the batch, the batch size or the DDP rank. ``index`` is the batch's ``index``."""
        gens = []
        for i in index.tolist():
            seed = int(np.random.SeedSequence([self.inference_seed, int(i)]).generate_state(1, np.uint64)[0] >> 1)
            gens.append(torch.Generator(device=device).manual_seed(seed))
        return gens

    def inference_context(self):
        """The autograd context ``inpaint`` runs in outside training (see :attr:`inference_needs_grad`)."""
        return torch.enable_grad() if self.inference_needs_grad else torch.no_grad()

    def configure_inference(self, **options) -> None:
        """Choose among a model's inference procedures by option (e.g. ISNet's ``pra=True``), for callers
        such as ``inpaint.predict`` that know no model; a model without an option refuses it by name."""
        if options:
            raise ValueError(
                f"{type(self).__name__} has no inference option {', '.join(f'{k}={v}' for k, v in options.items())}"
            )

    # ----------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict, metrics: InpaintMetrics) -> Tensor:
        image, mask = batch["image"], batch["mask"]
        with self.inference_context():
            composite = self.inpaint(image, mask).detach()
        metrics.update(composite.float(), image.float(), mask.float())
        return composite

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)

    def _finish_eval(self, stage: str, metrics: InpaintMetrics) -> dict[str, float]:
        results = {f"{stage}/{k}": float(v) for k, v in metrics.compute().items()}
        metrics.reset()
        headline = f"{stage}/psnr"
        scalars = {k: v for k, v in results.items() if "/count" not in k and k != headline}
        # compute() already reduced across processes: no further sync
        self.log_dict(scalars, sync_dist=False)
        if headline in results:
            self.log(headline, results[headline], prog_bar=True, sync_dist=False)
        if not self.trainer.sanity_checking:
            log_metric_table(self.loggers, f"{stage}/table", results, self.buckets, prefix=f"{stage}/")
        return results

    def on_validation_epoch_end(self) -> None:
        self.val_results = self._finish_eval("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self.test_results = self._finish_eval("test", self.test_metrics)

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

    def configure_optimizers(self):  # pragma: no cover - overridden by trainable models
        raise NotImplementedError(f"{type(self).__name__} is not trainable")

    # ----------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_CLASS_KEY] = class_path(self)

"""mGANprior: inpainting by multi-code GAN inversion of a frozen PGGAN prior, with optional attention
(``specs/mganprior-pggan.md`` sections 1, 3 and 4; the mGANprior-attention thesis, Ch. 4-6).

Nothing is trained. For every image, ``N`` latent codes ``z_n`` and a channel importance ``alpha`` (``N x C``,
one weight per code and channel of the composition layer) are optimised so that the generator output matches
the known pixels. The generator is split at composition layer ``l`` into ``G1`` and ``G2``::

    F_n = G1(z_n)                                   # N feature maps C x H x W
    x   = G2( (1/N) * sum_n alpha_n[:, None, None] * F_n )

The pieces, each in its own module:

- the prior (``model.prior``, :mod:`inpaint.models.gan_prior`): a ``model=pggan`` run checkpoint, an official
  converted generator file or registry name (its weights read on first use, :meth:`MGANPriorModule.ensure_prior`),
  or untrained weights (tests and benchmarks); frozen, a submodule of this module;
- the inversion (:class:`inpaint.models.inversion.MultiCodeInverter`, plain torch): the composition, the
  known-region loss (MSE + L1 + VGG16 perceptual term, exactly as the official code computes it), the
  attention variants (``attention.type`` ``none | sa | cbam`` at ``position`` ``composed | per_code``) and the
  batched, per-image optimisation with its early stopping;
- this module: the ``model=mganprior`` config, the framework's inputs and outputs, the inference budget and the
  scores.

Seeds. The codes of an image are drawn from
:meth:`~inpaint.models.base.InpaintModule.sample_generators` (run seed + the sample's index), so an image gets
the same result alone or in any batch.

Output. The framework scores the composite (generator output in the hole, the input elsewhere). The thesis
pastes nothing back (spec 1.8), so the raw generator output ``clamp((x + 1) / 2, 0, 1)`` is scored too, over
the whole image, under ``<stage>/raw/psnr``, ``<stage>/raw/ssim``, ...; those are the numbers comparable with
the thesis tables. :attr:`last_raw` holds the raw output of the latest inversion.

Budget (inference options, ``eval.inference.*`` / predict's ``inference.*``): ``iterations``; ``early_stop``
``{patience, rel_tol}``: an image stops once its loss has not fallen below ``best * (1 - rel_tol)`` for
``patience`` steps in a row (checking it copies the ``[B]`` losses to the host once per step); ``seconds``;
``progress``.

Input size. The generator makes ``resolution x resolution`` images. An input of another size is resized to it
(bilinear with antialiasing; the mask by area, any covered part counting as hole), inverted, and the result
resized back (``resize=true``, warned once); ``resize=false`` refuses such an input.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint.evaluation.evaluator import EvalTerms
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.models.base import InpaintModule, Procedure, compose
from inpaint.models.gan_prior import (
    PGGAN_MODULE_CLASS,
    PRIOR_HINT,
    build_prior,
    deferred_prior,
    load_official_prior,
    load_pggan_run_generator,
    prior_source,
)
from inpaint.models.inversion import (
    OPTIMIZERS,
    POSITIONS,
    VGG_CHOICES_HELP,
    MultiCodeInverter,
    early_stop_options,
)
from inpaint.models.options import read_options
from inpaint.nets.pggan import compose_layer

log = logging.getLogger(__name__)

# the prior's and the inversion's names stay importable from here
__all__ = ["OPTIMIZERS", "PGGAN_MODULE_CLASS", "POSITIONS", "PRIOR_HINT", "VGG_CHOICES_HELP", "MGANPriorModule",
           "MultiCodeInverter", "build_prior", "load_pggan_run_generator", "prior_source"]


def _from_inverter(path: str) -> property:
    """A read-only attribute of the module that is its inverter's ``path`` (``num_codes``, ``loss.w_mse``)."""
    get = operator.attrgetter(path)
    return property(lambda self: get(self.inverter), doc=f"The inverter's ``{path}`` (read only).")


@dataclass(frozen=True)
class InversionBudget:
    """mGANprior's inference options: ``iterations`` per image, ``early_stop`` (``{patience, rel_tol}``; ``{}``
    or ``false`` switches it off), ``seconds`` per batch (0 or null: none) and the ``progress`` bar."""

    iterations: int = 3000
    early_stop: dict | bool | None = None
    seconds: float | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        object.__setattr__(self, "early_stop", early_stop_options(self.early_stop))
        if self.seconds is not None and self.seconds <= 0:
            object.__setattr__(self, "seconds", None)


class MGANPriorModule(InpaintModule):
    """Multi-code GAN-prior inversion (see the module docstring); ``task=test`` / ``inpaint.predict`` only.

    Args:
        prior: the generator (:func:`~inpaint.models.gan_prior.build_prior`).
        official_weights: the same as ``prior.official`` (``inpaint.predict model=mganprior weights=FILE``).
        num_codes: ``N`` codes per image.
        layer: the composition layer ``l`` (spec 1.2; 8 = 512x32x32 at 256 px). ``null``: from
            ``compose_res`` and ``compose_conv`` by ``l = 2 (log2 res - 2) + conv``.
        compose_res: the composition resolution; ``null``: ``max(4, resolution * compose_fraction)``
            (``compose_fraction=0.125``: 32 at 256 px, i.e. the thesis's layer 8; 8 at 64 px).
        compose_conv: 1 or 2: after the block's first or second conv.
        alpha_init: ``const`` (1/N, the code and thesis §4.3) or ``normal`` (N(1/N, (1/N)^2); thesis §6's
            "Gaussian initialization").
        optimizer: ``name`` (adam: the thesis; sgd: the code's default "GD"), ``lr`` (1.0: the script's
            default; the thesis gives none), ``betas`` (Adam), ``momentum`` (SGD).
        iterations: optimisation steps per image (3000 in code and thesis).
        early_stop: ``null`` (off) or ``{patience, rel_tol}``: an image stops when its loss has not fallen
            below ``best * (1 - rel_tol)`` for ``patience`` iterations in a row.
        seconds: wall-time budget per batch (``null``: none); checked after every step.
        loss: ``mse``, ``l1``, ``perceptual`` (weights), ``perceptual_scale`` (the code's hard-coded 0.001),
            ``perceptual_layer`` (a VGG16 layer name: relu3_3 code, conv4_3 paper/thesis), ``perceptual_dist``
            (l1 as coded | mse), ``vgg`` (imagenet | random (untrained, warned) | none (no perceptual term) |
            path of a torchvision VGG16 file).
        attention: ``type`` (none | sa | cbam), ``position`` (composed | per_code), ``trainable`` and the
            block's own options (SA: ``score``, ``variant``, ``reduction``, ``gamma_init``, ...; CBAM:
            ``reduction``, ``spatial_kernel``, ``spatial_bn``, ...).
        resize: resize inputs of another size than the generator's to it and back (see the module doc).
        progress: a progress bar over the iterations (only on a terminal).
        log_every: log the mean loss at DEBUG level every this many iterations (0: never).
    """

    trainable = False

    # the inversion's settings, read from the inverter (:class:`~inpaint.models.inversion.MultiCodeInverter`)
    layer = _from_inverter("layer")
    feature_shape = _from_inverter("feature_shape")
    num_codes = _from_inverter("num_codes")
    alpha_init = _from_inverter("alpha_init")
    optimizer_name = _from_inverter("optimizer_name")
    lr = _from_inverter("lr")
    betas = _from_inverter("betas")
    momentum = _from_inverter("momentum")
    attention_type = _from_inverter("attention_type")
    attention_position = _from_inverter("attention_position")
    attention_trainable = _from_inverter("attention_trainable")
    attention_options = _from_inverter("attention_options")
    w_mse = _from_inverter("loss.w_mse")
    w_l1 = _from_inverter("loss.w_l1")
    w_perceptual = _from_inverter("loss.w_perceptual")
    perceptual_layer = _from_inverter("loss.perceptual_layer")
    perceptual_dist = _from_inverter("loss.perceptual_dist")
    vgg_weights = _from_inverter("loss.vgg_weights")

    def __init__(
        self,
        prior: Mapping[str, Any] | None = None,
        official_weights: str | None = None,
        num_codes: int = 20,
        layer: int | None = None,
        compose_res: int | None = None,
        compose_fraction: float = 0.125,
        compose_conv: int = 2,
        alpha_init: str = "const",
        optimizer: Mapping[str, Any] | None = None,
        iterations: int = 3000,
        early_stop: Mapping[str, Any] | None = None,
        seconds: float | None = None,
        loss: Mapping[str, Any] | None = None,
        attention: Mapping[str, Any] | None = None,
        resize: bool = True,
        progress: bool = True,
        log_every: int = 100,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 0,
    ) -> None:
        super().__init__(buckets=buckets, nan_check_every=nan_check_every)
        self.save_hyperparameters()
        prior_cfg = dict(prior or {})
        if official_weights:
            prior_cfg.update(official=str(official_weights), checkpoint=None, random=False)
        #: an official file or registry name whose weights are loaded on first use (:meth:`ensure_prior`), so
        #: that building the model (config checks, ``--cfg``) neither downloads nor reads a large file
        self._official_pending: str | None
        self.generator, self._official_pending = deferred_prior(prior_cfg)
        g = self.generator
        if layer is None:
            res = int(compose_res) if compose_res else max(4, int(round(g.resolution * float(compose_fraction))))
            layer = compose_layer(res, int(compose_conv))
        #: the inversion itself (plain torch; it shares :attr:`generator`, and is no submodule: its VGG stays
        #: out of the state dict)
        self.inverter = MultiCodeInverter(g, layer, num_codes=num_codes, alpha_init=alpha_init, attention=attention,
                                          loss=loss, optimizer=optimizer, prefix="model.")

        self.inference_opts = read_options(
            InversionBudget, {"iterations": iterations, "early_stop": early_stop, "seconds": seconds,
                              "progress": bool(progress)}, "model")
        self.log_every = int(log_every)
        self.resize = bool(resize)
        self._resize_warned = False

        #: the raw generator output ([B,3,H,W] in [0, 1], nothing pasted back) of the latest inversion
        self.last_raw: Tensor | None = None
        #: per image: iterations run and final loss of the latest inversion
        self.last_iterations: list[int] = []
        self.last_loss: Tensor | None = None

    # ----------------------------------------------------------------------------------- the prior
    def ensure_prior(self) -> None:
        """Load the official generator weights the config names, once (before the first inversion), and the
        VGG of the perceptual term: a missing file fails before the evaluation loop, not in it."""
        if self._official_pending is not None:
            load_official_prior(self.generator, self._official_pending)
            self._official_pending = None
        if self.w_perceptual:
            self.inverter.loss.network()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """As ``nn.Module``'s; generator weights in ``state_dict`` replace the pending official file."""
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if any(k.startswith("generator.") for k in state_dict):
            self._official_pending = None
        return result

    def on_validation_start(self) -> None:
        self.ensure_prior()

    def on_test_start(self) -> None:
        self.ensure_prior()

    # ----------------------------------------------------------------------------------- inference API
    InferenceOptions = InversionBudget

    def procedures(self) -> list[Procedure]:
        """``invert``: the per-image inversion (it optimises, so it runs with autograd)."""
        return [Procedure("invert", self.invert, needs_grad=True)]

    # the budget, as the inversion reads it (``eval.inference.*`` / predict's ``inference.*`` change it)
    iterations = property(lambda self: self.inference_opts.iterations)
    early_stop = property(lambda self: self.inference_opts.early_stop)
    seconds = property(lambda self: self.inference_opts.seconds)
    progress = property(lambda self: self.inference_opts.progress)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """The raw generator output (in [0, 1]) of an inversion of ``image`` with ``mask``."""
        self.invert(image, mask)
        assert self.last_raw is not None
        return self.last_raw

    # ----------------------------------------------------------------------------------- the inversion
    def synthesize(self, z: Tensor, alpha: Tensor, blocks: Sequence[nn.Module] | None = None) -> Tensor:
        """The composed generator output in [-1, 1] (:meth:`MultiCodeInverter.synthesize`)."""
        return self.inverter.synthesize(z, alpha, blocks)

    def image_losses(self, out: Tensor, target: Tensor, known: Tensor, target_features: Tensor | None = None) -> Tensor:
        """Each image's loss ``[B]`` (:class:`~inpaint.models.inversion.KnownRegionLoss`); ``out``/``target`` in
        [-1, 1], ``known`` = ``1 - mask``; ``target_features``: the VGG features of ``target * known``."""
        return self.inverter.loss(out, target, known, target_features)

    def _fit_size(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, tuple[int, int] | None]:
        r = self.generator.resolution
        size = tuple(image.shape[-2:])
        if size == (r, r):
            return image, mask, None
        if not self.resize:
            raise ValueError(f"mGANprior's generator makes {r}x{r} images, got {size[0]}x{size[1]} (model.resize=true "
                             "resizes inputs to it)")
        if not self._resize_warned:
            log.warning("mGANprior: inputs of %dx%d are resized to the generator's %dx%d and back", *size, r, r)
            self._resize_warned = True
        img = F.interpolate(image, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        msk = (F.adaptive_avg_pool2d(mask, (r, r)) > 0).to(mask.dtype) if min(size) >= r else \
            F.interpolate(mask, size=(r, r), mode="nearest")
        return img, msk, size  # type: ignore[return-value]

    def invert(self, image: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """Invert a batch (``image`` ``[B,3,H,W]`` in [0, 1], ``mask`` ``[B,1,H,W]``, 1 = hole) and return
        the composite; the raw output is left in :attr:`last_raw`."""
        self.ensure_prior()
        if index is None:
            index = torch.arange(image.shape[0])
        dtype = next(self.generator.parameters()).dtype
        img, msk, orig = self._fit_size(image.to(dtype), mask.to(dtype))
        result = self.inverter.invert(img, msk, self.sample_generators(index), iterations=self.iterations,
                                      early_stop=self.early_stop, seconds=self.seconds, progress=self.progress,
                                      log_every=self.log_every)
        self.last_loss, self.last_iterations = result.loss, result.iterations
        raw = result.image
        if orig is not None:
            raw = F.interpolate(raw, size=orig, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
        raw = raw.to(image.dtype)
        self.last_raw = raw
        return compose(raw, image, mask)

    # ----------------------------------------------------------------------------------- evaluation
    @property
    def eval_variants(self) -> dict[str, str]:
        """The composite's scores next to the raw output's (``<stage>/raw/...``) in the report's side-by-side
        table."""
        return {**(super().eval_variants or {"composite": ""}), "raw (no paste-back)": "raw/"}

    def _eval_step(self, batch: dict, stage: str) -> Tensor:
        self.last_raw = None
        return super()._eval_step(batch, stage)

    def evaluation_terms(self, batch: dict, composite: Tensor, stage: str) -> EvalTerms | None:
        """The raw output of the inversion (nothing pasted back), scored like the composite under
        ``<stage>/raw/...``."""
        return None if self.last_raw is None else EvalTerms(images={"raw": self.last_raw})

    def configure_optimizers(self):  # pragma: no cover - nothing to train
        raise NotImplementedError("mGANprior has nothing to train: evaluate it with task=test")

"""ISNet: Interactive Separation Network with the Progressive Reconstruction Algorithm (Gong et al., IEEE
Access 2022), as a LightningModule.

Follows ``specs/isnet.md`` (the authors' journal-branch code). Departures from the paper's text, all taken
from the authors' code as the spec directs:

* Perceptual loss on VGG19 relu1_1..relu5_1 (weight 1 each), not pool1-3; style loss Gram / (C*H*W) on
  relu2_2, relu3_4, relu4_4, relu5_2, on the full (unmasked) raw output (spec 4.1, 8 #1-2).
* The L1 term is over the whole image divided by the batch hole fraction (spec 8 #7).
* The discriminator sees RGB only (the raw generator output, not the composite); it has LeakyReLU, not
  sigmoid, in its layers; its last two convs are 4x4 stride 1 (spec 3, 8 #3-4). It returns raw logits:
  nsgan is BCE-with-logits (numerically the authors' sigmoid + BCE), lsgan applies the sigmoid in the loss.
* Eq. (5) with the hinge loss (``model=isnet``) appears in no committed config of the authors; their
  configs use nsgan. ``model.loss.gan`` selects it (spec 4.2, 10).
* The update reproduces what the authors' PyTorch 1.0 code computed (spec 5.2): the discriminator loss and
  the generator's adversarial / feature-matching terms are taken against the same (pre-update)
  discriminator, then D and G step (the shared GAN mechanism's ``update: simultaneous``, models/gan.py).
  The discriminator runs three times per iteration, as in their code.
* PRA (spec 6.1): the final code's non-leaking version -- the newly valid ring keeps the previous
  composite, not the ground truth; 15x15 square dilation; ``> 0.2`` and at most 10 extra passes.
* Weight init N(0, 0.001) (spec 2.5), not stated in the paper.

Mask convention: batches carry ``mask`` 1 = hole (the framework's); ISNet's M (1 = valid) is ``1 - mask``
and exists only inside this module.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kornia
import torch
from torch import Tensor

from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.losses import AdversarialLoss, VGGLoss, feature_matching_loss, hole_normalized_l1
from inpaint.models.base import Procedure, compose
from inpaint.models.gan import CriticLoss, GANModule
from inpaint.models.isnet_weights import load_official_generator
from inpaint.models.options import read_options
from inpaint.nets.isnet import PatchDiscriminator, build_generator

log = logging.getLogger(__name__)

#: loss-term names of ``model.loss.weights`` (the paper's L_l1, L_D, L_perc, L_style, L_FM)
LOSS_TERMS = ("l1", "adv", "perc", "style", "fm")
#: the adversarial losses of the authors' code (spec 4.2)
ISNET_GANS = ("hinge", "nsgan", "lsgan")
VGG_HINT = "model.loss.vgg=random"


@dataclass(frozen=True)
class GeneratorOptions:
    """``model.generator``: the design (Table 7), residual blocks per branch per phase (Table 8), init std."""

    variant: str = "isnet"
    blocks: int = 4
    init_std: float = 1e-3


@dataclass(frozen=True)
class LossOptions:
    """``model.loss``: the adversarial loss, the five terms' weights, the VGG19 of the perceptual/style terms."""

    gan: str = "hinge"
    vgg: str = "imagenet"
    weights: dict | None = None


@dataclass(frozen=True)
class PRAOptions:
    """``model.pra``: the Progressive Reconstruction Algorithm at evaluation and prediction."""

    enabled: bool = False
    threshold: float = 0.2
    max_passes: int = 10
    kernel: int = 15
    compare: bool = True


class ISNetModule(GANModule):
    """ISNet generator + PatchGAN discriminator trained with L1 / adversarial / perceptual / style /
    feature-matching losses; optional PRA at evaluation and prediction.

    Args:
        generator: ``variant`` (isnet | base | base_ff | unet), ``blocks`` (1-4), ``init_std``.
        loss: ``gan`` (hinge | nsgan | lsgan), ``weights`` ({l1, adv, perc, style, fm}; terms weighted 0 are
            not computed), ``vgg`` (imagenet | random | path of a torchvision-layout VGG19 file).
        optimizer, optimizer_d: injected (the authors': Adam 1e-4 for G, 1e-5 for D, betas (0, 0.9)).
        pra: ``enabled``, ``threshold`` (hole fraction above which another pass runs), ``max_passes`` (extra
            passes), ``kernel`` (side of the square dilation), ``compare`` (while PRA is on, also score the
            single-pass result under ``<stage>/single/...`` for a Table 5 side-by-side).
        official_weights: path of the authors' released generator (``InpaintingModel_gen.pth``), loaded into
            the generator at construction (their key layout, mapped by module order).
        gan: options of the shared GAN mechanism (:class:`~inpaint.models.gan.GANModule`); ISNet's update is
            ``simultaneous`` (the authors' order), which needs ``n_critic=1``; e.g. ``ema`` may be added.
    """

    compile_targets = ("generator", "discriminator")

    def __init__(
        self,
        generator: Mapping | None = None,
        loss: Mapping | None = None,
        pra: Mapping | None = None,
        official_weights: str | None = None,
        gan: Mapping | None = None,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        optimizer_d: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(gan={"update": "simultaneous", **(gan or {})}, buckets=buckets,
                         nan_check_every=nan_check_every, optimizer=optimizer, optimizer_d=optimizer_d,
                         scheduler=scheduler)
        # the authors' file is loaded once, here; checkpoints then carry the weights, not the file's path
        self.save_hyperparameters(ignore=["official_weights"])
        self.official_weights = str(official_weights) if official_weights else None
        gen_cfg = read_options(GeneratorOptions, generator, "model.generator")
        loss_cfg = read_options(LossOptions, loss, "model.loss")
        weights = {"l1": 1.0, "adv": 3.0, "perc": 1.0, "style": 3.0, "fm": 0.0, **(loss_cfg.weights or {})}
        unknown = sorted(set(weights) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"model.loss.weights: unknown term(s) {unknown}; the terms are {list(LOSS_TERMS)}")
        negative = {k: v for k, v in weights.items() if float(v) < 0}
        if negative:
            raise ValueError(f"model.loss.weights must be >= 0, got {negative}")
        self.loss_weights = {k: float(weights[k]) for k in LOSS_TERMS}
        pra_cfg = read_options(PRAOptions, pra, "model.pra")
        self.pra_enabled = pra_cfg.enabled
        self.pra_threshold = pra_cfg.threshold
        self.pra_max_passes = pra_cfg.max_passes
        self.pra_kernel = pra_cfg.kernel
        self.pra_compare = pra_cfg.compare
        if self.pra_kernel < 1 or self.pra_kernel % 2 == 0:
            raise ValueError(f"model.pra.kernel must be an odd size >= 1, got {self.pra_kernel}")

        self.generator = build_generator(
            gen_cfg.variant, gen_cfg.blocks, init_std=gen_cfg.init_std
        )
        self.generator_variant = gen_cfg.variant
        self.size_multiple = int(getattr(self.generator, "size_multiple", 16))
        self.uses_discriminator = self.loss_weights["adv"] > 0 or self.loss_weights["fm"] > 0
        self.trains_discriminator = self.uses_discriminator
        self.discriminator = PatchDiscriminator(3, init_std=gen_cfg.init_std)
        if loss_cfg.gan not in ISNET_GANS:
            raise ValueError(f"model.loss.gan={loss_cfg.gan!r}: ISNet uses one of {', '.join(ISNET_GANS)}")
        self.adversarial = AdversarialLoss(loss_cfg.gan)
        self.vgg_weights = loss_cfg.vgg
        self._vgg: list[VGGLoss] = []  # built on first use, kept out of the state dict (frozen, not trained)
        # last PRA call: extra passes per image (for logs and tests)
        self.last_pra_passes: Tensor | None = None
        if official_weights:
            self.load_official(official_weights)
        # (with model.gan.ema the mechanism copies the generator, official weights included, after __init__)

    # ----------------------------------------------------------------------------------- pretrained weights
    @property
    def has_pretrained_weights(self) -> bool:
        """The authors' released generator was loaded (``official_weights``)."""
        return self.official_weights is not None

    def load_official(self, path: str | Path) -> dict:
        """Load the authors' released generator (their key layout) into :attr:`generator`."""
        report = load_official_generator(self.generator, path)
        log.info("loaded the authors' ISNet generator from %s (%s)", path, report)
        return report

    # ----------------------------------------------------------------------------------- model API
    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """One generator pass on the masked image (holes zeroed; no mask channel, as in the paper)."""
        return self.eval_generator(self.masked_input(image, mask))

    def procedures(self) -> list[Procedure]:
        """``single``: one generator pass; ``pra``: the Progressive Reconstruction Algorithm (the default with
        ``model.pra.enabled``). The labels are the columns of the paper's Table 5."""
        return [Procedure("single", self.inpaint_forward, label="ISNet"),
                Procedure("pra", self.progressive_inpaint, label="ISNet+PRA")]

    def default_procedure(self) -> str:
        return "pra" if self.pra_enabled else "single"

    def default_compare(self) -> tuple[str, ...]:
        # Table 5: with PRA on, the single pass is scored next to it (<stage>/single/psnr, ...)
        return ("single",) if self.pra_enabled and self.pra_compare else ()

    def dilate_valid(self, valid: Tensor) -> Tensor:
        """Grow the valid region (1) with a flat ``kernel x kernel`` square: holes shrink by kernel//2 px a side."""
        kernel = torch.ones(self.pra_kernel, self.pra_kernel, device=valid.device, dtype=valid.dtype)
        return kornia.morphology.dilation(valid, kernel)

    @torch.no_grad()
    def progressive_inpaint(self, image: Tensor, mask: Tensor, index: Tensor | None = None) -> Tensor:
        """PRA (spec 6.1), batched: each image runs its own number of extra passes.

        One pass; then, while an image's hole fraction is above ``threshold`` (and at most ``max_passes``
        times), its valid region is dilated and the generator re-runs on its previous composite; the newly
        valid ring keeps the previous composite (the authors' final code; the paper's Algorithm 1 would paste
        the ground truth there). ``index`` is unused: PRA is deterministic.
        """
        generator = self.eval_generator
        valid = (mask <= 0.5).to(image.dtype)
        first = generator(image * valid).clamp(0.0, 1.0)
        composite = compose(first, image, 1.0 - valid)
        passes = torch.zeros(image.shape[0], dtype=torch.long, device=image.device)
        for _ in range(self.pra_max_passes):
            hole_fraction = 1.0 - valid.flatten(1).mean(dim=1)
            active = (hole_fraction > self.pra_threshold).nonzero().squeeze(1)
            if active.numel() == 0:
                break
            v = self.dilate_valid(valid[active])
            prev = composite[active]
            out = generator(prev * v).clamp(0.0, 1.0)
            composite = composite.index_copy(0, active, out * (1.0 - v) + prev * v)
            valid = valid.index_copy(0, active, v)
            passes[active] += 1
        self.last_pra_passes = passes
        # the known pixels of the input are returned exactly, whatever the passes did
        composite = compose(composite, image, mask)
        return composite

    # ----------------------------------------------------------------------------------- training
    def _vgg_loss(self) -> VGGLoss:
        if not self._vgg:
            self._vgg.append(
                VGGLoss(
                    weights=self.vgg_weights,
                    perceptual=self.loss_weights["perc"] > 0,
                    style=self.loss_weights["style"] > 0,
                    offline_hint=VGG_HINT,
                )
            )
        return self._vgg[0]  # VGGLoss follows its inputs' device by itself

    def on_fit_start(self) -> None:
        # load (or fail on) the VGG weights before the first step, not in the middle of it
        if self.loss_weights["perc"] > 0 or self.loss_weights["style"] > 0:
            self._vgg_loss()
        super().on_fit_start()

    def unused_parameter_reasons(self) -> list[str]:
        reasons = super().unused_parameter_reasons()
        if self.generator_variant == "base":
            reasons.insert(0, "model.generator.variant=base computes a phase-4 low-resolution branch it never uses "
                              "(as the authors' ablation code does)")
        return reasons

    def generator_losses(self, out: Tensor, image: Tensor, mask: Tensor, real_feats: list[Tensor] | None):
        """The weighted generator terms (only those with a weight > 0 are computed) and their sum. The
        mechanism calls it with D frozen, so adversarial and FM gradients reach G only."""
        w = self.loss_weights
        terms: dict[str, Tensor] = {}
        if w["l1"] > 0:
            terms["l1"] = hole_normalized_l1(out, image, mask)
        if self.uses_discriminator:
            fake_logits, fake_feats = self.discriminator(out)
            if w["adv"] > 0:
                terms["adv"] = self.adversarial.generator_loss(fake_logits)
            if w["fm"] > 0 and real_feats is not None:
                terms["fm"] = feature_matching_loss(fake_feats, real_feats)
        if w["perc"] > 0 or w["style"] > 0:
            vgg_terms = self._vgg_loss()(out.float(), image.float())
            if "perceptual" in vgg_terms:
                terms["perc"] = vgg_terms["perceptual"]
            if "style" in vgg_terms:
                terms["style"] = vgg_terms["style"]
        total = sum(w[k] * v for k, v in terms.items())
        return total, terms

    # the GAN mechanism's contract (models/gan.py): the losses of one iteration
    def generate(self, batch: dict) -> Tensor:
        return self.generator(self.masked_input(batch["image"], batch["mask"]))

    def discriminator_loss(self, batch: dict, fake: Tensor) -> CriticLoss:
        """D's loss; ``aux`` is D's features of the real batch (detached): the feature-matching targets of this
        iteration's generator loss, taken from the same pre-update D."""
        real_logits, real_feats = self.discriminator(batch["image"])
        fake_logits, _ = self.discriminator(fake)
        loss = self.adversarial.discriminator_loss(real_logits, fake_logits)
        return CriticLoss(loss, {}, aux=[f.detach() for f in real_feats])

    def generator_loss(self, batch: dict, fake: Tensor, aux: list[Tensor] | None = None
                       ) -> tuple[Tensor, dict[str, Tensor]]:
        """G's weighted terms; ``aux`` (the critic step's real features) are the feature-matching targets."""
        return self.generator_losses(fake, batch["image"], batch["mask"], aux)


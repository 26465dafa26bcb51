"""Context encoders ("Beyond CNNs", Jan & Noor, IJIST 2024, after Pathak et al. 2016).

``ContextEncoderModule`` (``model=context_encoder``) is the L2 context autoencoder of spec A3: CE-AE (predicts the
8x8 centre hole of a 32x32 CIFAR image, ``overlap=0``) and CE-AE-ov (predicts the 16x16 window around it with the
4-px ring of known pixels weighted ``overlap_weight`` in the L2, ``overlap=4``; only the 8x8 hole is shown).
:class:`ContextEncoderBase` holds what the adversarial variants (``ce_gan``, ``ce_wgan``) share with it: the
generator built from config, the [0,1] <-> [-1,1] mapping, the masked input, the window prediction, pasting and
the weighted reconstruction loss, and the check of the image/mask geometry.

Departures from the paper (spec ``cifar-models-and-scnn.md`` Part A CHOICEs), each a config option:

* Widths start at 64 and double per stage (paper: "32 or 64"); at 128 px they are capped at 512 and the bottleneck
  is B (Pathak's 128-px encoder is 64/64/128/256/512 with a 4000-wide bottleneck).
* Dropout 0.5 after the bottleneck only; the paper's "dropout for every activation" is
  ``generator.dropout=everywhere`` (spec A3: with BN it trains very slowly).
* Adam lr 1e-3, betas (0.9, 0.999), ExponentialLR 0.96 per epoch, weight decay 0 (``model.optimizer`` /
  ``model.scheduler`` in the config): the paper cross-validated the learning rate and found decay helpful but
  gives no values.
* The hole is 0 in the [-1,1] input (mid-grey; the paper's "zeros"), not Pathak's dataset-mean fill.
* The overlap ring weight is 20 (the paper's "more than 20 times"; Pathak: 10), with the loss a plain mean of the
  weighted squared errors (no division by the sum of the weights, as Pathak).
* ResNet / Inception backbones: layer widths and block counts are choices (the paper: "removed the first layers
  with dimensions higher than 32x32 and reduced depth and filters"); see :mod:`inpaint.nets.context_encoder`.
* Data augmentation of the paper (hue/saturation/contrast jitter, blur) is not applied (only flips from the data
  config). The 80M Tiny Images extension is not reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from inpaint.evaluation.evaluator import EvalTerms
from inpaint.evaluation.metrics import DEFAULT_BUCKETS
from inpaint.losses import AdversarialLoss
from inpaint.models.base import InpaintModule
from inpaint.models.gan import CriticLoss, GANModule
from inpaint.models.needs import ModelNeeds
from inpaint.nets.context_encoder import (
    SUPPORTED_HINT,
    ContextDiscriminator,
    ContextEncoderGenerator,
    Geometry,
    geometry,
    overlap_weight_map,
)


# ------------------------------------------------------------------------------------------ shared pieces
def to_model_range(image: Tensor) -> Tensor:
    """[0, 1] -> [-1, 1]."""
    return image * 2.0 - 1.0


def from_model_range(x: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1]."""
    return (x + 1.0) * 0.5


def weighted_l2(prediction: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean over all elements of ``weight * (prediction - target)**2`` (``weight`` broadcast, e.g. ``[w, w]``);
    not normalised by the weights' sum (spec A4.2)."""
    err = (prediction - target).pow(2)
    return (err * weight).mean() if weight is not None else err.mean()


def center_hole_mask(geo: Geometry, like: Tensor) -> Tensor:
    """``[1,1,S,S]`` mask of the geometry's hole, on ``like``'s device and dtype."""
    mask = torch.zeros(1, 1, geo.image_size, geo.image_size, device=like.device, dtype=like.dtype)
    mask[..., geo.hole_slice, geo.hole_slice] = 1.0
    return mask


class ContextEncoderBase(InpaintModule):
    """What every context encoder shares. Subclasses add the training (``training_step``,
    ``configure_optimizers``) and may add networks (a discriminator).

    Args:
        generator: keyword arguments of :class:`inpaint.nets.context_encoder.ContextEncoderGenerator` except
            ``image_size`` and ``overlap`` (backbone, variant, width, bottleneck, dropout, decoder, blocks, init).
        image_size: 32 (8x8 hole) or 128 (64x64 hole); the config takes it from ``data.image_size``.
        overlap: ring (px) predicted around the hole: 0 = the hole only, 4 = the 16x16 window (overlap trick).
        overlap_weight: L2 weight of the ring (the hole has weight 1).
    """

    compile_targets = ("generator",)

    def __init__(
        self,
        generator: Mapping[str, Any] | None = None,
        image_size: int = 32,
        overlap: int = 4,
        overlap_weight: float = 20.0,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        **kwargs: Any,
    ) -> None:
        # kwargs go on along the MRO (e.g. ``gan=`` to GANModule for the adversarial context encoder)
        super().__init__(buckets=buckets, nan_check_every=nan_check_every, **kwargs)
        self.geometry = geometry(image_size, overlap)
        self.overlap_weight = float(overlap_weight)
        self.generator = self.build_generator(dict(generator or {}))
        geo = self.geometry
        self.register_buffer(
            "loss_weight", overlap_weight_map(geo.window, geo.hole, self.overlap_weight), persistent=False
        )
        self._train_geometry_checked = False

    def build_generator(self, cfg: dict) -> ContextEncoderGenerator:
        """The generator for this module's geometry from the ``generator`` config."""
        for key in ("image_size", "overlap"):
            if key in cfg:
                raise ValueError(f"model.generator.{key}: set model.{key} instead")
        return ContextEncoderGenerator(image_size=self.geometry.image_size, overlap=self.geometry.overlap, **cfg)

    # ----------------------------------------------------------------------------------- geometry
    def check_geometry(self, image: Tensor, mask: Tensor, check_mask: bool = True) -> None:
        """Refuse images of another size, and (``check_mask``; one host sync) masks other than the centre hole."""
        geo = self.geometry
        if tuple(image.shape[-2:]) != (geo.image_size, geo.image_size):
            raise ValueError(
                f"{type(self).__name__} was built for {geo.image_size}x{geo.image_size} images "
                f"(model.image_size={geo.image_size}) and got {tuple(image.shape[-2:])}: {SUPPORTED_HINT}"
            )
        if check_mask and not bool((mask == center_hole_mask(geo, mask)).all()):
            raise ValueError(
                f"{type(self).__name__} fills exactly the {geo.hole}x{geo.hole} centre hole of a "
                f"{geo.image_size}x{geo.image_size} image; this mask is another: {SUPPORTED_HINT}"
            )

    def needs(self) -> ModelNeeds:
        """Built for one image side and one centre hole (the run refuses other data before training; every
        batch is checked too)."""
        geo = self.geometry
        return replace(super().needs(), image_sizes=(geo.image_size,), center_hole=geo.hole)

    # ----------------------------------------------------------------------------------- model pieces
    @staticmethod
    def masked_input(image: Tensor, mask: Tensor) -> Tensor:
        """The generator's input: the image in [-1, 1] with the hole at 0."""
        return to_model_range(image) * (1.0 - mask)

    def predict_window(self, image: Tensor, mask: Tensor) -> Tensor:
        """``[N,3,w,w]`` prediction of the window (hole + overlap ring) in [-1, 1]."""
        return self.generator(self.masked_input(image, mask))

    def crop_window(self, x: Tensor) -> Tensor:
        """The window of a full-size ``[N,C,S,S]`` tensor (e.g. the target of the reconstruction loss)."""
        s = self.geometry.window_slice
        return x[..., s, s]

    def paste(self, base: Tensor, window: Tensor, region: str = "hole") -> Tensor:
        """``base`` (``[N,3,S,S]``) with the window prediction pasted in, both in the same range: ``region=hole``
        pastes only the hole (what is shown), ``window`` the whole window (ring included: the GAN fakes)."""
        geo = self.geometry
        out = base.clone()
        if region == "hole":
            inner = geo.hole_in_window
            out[..., geo.hole_slice, geo.hole_slice] = window[..., inner, inner].to(out.dtype)
        elif region == "window":
            out[..., geo.window_slice, geo.window_slice] = window.to(out.dtype)
        else:
            raise ValueError(f"paste region={region!r}: use hole or window")
        return out

    def reconstruction_loss(self, window: Tensor, image: Tensor) -> Tensor:
        """Weighted L2 in [-1, 1] between the window prediction and the true window of ``image`` ([0,1])."""
        return weighted_l2(window.float(), self.crop_window(to_model_range(image)).float(), self.loss_weight)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """``[N,3,S,S]`` in [0,1]: the input with the predicted hole pasted in."""
        self.check_geometry(image, mask, check_mask=not self.training or not self._train_geometry_checked)
        if self.training:
            self._train_geometry_checked = True
        return self.paste(image, from_model_range(self.predict_window(image, mask)))


class ContextEncoderModule(ContextEncoderBase):
    """The L2 context autoencoder (CE-AE, CE-AE-ov): weighted L2 on the window; the optimizer and scheduler are
    injected (the config: Adam 1e-3 with ExponentialLR 0.96 per epoch).

    Logs ``train/loss`` and ``val/rec_loss`` / ``test/rec_loss`` (the same weighted L2 on held-out images, also in
    ``metrics.json``: Table 1's "validation L2" in the model's own units).

    Args:
        optimizer, scheduler: ``model.optimizer`` (over the generator) and ``model.scheduler`` (``null``: a
            constant rate).
    """

    #: trainer=cpu trains in bf16 autocast (1.6x per step, experiments/results/cpu_speed.md); the loss is taken in
    #: fp32; tests/test_cpu_precision.py holds its loss and gradients to fp32's (the GAN variants stay fp32)
    cpu_precision = "bf16-mixed"

    def __init__(
        self,
        generator: Mapping[str, Any] | None = None,
        image_size: int = 32,
        overlap: int = 0,
        overlap_weight: float = 20.0,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(generator, image_size, overlap, overlap_weight, buckets, nan_check_every,
                         optimizer=optimizer, scheduler=scheduler)
        self.save_hyperparameters()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        image, mask = batch["image"], batch["mask"]
        if not self._train_geometry_checked:
            self.check_geometry(image, mask)
            self._train_geometry_checked = True
        loss = self.reconstruction_loss(self.predict_window(image, mask), image)
        self.check_finite(loss, "reconstruction loss")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _eval_step(self, batch: dict, stage: str) -> Tensor:
        self.check_geometry(batch["image"], batch["mask"])  # before the fill: a clear error on the wrong hole
        return super()._eval_step(batch, stage)

    def evaluation_terms(self, batch: dict, composite: Tensor, stage: str) -> EvalTerms:
        """The paper's reconstruction loss of the window (``<stage>/rec_loss``), next to the composite's scores
        (a second pass of a small net)."""
        image, mask = batch["image"], batch["mask"]
        return EvalTerms(scalars={"rec_loss": (self.reconstruction_loss(self.predict_window(image, mask), image),
                                               image.shape[0])})


# ------------------------------------------------------------------------------------------ adversarial
class AdversarialContextEncoder(ContextEncoderBase, GANModule):
    """The context encoder trained against a discriminator (``model=ce_gan``) or a weight-clipped critic
    (``model=ce_wgan``), spec A4, on the shared GAN mechanism (:mod:`inpaint.models.gan`):

        L_G = alpha * L_rec + (1 - alpha) * L_adv

    with L_rec the overlap-weighted L2 of the window (spec A4.2) and L_adv the generator's adversarial term
    of ``loss.kind``:

    * ``ce_gan`` (DCGAN-style, A4.4): ``nsgan`` -- G maximises log D (hard target 1); D with soft noisy
      labels (real ~ U(0.9, 1.1), fake ~ U(0, 0.2), per sample) and label flips (p = 0.05, a CHOICE: the
      paper says "occasionally"); one D step, then one G step on the same batch; Adam 2e-4, betas (0.5,
      0.999) for both (``model.optimizer.lr=2e-3``, 10x, is Pathak's G rate).
    * ``ce_wgan`` (A4.5): ``wgan`` -- critic loss mean C(fake) - mean C(real), G's term -mean C(fake); every
      critic parameter clipped to [-0.01, 0.01] after each critic step; 10 critic steps per G step (the
      paper) with Arjovsky's warm-up (100 critic steps for the first 25 G iterations and every 500th); each
      critic step on a fresh batch; RMSprop 5e-5 for both (an Adam ``model.optimizer`` for G is allowed; the
      critic's ``model.optimizer_d`` must not have momentum, so Adam is refused there); G initialised from a
      trained ``context_encoder`` checkpoint with ``init_from=``.

    What D sees (``discriminator.d_input``): ``image`` -- the whole 32x32 image, real or with the
    prediction pasted (``d_paste``: ``window`` = all 16x16, ring included, as Pathak's D judges the full
    prediction; ``hole`` = only the 8x8); ``patch`` -- only the window, real or predicted. Real and fake
    samples always go through D in separate passes, so batch-norm statistics never mix them (the paper's
    trick). Everything is in [-1, 1] inside the model.
    """

    #: ``init_from=`` may start G from a trained L2 context encoder of the same architecture
    init_from_classes = ("inpaint.models.context_encoder.ContextEncoderModule",)

    def __init__(
        self,
        generator: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        image_size: int = 32,
        overlap: int = 4,
        overlap_weight: float = 20.0,
        alpha: float = 0.999,
        loss: Mapping[str, Any] | None = None,
        gan: Mapping[str, Any] | None = None,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        nan_check_every: int = 1,
        optimizer: Any = None,
        optimizer_d: Any = None,
        scheduler: Any = None,
    ) -> None:
        super().__init__(generator, image_size, overlap, overlap_weight, buckets, nan_check_every, gan=gan,
                         optimizer=optimizer, optimizer_d=optimizer_d, scheduler=scheduler)
        self.save_hyperparameters()
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"model.alpha (the reconstruction weight) must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        d_cfg = {"d_input": "image", "d_paste": "window", "width": 64, "norm": "batch", **(discriminator or {})}
        self.d_input, self.d_paste = str(d_cfg.pop("d_input")), str(d_cfg.pop("d_paste"))
        if self.d_paste not in ("hole", "window"):
            raise ValueError(f"model.discriminator.d_paste={self.d_paste!r}: use hole or window")
        size = self.geometry.image_size if self.d_input == "image" else self.geometry.window
        self.discriminator = ContextDiscriminator(size=size, d_input=self.d_input, **d_cfg)
        loss_cfg = {"kind": "nsgan", "real_label": None, "fake_label": None, "flip": 0.0, **(loss or {})}
        self.adversarial = AdversarialLoss(str(loss_cfg["kind"]), loss_cfg["real_label"], loss_cfg["fake_label"],
                                           float(loss_cfg["flip"]))
        critic = self.injected["optimizer_d"]
        if self.adversarial.kind == "wgan" and critic is not None and "adam" in critic.name.lower():
            raise ValueError(
                f"a weight-clipped WGAN critic must not use momentum (Arjovsky et al.): model.optimizer_d is "
                f"{critic.target}; use model.optimizer_d._target_=torch.optim.RMSprop"
            )

    def predict_window(self, image: Tensor, mask: Tensor) -> Tensor:
        """The window that ``forward`` / ``inpaint`` / grids show, by the mechanism's :attr:`eval_generator` (the
        EMA copy with ``model.gan.ema``, else the generator). Training fakes come from :meth:`generate`."""
        return self.eval_generator(self.masked_input(image, mask))

    # the GAN mechanism's contract: what G makes, what D sees, the two losses
    def generate(self, batch: dict) -> Tensor:
        """The generator's window for a training batch (with gradients when G steps)."""
        image, mask = batch["image"], batch["mask"]
        if not self._train_geometry_checked:
            self.check_geometry(image, mask)
            self._train_geometry_checked = True
        return self.generator(self.masked_input(image, mask))

    def critic_inputs(self, batch: dict, window: Tensor) -> tuple[Tensor, Tensor]:
        real = to_model_range(batch["image"])
        if self.d_input == "patch":
            return self.crop_window(real), window
        return real, self.paste(real, window, region=self.d_paste)

    def discriminator_loss(self, batch: dict, window: Tensor) -> CriticLoss:
        real, fake = self.critic_inputs(batch, window)
        d_real = self.discriminator(real)  # two passes: batch norm never sees real and fake together
        d_fake = self.discriminator(fake)
        loss = self.adversarial.discriminator_loss(d_real, d_fake)
        return CriticLoss(loss, {"d_real": d_real.detach().mean(), "d_fake": d_fake.detach().mean()})

    def generator_loss(self, batch: dict, window: Tensor, aux: Any = None) -> tuple[Tensor, dict[str, Tensor]]:
        rec = self.reconstruction_loss(window, batch["image"])
        terms = {"rec": rec}
        total = self.alpha * rec
        if self.alpha < 1.0:
            _, fake = self.critic_inputs(batch, window)
            adv = self.adversarial.generator_loss(self.discriminator(fake))
            terms["adv"] = adv
            total = total + (1.0 - self.alpha) * adv
        return total, terms


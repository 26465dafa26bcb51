"""ISNet / EdgeConnect training losses (``specs/isnet.md`` section 4.1).

Mask convention: everywhere in this framework ``mask`` is **1 = hole (missing), 0 = known**. That is the
*opposite* of ISNet's internal ``M`` (1 = valid), so the authors' normaliser ``mean(1 - M)`` is ``mean(mask)``
here. Every loss uses the generator's raw output, never the composite (as the authors' code does).

Discriminator inputs are raw logits: the discriminator applies no sigmoid, and :class:`AdversarialLoss`
applies it where a loss needs it (``nsgan`` as BCE-with-logits, the numerically stable equivalent of the
authors' sigmoid + BCE).

Every adversarial term of the framework comes from this module: :class:`AdversarialLoss` (the kinds, with
soft labels, label flips and the WGAN drift term as options) and :func:`gradient_penalty` (WGAN-GP, which the
shared GAN mechanism, :mod:`inpaint.models.gan`, adds when ``model.gan.gradient_penalty`` is set). Models
choose a kind and its options; none writes an adversarial formula of its own.

Every loss is computed in float32 (safe under autocast / bf16).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint.nets.vgg import VGG19Features, VGGFeatures

__all__ = [
    "GAN_KINDS",
    "AdversarialLoss",
    "VGGLoss",
    "feature_matching_loss",
    "gradient_penalty",
    "gram_matrix",
    "hole_normalized_l1",
]

GAN_KINDS = ("hinge", "nsgan", "lsgan", "wgan")


def hole_normalized_l1(output: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """ISNet's reconstruction term: ``mean(|output - target|)`` over **all** pixels and channels (holes and
    known alike), divided by the batch hole fraction ``mean(mask)`` (mask 1 = hole).

    This is the authors' ``L1(out, x) / mean(1 - M)`` (spec 4.1, section 8 row 7), not a hole-only L1. A
    batch without any hole has nothing to normalise by (the authors' code divides by zero there): it gets
    the plain L1, so one hole-free batch neither blows up nor silences the term.
    """
    l1 = (output.float() - target.float()).abs().mean()
    fraction = mask.float().mean()
    return l1 / torch.where(fraction > 0, fraction, torch.ones_like(fraction))


class AdversarialLoss(nn.Module):
    """GAN losses on raw discriminator logits (or critic scores) ``D``, chosen by kind.

    ============  ==================================  ==================================================
    kind          generator                           discriminator
    ============  ==================================  ==================================================
    ``hinge``     ``-mean(D(fake))``                  ``(mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))) / 2``
    ``nsgan``     ``BCE(sigmoid(D(fake)), 1)``        ``(BCE(sigmoid(D(real)), y_r) + BCE(sigmoid(D(fake)), y_f)) / 2``
    ``lsgan``     ``mean((sigmoid(D(fake)) - 1)^2)``  ``(mean((sigmoid(D(real)) - y_r)^2) + mean((sigmoid(D(fake)) - y_f)^2)) / 2``
    ``wgan``      ``-mean(D(fake))``                  ``mean(D(fake)) - mean(D(real)) + drift * mean(D(real)^2)``
                                                      (a critic: no sigmoid; ``drift`` 0 unless given)
    ============  ==================================  ==================================================

    ``drift`` (``wgan`` only) is Karras et al.'s drift term, which keeps the critic's scores near 0 (PGGAN:
    ``1e-3``); with ``drift=0`` nothing is added. The gradient penalty of WGAN-GP is :func:`gradient_penalty`.

    ``nsgan``'s generator term is the "maximise log D" form (hard target 1), as in the context-encoder and
    DCGAN papers. Targets ``y_r = 1``, ``y_f = 0`` unless ``real_label`` / ``fake_label`` give ranges
    ``[lo, hi]``: then each sample draws its own target from ``U(lo, hi)`` (soft noisy labels, e.g.
    ``[0.9, 1.1]`` and ``[0.0, 0.2]``), and with ``flip`` > 0 each sample swaps its real and fake targets
    with that probability (label flips). Both need a kind with targets (``nsgan``, ``lsgan``); the draws
    use the torch RNG (restored on resume). The halving of the two-sided losses scales D's gradient by a
    constant, which Adam and RMSprop do not see.

    The hinge discriminator loss is EdgeConnect's clean form. The ISNet journal code computes the real branch
    as ``relu(1 + mean(relu(1 - D(real))))``, i.e. this value plus a constant 1 (plus 0.5 after halving):
    the gradients are identical, only the logged number is shifted. ``lsgan`` is the authors' MSE on
    sigmoid outputs (their discriminator applies the sigmoid when the GAN is not hinge).
    """

    def __init__(
        self,
        kind: str = "hinge",
        real_label: Sequence[float] | None = None,
        fake_label: Sequence[float] | None = None,
        flip: float = 0.0,
        drift: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in GAN_KINDS:
            raise ValueError(f"unknown GAN loss '{kind}'; choose one of {', '.join(GAN_KINDS)}")
        self.kind = kind
        self.drift = float(drift)
        if self.drift < 0:
            raise ValueError(f"the drift weight must be >= 0, got {drift}")
        if self.drift and kind != "wgan":
            raise ValueError(f"the drift term belongs to a WGAN critic (kind wgan), not {kind}")
        self.real_label = _label_range("real_label", real_label, (1.0, 1.0))
        self.fake_label = _label_range("fake_label", fake_label, (0.0, 0.0))
        self.flip = float(flip)
        if not 0.0 <= self.flip < 1.0:
            raise ValueError(f"label flip probability must be in [0, 1), got {flip}")
        noisy = self.flip > 0 or self.real_label != (1.0, 1.0) or self.fake_label != (0.0, 0.0)
        if noisy and kind not in ("nsgan", "lsgan"):
            raise ValueError(f"soft labels and label flips need a loss with targets (nsgan, lsgan), not {kind}")

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, real_label={self.real_label}, fake_label={self.fake_label}, flip={self.flip}, "
                f"drift={self.drift}")

    def targets(self, n: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """The per-sample discriminator targets ``(y_real, y_fake)``, shape ``[n]`` (after flips)."""
        def draw(lo_hi: tuple[float, float]) -> Tensor:
            lo, hi = lo_hi
            return torch.full((n,), lo, device=device) if lo == hi else torch.empty(n, device=device).uniform_(lo, hi)

        y_real, y_fake = draw(self.real_label), draw(self.fake_label)
        if self.flip > 0:
            swap = torch.rand(n, device=device) < self.flip
            y_real, y_fake = torch.where(swap, y_fake, y_real), torch.where(swap, y_real, y_fake)
        return y_real, y_fake

    def generator_loss(self, fake_logits: Tensor) -> Tensor:
        d = fake_logits.float()
        if self.kind in ("hinge", "wgan"):
            return -d.mean()
        if self.kind == "nsgan":
            return F.binary_cross_entropy_with_logits(d, torch.ones_like(d))
        return (torch.sigmoid(d) - 1).square().mean()

    @staticmethod
    def drift_term(real_logits: Tensor) -> Tensor:
        """``mean(D(real)^2)``, the unweighted drift term of the ``wgan`` critic loss (float32)."""
        return real_logits.float().square().mean()

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        real, fake = real_logits.float(), fake_logits.float()
        if self.kind == "wgan":
            loss = fake.mean() - real.mean()
            return loss + self.drift * self.drift_term(real) if self.drift else loss
        if self.kind == "hinge":
            return (F.relu(1 - real).mean() + F.relu(1 + fake).mean()) / 2
        y_real, y_fake = (
            y.view(-1, *([1] * (real.dim() - 1))) for y in self.targets(real.shape[0], real.device)
        )
        if self.kind == "nsgan":
            l_real = F.binary_cross_entropy_with_logits(real, y_real.expand_as(real))
            l_fake = F.binary_cross_entropy_with_logits(fake, y_fake.expand_as(fake))
        else:
            l_real = (torch.sigmoid(real) - y_real).square().mean()
            l_fake = (torch.sigmoid(fake) - y_fake).square().mean()
        return (l_real + l_fake) / 2


def _label_range(name: str, value: Sequence[float] | None, default: tuple[float, float]) -> tuple[float, float]:
    if value is None:
        return default
    lo, hi = (float(v) for v in value)
    if lo > hi:
        raise ValueError(f"{name}={list(value)}: give [low, high] with low <= high")
    return lo, hi


def gradient_penalty(critic: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP's penalty (Gulrajani et al.): ``mean((||grad_x critic(x_hat)||_2 - 1)^2)`` at the interpolates
    ``x_hat = e * real + (1 - e) * fake``, ``e ~ U(0, 1)`` per sample (drawn from the torch RNG, on ``real``'s
    device). ``real`` and ``fake`` are detached; the gradient is taken with ``create_graph=True``, so the
    penalty's own gradient reaches the critic's parameters. ``critic`` maps a batch to its scores (any shape:
    they are summed). Unweighted, float32 for float32 inputs."""
    e = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.float().sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0).square().mean()


def feature_matching_loss(fake_features: Sequence[Tensor], real_features: Sequence[Tensor]) -> Tensor:
    """``sum_i mean(|f_i(fake) - stopgrad(f_i(real))|)`` over the discriminator's features (ISNet uses all
    five, the last being the logits). The real features never receive gradient."""
    if len(fake_features) != len(real_features) or not fake_features:
        raise ValueError(
            f"feature matching needs equally many (>0) fake and real features, got {len(fake_features)} "
            f"and {len(real_features)}"
        )
    total = fake_features[0].new_zeros((), dtype=torch.float32)
    for f, r in zip(fake_features, real_features, strict=True):
        total = total + (f.float() - r.detach().float()).abs().mean()
    return total


def gram_matrix(features: Tensor) -> Tensor:
    """``[B,C,H,W] -> [B,C,C]``: ``F Fᵀ / (C·H·W)`` per sample with ``F`` the features reshaped to
    ``C x HW``; in float32 (autocast off), since the sums over ``HW`` overflow/lose precision in half."""
    b, c, h, w = features.shape
    with torch.autocast(device_type=features.device.type, enabled=False):
        f = features.float().reshape(b, c, h * w)
        return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


class VGGLoss(nn.Module):
    """Perceptual and style terms from ONE VGG pass over output and target (the authors ran two VGG copies
    with the same weights; sharing one is a pure speed-up with identical values).

    ``perceptual = sum_k mean|phi_k(out) - phi_k(target)|`` over :attr:`PERCEPTUAL_LAYERS` (weight 1 each;
    ``perceptual_layers`` overrides them); ``style = sum_k mean|G(phi_k(out)) - G(phi_k(target))|`` over
    :attr:`STYLE_LAYERS` (or ``style_layers``) with
    :func:`gram_matrix`. ISNet applies both to the full, unmasked raw output (EdgeConnect masks the style
    inputs: pass ``out * mask`` and ``target * mask`` for that).

    The target pass runs under ``torch.no_grad()``; the output pass keeps gradients. Outputs are float32.

    Checkpoints: the frozen VGG is a regular submodule (:attr:`vgg`, keys ``vgg.features.N.*``), so a
    ``VGGLoss`` stored as an attribute of a LightningModule would put ~80 MB of fixed ImageNet weights into
    every checkpoint (and its frozen parameters into ``model.parameters()``). Keep it out of the model's
    module tree: hold it in a plain list (``self._vgg_loss = [VGGLoss(...)]``) or build it lazily. It
    follows the input's device by itself (moved on the first call with an input on another device), and
    ``.to()`` works as on any module.

    Args:
        vgg: a :class:`~inpaint.nets.vgg.VGGFeatures` (VGG19 or VGG16) whose outputs include the needed
            layers; built if ``None``.
        weights: passed to the VGG built when ``vgg`` is ``None`` (``imagenet``, ``random``, a path).
        perceptual, style: which terms to compute; a disabled term's layers are not computed (the VGG is
            only built as deep as the enabled terms need) and its key is absent from the result.
        offline_hint: quoted in the error when ImageNet weights are unavailable.
        depth: the VGG built when ``vgg`` is ``None``: 19 (default) or 16.
        perceptual_layers, style_layers: the layers of each term (default: the class attributes, which are
            VGG19 names). E.g. the mGANprior perceptual term: ``depth=16, perceptual_layers=("relu3_3",),
            style=False`` (that loss also normalises the input by the ImageNet statistics: pass
            ``vgg=VGG16Features(..., normalize_input=True)`` for it).
    """

    PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")

    def __init__(
        self,
        vgg: VGGFeatures | None = None,
        weights: str = "imagenet",
        perceptual: bool = True,
        style: bool = True,
        offline_hint: str = "model.loss.vgg=random",
        depth: int = 19,
        perceptual_layers: Sequence[str] | None = None,
        style_layers: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if not (perceptual or style):
            raise ValueError("VGGLoss with perceptual=False and style=False computes nothing")
        self.perceptual = bool(perceptual)
        self.style = bool(style)
        self.perceptual_layers: tuple[str, ...] = tuple(
            self.PERCEPTUAL_LAYERS if perceptual_layers is None else perceptual_layers
        )
        self.style_layers: tuple[str, ...] = tuple(self.STYLE_LAYERS if style_layers is None else style_layers)
        needed = tuple(
            dict.fromkeys((self.perceptual_layers if perceptual else ()) + (self.style_layers if style else ()))
        )
        if (self.perceptual and not self.perceptual_layers) or (self.style and not self.style_layers):
            raise ValueError("VGGLoss: an enabled term has no layers (empty perceptual_layers or style_layers)")
        if vgg is None:
            if depth == 19:
                vgg = VGG19Features(weights=weights, outputs=needed, offline_hint=offline_hint)
            else:
                vgg = VGGFeatures(depth=depth, weights=weights, outputs=needed, offline_hint=offline_hint)
        else:
            lacking = [n for n in needed if n not in vgg.outputs]
            if lacking:
                raise ValueError(
                    f"the given {type(vgg).__name__} does not output {lacking} (it outputs {list(vgg.outputs)})"
                )
        self.vgg = vgg

    def extra_repr(self) -> str:
        return f"perceptual={self.perceptual}, style={self.style}"

    def _features(self, x: Tensor) -> dict[str, Tensor]:
        vgg = self.vgg
        p = vgg.features[0].weight
        if p.device != x.device:
            vgg.to(x.device)
            p = vgg.features[0].weight
        return vgg(x.to(p.dtype))  # under autocast the convs still run in the autocast dtype

    def forward(self, output: Tensor, target: Tensor) -> dict[str, Tensor]:
        """``{"perceptual": ..., "style": ...}`` (only the enabled terms), unweighted float32 scalars."""
        with torch.no_grad():
            phi_t = self._features(target)
        phi_o = self._features(output)
        result: dict[str, Tensor] = {}
        if self.perceptual:
            result["perceptual"] = sum(
                (phi_o[k].float() - phi_t[k].float()).abs().mean() for k in self.perceptual_layers
            )
        if self.style:
            result["style"] = sum(
                (gram_matrix(phi_o[k]) - gram_matrix(phi_t[k])).abs().mean() for k in self.style_layers
            )
        return result

"""Multi-code GAN inversion (mGANprior) of a batch of masked images, in plain torch
(``specs/mganprior-pggan.md`` sections 1, 3 and 4; the mGANprior-attention thesis, Ch. 4-6).

:class:`MultiCodeInverter` stands apart from the LightningModule that uses it
(:class:`inpaint.models.mganprior.MGANPriorModule`): give it a generator that splits at a layer (``g1`` /
``g2``, :class:`inpaint.nets.pggan.PGGANGenerator`), images in [0, 1] at the generator's resolution and masks
(1 = hole), and it returns the inversions::

    inverter = MultiCodeInverter(generator, layer=8, num_codes=20, optimizer={"name": "adam", "lr": 1.0})
    result = inverter.invert(image, mask, iterations=3000)      # result.image: [B,3,R,R] in [0, 1]

For every image, ``N`` latent codes ``z_n`` and a channel importance ``alpha`` (``N x C``, one weight per code
and channel of the composition layer) are optimised so that the generator output matches the known pixels.
The generator is split at composition layer ``l`` into ``G1`` (``S[:l]``) and ``G2`` (``S[l:]``;
:meth:`inpaint.nets.pggan.PGGANGenerator.g1` / ``g2``)::

    F_n = G1(z_n)                                   # N feature maps C x H x W
    x   = G2( (1/N) * sum_n alpha_n[:, None, None] * F_n )

and the loss (:class:`KnownRegionLoss`), exactly as the official code computes it (spec 1.5, 1.6), compares
the output with the target on the known region only, both in [-1, 1] and multiplied by the known indicator
``k = 1 - mask`` (mask 1 = hole, the framework's convention)::

    L = mse * mean((x k - y k)^2) + l1 * mean|x k - y k|
        + perceptual * perceptual_scale * mean|phi(x k) - phi(y k)|

with ``phi`` VGG16 up to ``relu3_3`` (``features[:16]``) on ``(v + 1) / 2`` normalised by the ImageNet
statistics; the means run over all pixels of the image (holes included: the MSE is implicitly scaled by the
known fraction, as coded). Defaults: ``mse=1, l1=0, perceptual=0.1, perceptual_scale=0.001`` (effective VGG
weight 1e-4, ``inpainting.py``). The thesis's ``conv4_3`` layer is ``perceptual_layer=conv4_3``.

Batching. ``B`` images with ``N`` codes each run as ONE ``G1`` pass of ``B*N`` codes and one ``G2`` pass of
``B`` composed maps. The optimised loss is the SUM over images of each image's own loss, so the gradient of an
image's codes is exactly its own loss's gradient; Adam and SGD act element-wise, so an image's trajectory does
not depend on the other images of its batch (tested). The codes are drawn per image from the image's own
``torch.Generator`` (the module passes :meth:`~inpaint.models.base.InpaintModule.sample_generators`: run seed
+ the sample's index), so an image gets the same result alone or in any batch. Early stopping is per image
too (a stopped image's parameters are kept from its stopping iteration; the batch runs until every image has
stopped or the budget is spent). The time budget ``seconds`` is per batch and so the one exception: when it
stops a batch, images stop together.

Attention (thesis Ch. 5; spec 3.3-3.4): ``attention.type`` ``none | sa | cbam`` (built with
:func:`inpaint.nets.attention.build_attention` at the composition layer's width), at ``position`` ``composed``
(one block on the composed map, before ``G2``) or ``per_code`` (one block, shared by the codes of an image, on
every ``F_n`` before the weighting). The block is re-initialised for every image (from the image's seed) and,
with ``trainable=true``, optimised jointly with ``z`` and ``alpha`` by the same optimiser. Every image owns its
copy: the blocks are applied in a loop over the images of the batch (a cheap step next to ``G1`` / ``G2``,
and the only way to keep CBAM's BatchNorm statistics, taken in train mode as the spec recommends, per image).
A self-attention block with ``gamma = 0`` is the identity, so such an inversion starts as plain mGANprior.
With ``position=composed`` CBAM's spatial gate is cancelled by G2's leading PixelNorm (spec 3.3).

Budget (arguments of :meth:`MultiCodeInverter.invert`): ``iterations``; ``early_stop`` ``{patience,
rel_tol}``: an image stops once its loss has not fallen below ``best * (1 - rel_tol)`` for ``patience`` steps
in a row (checking it copies the ``[B]`` losses to the host once per step); ``seconds``; ``progress``.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from inpaint.nets.attention import build_attention
from inpaint.nets.pggan import PGGANGenerator
from inpaint.nets.vgg import VGG16_LAYERS, VGG16Features
from inpaint.progress import report as report_progress

log = logging.getLogger(__name__)

__all__ = ["Inversion", "KnownRegionLoss", "MultiCodeInverter", "early_stop_options"]

OPTIMIZERS = ("adam", "sgd")
POSITIONS = ("composed", "per_code")
ATTENTION_TYPES = ("none", "sa", "cbam")
ALPHA_INITS = ("const", "normal")
VGG_CHOICES_HELP = "imagenet | random | none | PATH"
OPTIMIZER_DEFAULTS: dict[str, Any] = {"name": "adam", "lr": 1.0, "betas": (0.9, 0.999), "momentum": 0.0}
LOSS_DEFAULTS: dict[str, Any] = {"mse": 1.0, "l1": 0.0, "perceptual": 0.1, "perceptual_scale": 0.001,
                                 "perceptual_layer": "relu3_3", "perceptual_dist": "l1", "vgg": "imagenet"}
EARLY_STOP_DEFAULTS: dict[str, Any] = {"patience": 100, "rel_tol": 1e-4}


def _options(option: str, defaults: dict[str, Any], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """``defaults`` updated with ``given``; a key that is not in ``defaults`` is refused by name."""
    unknown = sorted(set(given or {}) - set(defaults))
    if unknown:
        raise ValueError(f"{option}: unknown key(s) {unknown}; the keys are {', '.join(defaults)}")
    return {**defaults, **(given or {})}


def _choice(value: str, allowed: Sequence[str], option: str) -> str:
    v = str(value).lower()
    if v not in allowed:
        raise ValueError(f"{option}={value!r}: choose one of {', '.join(allowed)}")
    return v


def early_stop_options(early_stop: Mapping[str, Any] | bool | None) -> dict[str, Any] | None:
    """``{patience, rel_tol}`` (defaults 100 and 1e-4 for a key not given), or ``None`` (off) for ``None``,
    ``{}`` or ``false``."""
    if not early_stop:
        return None
    cfg = {**EARLY_STOP_DEFAULTS, **dict(early_stop)}  # type: ignore[arg-type]
    unknown = sorted(set(cfg) - set(EARLY_STOP_DEFAULTS))
    if unknown:
        raise ValueError(f"early_stop: unknown key(s) {unknown}; the keys are patience, rel_tol")
    return {"patience": int(cfg["patience"]), "rel_tol": float(cfg["rel_tol"])}


class KnownRegionLoss:
    """mGANprior's loss on the known region (see the module docstring), per image.

    Args:
        options: ``mse``, ``l1``, ``perceptual`` (weights), ``perceptual_scale`` (the code's hard-coded 0.001),
            ``perceptual_layer`` (a VGG16 layer name: relu3_3 code, conv4_3 paper/thesis), ``perceptual_dist``
            (l1 as coded | mse), ``vgg`` (imagenet | random (untrained, warned) | none (no perceptual term) |
            path of a torchvision VGG16 file); a key not given takes its default (:data:`LOSS_DEFAULTS`).
        option: the options' name in error messages (``model.loss``).
    """

    def __init__(self, options: Mapping[str, Any] | None = None, option: str = "loss") -> None:
        cfg = _options(option, LOSS_DEFAULTS, options)
        self.option = option
        self.w_mse, self.w_l1 = float(cfg["mse"]), float(cfg["l1"])
        self.vgg_weights = str(cfg["vgg"])
        perceptual = float(cfg["perceptual"]) * float(cfg["perceptual_scale"])
        self.w_perceptual = 0.0 if self.vgg_weights.lower() == "none" else perceptual
        self.perceptual_layer = _choice(cfg["perceptual_layer"], VGG16_LAYERS, f"{option}.perceptual_layer")
        self.perceptual_dist = _choice(cfg["perceptual_dist"], ("l1", "mse"), f"{option}.perceptual_dist")
        self._vgg: nn.Module | None = None  # frozen VGG16, built on first use (never part of a state dict)

    def network(self, like: Tensor | None = None) -> nn.Module:
        """The frozen VGG16 of the perceptual term (built once), on ``like``'s device and dtype."""
        if self._vgg is None:
            with torch.random.fork_rng(devices=[]):  # vgg=random: the same untrained net in every run
                torch.manual_seed(0)
                self._vgg = VGG16Features(self.vgg_weights, outputs=(self.perceptual_layer,), normalize_input=True,
                                          offline_hint=f"{self.option}.vgg=random (or none)")
        net = self._vgg
        p = next(net.parameters())
        if like is not None and (p.device != like.device or p.dtype != like.dtype):
            net.to(device=like.device, dtype=like.dtype)
        return net

    def features(self, x: Tensor) -> Tensor:
        """VGG features of images in [-1, 1]."""
        return self.network(x)((x + 1.0) / 2.0)[self.perceptual_layer]

    def __call__(self, out: Tensor, target: Tensor, known: Tensor, target_features: Tensor | None = None) -> Tensor:
        """Each image's loss ``[B]``; ``out``/``target`` in [-1, 1], ``known`` = ``1 - mask``;
        ``target_features``: the VGG features of ``target * known`` (computed if ``None``)."""
        x, y = out * known, target * known
        diff = (x - y).flatten(1)
        loss = self.w_mse * diff.pow(2).mean(1)
        if self.w_l1:
            loss = loss + self.w_l1 * diff.abs().mean(1)
        if self.w_perceptual:
            if target_features is None:
                with torch.no_grad():
                    target_features = self.features(y)
            d = (self.features(x) - target_features).flatten(1)
            d = d.abs() if self.perceptual_dist == "l1" else d.pow(2)
            loss = loss + self.w_perceptual * d.mean(1)
        return loss


@dataclass
class Inversion:
    """The result of :meth:`MultiCodeInverter.invert` for a batch of ``B`` images."""

    #: the composed generator output ``[B,3,R,R]`` in [-1, 1] (not clamped), detached
    output: Tensor
    #: each image's final loss ``[B]``
    loss: Tensor
    #: each image's number of optimisation steps
    iterations: list[int]
    #: the optimised codes ``[B,N,z_dim]``, importance ``[B,N,C]`` and attention blocks (one per image, or None)
    z: Tensor
    alpha: Tensor
    blocks: list[nn.Module] | None

    @property
    def image(self) -> Tensor:
        """The raw output as an image in [0, 1] (nothing pasted back)."""
        return ((self.output + 1.0) / 2.0).clamp(0.0, 1.0)


class MultiCodeInverter:
    """Inverts images with masks into ``N`` codes of a frozen generator composed at one layer (see the module
    docstring). Plain torch: no Lightning, no config.

    Args:
        generator: the prior, split at ``layer`` by ``g1`` / ``g2`` (:class:`~inpaint.nets.pggan.PGGANGenerator`);
            used as it is (frozen by the caller), on its own device and dtype.
        layer: the composition layer ``l`` (spec 1.2; 8 = 512x32x32 at 256 px).
        num_codes: ``N`` codes per image.
        alpha_init: ``const`` (1/N, the code and thesis §4.3) or ``normal`` (N(1/N, (1/N)^2); thesis §6's
            "Gaussian initialization").
        attention: ``type`` (none | sa | cbam), ``position`` (composed | per_code), ``trainable`` and the
            block's own options (SA: ``score``, ``variant``, ``reduction``, ``gamma_init``, ...; CBAM:
            ``reduction``, ``spatial_kernel``, ``spatial_bn``, ...).
        loss: the options of :class:`KnownRegionLoss`.
        optimizer: ``name`` (adam: the thesis; sgd: the code's default "GD"), ``lr`` (1.0: the script's
            default; the thesis gives none), ``betas`` (Adam), ``momentum`` (SGD).
        prefix: put before the options' names in error messages (``model.``).
    """

    def __init__(self, generator: PGGANGenerator, layer: int, num_codes: int = 20, alpha_init: str = "const",
                 attention: Mapping[str, Any] | None = None, loss: Mapping[str, Any] | None = None,
                 optimizer: Mapping[str, Any] | None = None, prefix: str = "") -> None:
        self.generator = generator
        self.layer = int(layer)
        if not 1 <= self.layer <= generator.num_layers:
            raise ValueError(f"{prefix}layer={self.layer}: the composition layer must lie in "
                             f"[1, {generator.num_layers}]")
        self.feature_shape = generator.feature_shape(self.layer)
        self.num_codes = int(num_codes)
        if self.num_codes < 1:
            raise ValueError(f"{prefix}num_codes must be >= 1, got {num_codes}")
        self.alpha_init = _choice(alpha_init, ALPHA_INITS, f"{prefix}alpha_init")

        opt = _options(f"{prefix}optimizer", OPTIMIZER_DEFAULTS, optimizer)
        self.optimizer_name = _choice(opt["name"], OPTIMIZERS, f"{prefix}optimizer.name")
        self.lr = float(opt["lr"])
        self.betas = tuple(float(b) for b in opt["betas"])
        self.momentum = float(opt["momentum"])

        self.loss = KnownRegionLoss(loss, option=f"{prefix}loss")

        att = {"type": "none", "position": "composed", "trainable": True, **(attention or {})}
        self.attention_type = _choice(att.pop("type"), ATTENTION_TYPES, f"{prefix}attention.type")
        self.attention_position = _choice(att.pop("position"), POSITIONS, f"{prefix}attention.position")
        self.attention_trainable = bool(att.pop("trainable"))
        self.attention_options = dict(att)
        build_attention(self.attention_type, self.feature_shape[0], **self.attention_options)  # fail early

    # ----------------------------------------------------------------------------------- the generator
    def synthesize(self, z: Tensor, alpha: Tensor, blocks: Sequence[nn.Module] | None = None) -> Tensor:
        """The composed generator output in [-1, 1] (not clamped).

        ``z`` ``[B, N, z_dim]``, ``alpha`` ``[B, N, C]``; ``blocks``: one attention block per image (or
        ``None``), applied at :attr:`attention_position`. One ``G1`` pass of ``B*N`` codes, one ``G2`` pass."""
        b, n = z.shape[:2]
        feats = self.generator.g1(z.reshape(b * n, -1), self.layer)
        feats = feats.reshape(b, n, *feats.shape[1:])
        if blocks is not None and self.attention_position == "per_code":
            feats = torch.stack([blk(feats[i]) for i, blk in enumerate(blocks)])
        fused = (feats * alpha[:, :, :, None, None]).sum(dim=1) / n
        if blocks is not None and self.attention_position == "composed":
            fused = torch.cat([blk(fused[i : i + 1]) for i, blk in enumerate(blocks)])
        return self.generator.g2(fused, self.layer)

    # ----------------------------------------------------------------------------------- inversion
    def initial(self, gen: torch.Generator, dtype: torch.dtype, device: torch.device):
        """Codes, importance and attention block of one image, all drawn from the image's generator."""
        n, (c, _, _) = self.num_codes, self.feature_shape
        z = torch.randn(n, self.generator.z_dim, generator=gen, dtype=torch.float64).to(device, dtype)
        if self.alpha_init == "const":
            alpha = torch.full((n, c), 1.0 / n, dtype=dtype, device=device)
        else:
            alpha = (1.0 / n) * (1.0 + torch.randn(n, c, generator=gen, dtype=torch.float64)).to(device, dtype)
        block = None
        if self.attention_type != "none":
            seed = int(torch.randint(0, 2**62, (1,), generator=gen))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                block = build_attention(self.attention_type, c, **self.attention_options)
            block = block.to(device=device, dtype=dtype).train()
            block.requires_grad_(self.attention_trainable)
        return z, alpha, block

    def _optimizer(self, params: list[Tensor]) -> torch.optim.Optimizer:
        if self.optimizer_name == "adam":
            return torch.optim.Adam(params, lr=self.lr, betas=self.betas)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)

    def invert(self, image: Tensor, mask: Tensor, generators: Sequence[torch.Generator] | None = None, *,
               iterations: int = 3000, early_stop: Mapping[str, Any] | None = None, seconds: float | None = None,
               progress: bool = False, log_every: int = 0) -> Inversion:
        """Invert a batch: ``image`` ``[B,3,R,R]`` in [0, 1] and ``mask`` ``[B,1,R,R]`` (1 = hole) at the
        generator's resolution, device and dtype.

        ``generators``: one ``torch.Generator`` per image, the codes, importance and attention block are drawn
        from (``None``: seeded 0, 1, ..., B-1). The budget: ``iterations``, ``early_stop`` (``{patience,
        rel_tol}``, per image), ``seconds`` (per batch), ``progress`` (a bar, only on a terminal),
        ``log_every`` (log the mean loss at DEBUG level every this many iterations; 0: never)."""
        if generators is None:
            generators = [torch.Generator().manual_seed(i) for i in range(image.shape[0])]
        with torch.enable_grad():
            return self._optimise(image, mask, generators, int(iterations), early_stop_options(early_stop),
                                  seconds, progress, int(log_every))

    def _optimise(self, image: Tensor, mask: Tensor, generators: Sequence[torch.Generator], iterations: int,
                  stop: dict[str, Any] | None, seconds: float | None, progress: bool, log_every: int) -> Inversion:
        device, dtype = image.device, image.dtype
        b = image.shape[0]
        inits = [self.initial(g, dtype, device) for g in generators]
        z = torch.stack([i[0] for i in inits]).requires_grad_(True)
        alpha = torch.stack([i[1] for i in inits]).requires_grad_(True)
        blocks = [i[2] for i in inits] if self.attention_type != "none" else None
        params: list[Tensor] = [z, alpha]
        if blocks is not None and self.attention_trainable:
            params += [p for blk in blocks for p in blk.parameters()]
        opt = self._optimizer(params)

        target = image * 2.0 - 1.0
        known = 1.0 - mask
        target_features = None
        if self.loss.w_perceptual:
            with torch.no_grad():
                target_features = self.loss.features(target * known)

        best = torch.full((b,), math.inf, dtype=torch.float64)
        since_best = torch.zeros(b, dtype=torch.long)
        active = torch.ones(b, dtype=torch.bool)
        ran = [iterations] * b
        saved: dict[int, tuple[Tensor, Tensor, dict | None]] = {}
        start = time.perf_counter()
        debug = log_every > 0 and log.isEnabledFor(logging.DEBUG)
        bar = tqdm(total=iterations, desc="mGANprior inversion", unit="it", leave=False,
                   disable=not (progress and sys.stderr.isatty()))
        losses = None
        try:
            for it in range(iterations):
                out = self.synthesize(z, alpha, blocks)
                losses = self.loss(out, target, known, target_features)
                opt.zero_grad(set_to_none=True)
                losses.sum().backward()
                if stop is not None:  # per image, on the loss of the parameters before this step
                    values = losses.detach().double().cpu()
                    improved = values < best * (1.0 - stop["rel_tol"])
                    best = torch.where(improved, values, torch.minimum(best, values))
                    since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
                    for i in torch.nonzero(active & (since_best >= stop["patience"])).flatten().tolist():
                        active[i] = False
                        ran[i] = it
                        saved[i] = (z[i].detach().clone(), alpha[i].detach().clone(),
                                    copy.deepcopy(blocks[i].state_dict()) if blocks is not None else None)
                    if not active.any():
                        break
                opt.step()
                bar.update(1)
                report_progress(it + 1, iterations, "mGANprior inversion (iterations)")
                if debug and (it + 1) % log_every == 0:
                    log.debug("mGANprior inversion: iteration %d/%d, mean loss %.6g", it + 1, iterations,
                              float(losses.detach().mean()))
                if seconds is not None and time.perf_counter() - start > seconds:
                    ran = [min(r, it + 1) for r in ran]
                    log.info("mGANprior inversion: time budget of %.1f s spent after %d iteration(s)", seconds,
                             it + 1)
                    break
        finally:
            bar.close()
        with torch.no_grad():
            for i, (zi, ai, state) in saved.items():
                z[i] = zi
                alpha[i] = ai
                if state is not None and blocks is not None:
                    blocks[i].load_state_dict(state)
            out = self.synthesize(z, alpha, blocks)
            final = self.loss(out, target, known, target_features).detach()
        return Inversion(output=out.detach(), loss=final, iterations=ran, z=z.detach(), alpha=alpha.detach(),
                         blocks=blocks)

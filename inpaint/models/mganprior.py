"""mGANprior: inpainting by multi-code GAN inversion of a frozen PGGAN prior, with optional attention
(``specs/mganprior-pggan.md`` sections 1, 3 and 4; the mGANprior-attention thesis, Ch. 4-6).

Nothing is trained. For every image, ``N`` latent codes ``z_n`` and a channel importance ``alpha`` (``N x C``,
one weight per code and channel of the composition layer) are optimised so that the generator output matches
the known pixels. The generator is split at composition layer ``l`` into ``G1`` (``S[:l]``) and ``G2``
(``S[l:]``; :meth:`inpaint.nets.pggan.PGGANGenerator.g1` / ``g2``)::

    F_n = G1(z_n)                                   # N feature maps C x H x W
    x   = G2( (1/N) * sum_n alpha_n[:, None, None] * F_n )

and the loss, exactly as the official code computes it (spec 1.5, 1.6), compares the output with the target
on the known region only, both in [-1, 1] and multiplied by the known indicator ``k = 1 - mask`` (mask 1 =
hole, the framework's convention)::

    L = mse * mean((x k - y k)^2) + l1 * mean|x k - y k|
        + perceptual * perceptual_scale * mean|phi(x k) - phi(y k)|

with ``phi`` VGG16 up to ``relu3_3`` (``features[:16]``) on ``(v + 1) / 2`` normalised by the ImageNet
statistics; the means run over all pixels of the image (holes included: the MSE is implicitly scaled by the
known fraction, as coded). Defaults: ``mse=1, l1=0, perceptual=0.1, perceptual_scale=0.001`` (effective VGG
weight 1e-4, ``inpainting.py``). The thesis's ``conv4_3`` layer is ``perceptual_layer=conv4_3``.

Batching. ``B`` images with ``N`` codes each run as ONE ``G1`` pass of ``B*N`` codes and one ``G2`` pass of
``B`` composed maps. The optimised loss is the SUM over images of each image's own loss, so the gradient of an
image's codes is exactly its own loss's gradient; Adam and SGD act element-wise, so an image's trajectory does
not depend on the other images of its batch (tested). The codes are drawn per image from
:meth:`~inpaint.models.base.InpaintModule.sample_generators` (run seed + the sample's index), so an image gets
the same result alone or in any batch. Early stopping is per image too (a stopped image's parameters are kept
from its stopping iteration; the batch runs until every image has stopped or the budget is spent). The time
budget ``seconds`` is per batch and so the one exception: when it stops a batch, images stop together.

Attention (thesis Ch. 5; spec 3.3-3.4): ``attention.type`` ``none | sa | cbam`` (built with
:func:`inpaint.nets.attention.build_attention` at the composition layer's width), at ``position`` ``composed``
(one block on the composed map, before ``G2``) or ``per_code`` (one block, shared by the codes of an image, on
every ``F_n`` before the weighting). The block is re-initialised for every image (from the image's seed) and,
with ``trainable=true``, optimised jointly with ``z`` and ``alpha`` by the same optimiser. Every image owns its
copy: the blocks are applied in a loop over the images of the batch (a cheap step next to ``G1`` / ``G2``,
and the only way to keep CBAM's BatchNorm statistics, taken in train mode as the spec recommends, per image).
A self-attention block with ``gamma = 0`` is the identity, so such an inversion starts as plain mGANprior.
With ``position=composed`` CBAM's spatial gate is cancelled by G2's leading PixelNorm (spec 3.3).

Output. The framework scores the composite (generator output in the hole, the input elsewhere). The thesis
pastes nothing back (spec 1.8), so the raw generator output ``clamp((x + 1) / 2, 0, 1)`` is scored too, over
the whole image, under ``<stage>/raw/psnr``, ``<stage>/raw/ssim``, ...; those are the numbers comparable with
the thesis tables. :attr:`last_raw` holds the raw output of the latest inversion.

Prior (``model.prior``, :func:`build_prior`): a ``model=pggan`` run checkpoint (``checkpoint``), an official
converted generator file or registry name (``official``; its weights are read on first use, so building the
model for a config check needs no file), or untrained weights (``random: true``, tests and benchmarks). The
generator is frozen: it stays a submodule (moved with the model) but no weight takes a gradient.

Budget (inference options, ``eval.inference.*`` / predict's ``inference.*``): ``iterations``; ``early_stop``
``{patience, rel_tol}``: an image stops once its loss has not fallen below ``best * (1 - rel_tol)`` for
``patience`` steps in a row (checking it copies the ``[B]`` losses to the host once per step); ``seconds``;
``progress``.

Input size. The generator makes ``resolution x resolution`` images. An input of another size is resized to it
(bilinear with antialiasing; the mask by area, any covered part counting as hole), inverted, and the result
resized back (``resize=true``, warned once); ``resize=false`` refuses such an input.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from inpaint.checkpoints import CheckpointMismatchError, read_checkpoint
from inpaint.metrics import DEFAULT_BUCKETS, InpaintMetrics
from inpaint.models.base import CHECKPOINT_CLASS_KEY, InpaintModule, compose
from inpaint.models.pggan_weights import load_official_generator
from inpaint.nets.attention import build_attention
from inpaint.nets.pggan import PGGANGenerator, compose_layer
from inpaint.nets.vgg import VGG16_LAYERS, VGG16Features

log = logging.getLogger(__name__)

__all__ = ["PGGAN_MODULE_CLASS", "MGANPriorModule", "build_prior", "load_pggan_run_generator", "prior_source"]

#: the class an own-trained prior's run checkpoint names (``model=pggan``)
PGGAN_MODULE_CLASS = "inpaint.models.pggan.PGGANModule"
PRIOR_HINT = "model.prior.random=true (untrained weights, for tests only)"
OPTIMIZERS = ("adam", "sgd")
POSITIONS = ("composed", "per_code")
VGG_CHOICES_HELP = "imagenet | random | none | PATH"
_GENERATOR_SIZES = ("resolution", "z_dim", "fmap_base", "fmap_max")
_PRIOR_KEYS = ("checkpoint", "official", "random", "seed", *_GENERATOR_SIZES)


def load_pggan_run_generator(path: str) -> PGGANGenerator:
    """The generator of a ``model=pggan`` run checkpoint written by ``inpaint.run``: built from the
    checkpoint's ``hyper_parameters.generator`` and loaded from the ``generator_ema.*`` state-dict entries
    when there are any (the EMA generator), else from ``generator.*``.

    Raises:
        CheckpointMismatchError: the file is a checkpoint of another model, or holds no generator.
    """
    ckpt = read_checkpoint(path, "model.prior.checkpoint")
    cls = ckpt.get(CHECKPOINT_CLASS_KEY)
    if cls != PGGAN_MODULE_CLASS:
        raise CheckpointMismatchError(
            f"model.prior.checkpoint={path} is a checkpoint of {cls or 'no inpaint model'}, not of a PGGAN prior "
            f"({PGGAN_MODULE_CLASS}, written by `python -m inpaint.run model=pggan`); for the official "
            "generators use model.prior.official=FILE_OR_REGISTRY_NAME"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    gen_cfg = dict(hparams.get("generator") or {})
    state = ckpt.get("state_dict") or {}
    accepted = set(inspect.signature(PGGANGenerator).parameters)
    ignored = sorted(set(gen_cfg) - accepted)
    if ignored:
        log.info("prior checkpoint %s: generator options %s are not architecture options, ignored", path, ignored)
    generator = PGGANGenerator(**{k: v for k, v in gen_cfg.items() if k in accepted})
    prefix = "generator_ema." if any(k.startswith("generator_ema.") for k in state) else "generator."
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not own:
        raise CheckpointMismatchError(f"model.prior.checkpoint={path} holds no 'generator.*' weights")
    try:
        generator.load_state_dict(own, strict=True)
    except RuntimeError as e:
        raise CheckpointMismatchError(
            f"model.prior.checkpoint={path}: its '{prefix}*' weights do not fit the generator of its own "
            f"hyper_parameters {gen_cfg}: {e}"
        ) from None
    log.info("mGANprior prior: %s weights of %s", prefix.rstrip("."), path)
    return generator


def prior_source(prior: Mapping[str, Any]) -> str:
    """Which of ``checkpoint``, ``official``, ``random`` the ``model.prior`` config gives (exactly one)."""
    unknown = sorted(set(prior) - set(_PRIOR_KEYS))
    if unknown:
        raise ValueError(f"model.prior: unknown key(s) {unknown}; the keys are {list(_PRIOR_KEYS)}")
    given = [k for k in ("checkpoint", "official", "random") if prior.get(k)]
    if len(given) != 1:
        raise ValueError(
            "model.prior needs exactly one of checkpoint=RUN_CKPT (an own model=pggan run), "
            f"official=FILE_OR_REGISTRY_NAME, random=true; got {given or 'none'}"
        )
    return given[0]


def build_prior(prior: Mapping[str, Any]) -> PGGANGenerator:
    """The frozen PGGAN generator of ``model.prior``: exactly one of ``checkpoint`` (a ``model=pggan`` run
    checkpoint), ``official`` (a converted official file or registry name such as ``pggan_bedroom256``, with
    the sizes ``resolution``, ``z_dim``, ``fmap_base``, ``fmap_max``) or ``random: true`` (untrained weights
    drawn from ``seed`` with those sizes, for tests and benchmarks; warned)."""
    source = prior_source(prior)
    if source == "checkpoint":
        generator = load_pggan_run_generator(str(prior["checkpoint"]))
    else:
        sizes = {k: int(prior[k]) for k in _GENERATOR_SIZES if prior.get(k) is not None}
        if source == "official":
            generator = PGGANGenerator(**sizes)
            info = load_official_generator(generator, str(prior["official"]), offline_hint=PRIOR_HINT)
            log.info("mGANprior prior: %s (%s layout)", info["path"], info["layout"])
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(prior.get("seed") or 0))
                generator = PGGANGenerator(**sizes)
            log.warning(
                "mGANprior with model.prior.random=true: the GAN prior is UNTRAINED (random weights); the fills "
                "are meaningless and only exercise the code (use prior.checkpoint or prior.official)"
            )
    lod = float(generator.lod)
    if lod != 0.0:
        raise ValueError(
            f"the PGGAN prior is at lod={lod} (its growing did not finish); mGANprior needs the full network (lod 0)"
        )
    generator.requires_grad_(False)
    return generator.eval()


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


class MGANPriorModule(InpaintModule):
    """Multi-code GAN-prior inversion (see the module docstring); ``task=test`` / ``inpaint.predict`` only.

    Args:
        prior: the generator (:func:`build_prior`).
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
    inference_needs_grad = True

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
        self._official_pending: str | None = None
        if prior_source(prior_cfg) == "official":
            sizes = {k: int(prior_cfg[k]) for k in _GENERATOR_SIZES if prior_cfg.get(k) is not None}
            self.generator = PGGANGenerator(**sizes).requires_grad_(False).eval()
            self._official_pending = str(prior_cfg["official"])
        else:
            self.generator = build_prior(prior_cfg)
        g = self.generator
        if layer is None:
            res = int(compose_res) if compose_res else max(4, int(round(g.resolution * float(compose_fraction))))
            layer = compose_layer(res, int(compose_conv))
        self.layer = int(layer)
        if not 1 <= self.layer <= g.num_layers:
            raise ValueError(f"model.layer={self.layer}: the composition layer must lie in [1, {g.num_layers}]")
        self.feature_shape = g.feature_shape(self.layer)
        self.num_codes = int(num_codes)
        if self.num_codes < 1:
            raise ValueError(f"model.num_codes must be >= 1, got {num_codes}")
        self.alpha_init = _choice(alpha_init, ("const", "normal"), "model.alpha_init")

        opt = _options("model.optimizer", {"name": "adam", "lr": 1.0, "betas": (0.9, 0.999), "momentum": 0.0},
                       optimizer)
        self.optimizer_name = _choice(opt["name"], OPTIMIZERS, "model.optimizer.name")
        self.lr = float(opt["lr"])
        self.betas = tuple(float(b) for b in opt["betas"])
        self.momentum = float(opt["momentum"])

        self.iterations = 0
        self.early_stop: dict[str, float] | None = None
        self.seconds: float | None = None
        self.progress = bool(progress)
        self._set_budget(iterations=iterations, early_stop=early_stop, seconds=seconds)
        self.log_every = int(log_every)

        loss_cfg = _options("model.loss", {"mse": 1.0, "l1": 0.0, "perceptual": 0.1, "perceptual_scale": 0.001,
                                           "perceptual_layer": "relu3_3", "perceptual_dist": "l1", "vgg": "imagenet"},
                            loss)
        self.w_mse, self.w_l1 = float(loss_cfg["mse"]), float(loss_cfg["l1"])
        self.vgg_weights = str(loss_cfg["vgg"])
        perceptual = float(loss_cfg["perceptual"]) * float(loss_cfg["perceptual_scale"])
        self.w_perceptual = 0.0 if self.vgg_weights.lower() == "none" else perceptual
        self.perceptual_layer = _choice(loss_cfg["perceptual_layer"], VGG16_LAYERS, "model.loss.perceptual_layer")
        self.perceptual_dist = _choice(loss_cfg["perceptual_dist"], ("l1", "mse"), "model.loss.perceptual_dist")
        self._vgg: list[nn.Module] = []  # frozen VGG16, built on first use, kept out of the state dict

        att = {"type": "none", "position": "composed", "trainable": True, **(attention or {})}
        self.attention_type = _choice(att.pop("type"), ("none", "sa", "cbam"), "model.attention.type")
        self.attention_position = _choice(att.pop("position"), POSITIONS, "model.attention.position")
        self.attention_trainable = bool(att.pop("trainable"))
        self.attention_options = dict(att)
        build_attention(self.attention_type, self.feature_shape[0], **self.attention_options)  # fail early
        self.resize = bool(resize)
        self._resize_warned = False

        self.val_raw_metrics = InpaintMetrics(self.buckets)
        self.test_raw_metrics = InpaintMetrics(self.buckets)
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
            info = load_official_generator(self.generator, self._official_pending, offline_hint=PRIOR_HINT)
            if float(self.generator.lod) != 0.0:
                raise ValueError(f"the PGGAN prior {info['path']} is at lod={float(self.generator.lod)}; "
                                 "mGANprior needs the full network (lod 0)")
            self.generator.requires_grad_(False)
            log.info("mGANprior prior: %s (%s layout)", info["path"], info["layout"])
            self._official_pending = None
        if self.w_perceptual:
            self._vgg_net()

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
    def inference_procedures(self) -> dict:
        return {"invert": self.invert}

    def inference_options(self) -> tuple[str, ...]:
        return ("iterations", "early_stop", "seconds", "progress")

    def configure_inference(self, procedure=None, compare=None, iterations: int | None = None,
                            early_stop: Mapping[str, Any] | None = None, seconds: float | None = None,
                            progress: bool | None = None, **options: Any) -> None:
        """Also the inversion budget: ``iterations``, ``early_stop`` (``{patience, rel_tol}``; ``{}`` or
        ``false`` switches it off), ``seconds`` (per batch), and ``progress``."""
        super().configure_inference(procedure=procedure, compare=compare, **options)
        self._set_budget(iterations=iterations, early_stop=early_stop, seconds=seconds)
        if progress is not None:
            self.progress = bool(progress)

    def _set_budget(self, iterations=None, early_stop=None, seconds=None) -> None:
        if iterations is not None:
            if int(iterations) < 0:
                raise ValueError(f"iterations must be >= 0, got {iterations}")
            self.iterations = int(iterations)
        if early_stop is not None:
            if not early_stop:
                self.early_stop = None
            else:
                cfg = {"patience": 100, "rel_tol": 1e-4, **dict(early_stop)}
                unknown = sorted(set(cfg) - {"patience", "rel_tol"})
                if unknown:
                    raise ValueError(f"early_stop: unknown key(s) {unknown}; the keys are patience, rel_tol")
                self.early_stop = {"patience": int(cfg["patience"]), "rel_tol": float(cfg["rel_tol"])}
        if seconds is not None:
            self.seconds = float(seconds) if float(seconds) > 0 else None

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """The raw generator output (in [0, 1]) of an inversion of ``image`` with ``mask``."""
        self.invert(image, mask)
        assert self.last_raw is not None
        return self.last_raw

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

    def _vgg_net(self, like: Tensor | None = None) -> nn.Module:
        """The frozen VGG16 of the perceptual term (built once), on ``like``'s device and dtype."""
        if not self._vgg:
            with torch.random.fork_rng(devices=[]):  # vgg=random: the same untrained net in every run
                torch.manual_seed(0)
                vgg = VGG16Features(self.vgg_weights, outputs=(self.perceptual_layer,), normalize_input=True,
                                    offline_hint="model.loss.vgg=random (or none)")
            self._vgg.append(vgg)
        net = self._vgg[0]
        p = next(net.parameters())
        if like is not None and (p.device != like.device or p.dtype != like.dtype):
            net.to(device=like.device, dtype=like.dtype)
        return net

    def _features(self, x: Tensor) -> Tensor:
        """VGG features of images in [-1, 1]."""
        return self._vgg_net(x)((x + 1.0) / 2.0)[self.perceptual_layer]

    def image_losses(self, out: Tensor, target: Tensor, known: Tensor, target_features: Tensor | None = None) -> Tensor:
        """Each image's loss ``[B]`` (see the module docstring); ``out``/``target`` in [-1, 1], ``known`` =
        ``1 - mask``; ``target_features``: the VGG features of ``target * known`` (computed if ``None``)."""
        x, y = out * known, target * known
        diff = (x - y).flatten(1)
        loss = self.w_mse * diff.pow(2).mean(1)
        if self.w_l1:
            loss = loss + self.w_l1 * diff.abs().mean(1)
        if self.w_perceptual:
            if target_features is None:
                with torch.no_grad():
                    target_features = self._features(y)
            d = (self._features(x) - target_features).flatten(1)
            d = d.abs() if self.perceptual_dist == "l1" else d.pow(2)
            loss = loss + self.w_perceptual * d.mean(1)
        return loss

    # ----------------------------------------------------------------------------------- inversion
    def _init_image(self, gen: torch.Generator, dtype: torch.dtype, device: torch.device):
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
        with torch.enable_grad():
            out = self._optimise(img, msk, index)
        raw = ((out + 1.0) / 2.0).clamp(0.0, 1.0)
        if orig is not None:
            raw = F.interpolate(raw, size=orig, mode="bilinear", align_corners=False).clamp(0.0, 1.0)
        raw = raw.to(image.dtype)
        self.last_raw = raw
        return compose(raw, image, mask)

    def _optimise(self, image: Tensor, mask: Tensor, index: Tensor) -> Tensor:
        device, dtype = image.device, image.dtype
        b = image.shape[0]
        inits = [self._init_image(g, dtype, device) for g in self.sample_generators(index)]
        z = torch.stack([i[0] for i in inits]).requires_grad_(True)
        alpha = torch.stack([i[1] for i in inits]).requires_grad_(True)
        blocks = [i[2] for i in inits] if self.attention_type != "none" else None
        params: list[Tensor] = [z, alpha]
        if blocks is not None and self.attention_trainable:
            params += [p for blk in blocks for p in blk.parameters()]
        if self.optimizer_name == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=self.lr, betas=self.betas)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)

        target = image * 2.0 - 1.0
        known = 1.0 - mask
        target_features = None
        if self.w_perceptual:
            with torch.no_grad():
                target_features = self._features(target * known)

        stop = self.early_stop
        best = torch.full((b,), math.inf, dtype=torch.float64)
        since_best = torch.zeros(b, dtype=torch.long)
        active = torch.ones(b, dtype=torch.bool)
        ran = [self.iterations] * b
        saved: dict[int, tuple[Tensor, Tensor, dict | None]] = {}
        start = time.perf_counter()
        debug = self.log_every > 0 and log.isEnabledFor(logging.DEBUG)
        bar = tqdm(total=self.iterations, desc="mGANprior inversion", unit="it", leave=False,
                   disable=not (self.progress and sys.stderr.isatty()))
        losses = None
        try:
            for it in range(self.iterations):
                out = self.synthesize(z, alpha, blocks)
                losses = self.image_losses(out, target, known, target_features)
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
                if debug and (it + 1) % self.log_every == 0:
                    log.debug("mGANprior inversion: iteration %d/%d, mean loss %.6g", it + 1, self.iterations,
                              float(losses.detach().mean()))
                if self.seconds is not None and time.perf_counter() - start > self.seconds:
                    ran = [min(r, it + 1) for r in ran]
                    log.info("mGANprior inversion: time budget of %.1f s spent after %d iteration(s)", self.seconds,
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
            self.last_loss = self.image_losses(out, target, known, target_features).detach()
        self.last_iterations = ran
        return out.detach()

    # ----------------------------------------------------------------------------------- evaluation
    @property
    def eval_variants(self) -> dict[str, str]:
        """The composite's scores next to the raw output's (``<stage>/raw/...``) in the report's side-by-side
        table."""
        return {**(super().eval_variants or {"composite": ""}), "raw (no paste-back)": "raw/"}

    def _eval_step(self, batch: dict, stage: str) -> Tensor:
        """The framework's scores of the composite, and the raw output's under ``<stage>/raw/...``."""
        self.last_raw = None
        composite = super()._eval_step(batch, stage)
        if self.last_raw is not None:
            raw_metrics = self.val_raw_metrics if stage == "val" else self.test_raw_metrics
            raw_metrics.update(self.last_raw.float(), batch["image"].float(), batch["mask"].float())
        return composite

    def _finish_eval(self, stage: str, metrics: InpaintMetrics) -> dict[str, float]:
        results = super()._finish_eval(stage, metrics)
        raw_metrics = self.val_raw_metrics if stage == "val" else self.test_raw_metrics
        extra: dict[str, float] = {}
        if raw_metrics.update_count:
            extra = {f"{stage}/raw/{k}": float(v) for k, v in raw_metrics.compute().items()}
            self.log_dict({k: v for k, v in extra.items() if "/count" not in k}, sync_dist=False)
        raw_metrics.reset()
        return {**results, **extra}

    def configure_optimizers(self):  # pragma: no cover - nothing to train
        raise NotImplementedError("mGANprior has nothing to train: evaluate it with task=test")

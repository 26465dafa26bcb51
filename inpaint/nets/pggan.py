"""PGGAN: the progressively grown GAN of Karras et al. (ICLR 2018), as a prior for GAN inversion (mGANprior).

Follows ``specs/mganprior-pggan.md`` sections 1.2 (the G1 / G2 split and its layer numbering) and 2 (the
generator, its block semantics and checkpoint layouts, the discriminator and the training recipe).

PGGAN trains a generator and a discriminator that grow together: training starts at 4x4 and a new
resolution is faded in by blending the new block's output with the (nearest-)upsampled output of the previous
resolution, the blend weight going linearly from old to new. The level of detail ``lod`` says where growing
stands: ``lod = k`` (integer) is a plain network at ``resolution / 2**k``; for ``k < lod < k + 1`` the block
of ``resolution / 2**k`` is being faded in with weight ``1 - frac(lod)``. The released networks are at
``lod = 0``. Three tricks keep training stable and are part of the architecture:

* **equalized learning rate**: weights are stored as N(0, 1) samples and scaled at run time by the He
  constant ``gain / sqrt(fan_in)`` (``gain = sqrt(2)`` except toRGB and the final dense layer, gain 1), so
  that Adam's per-parameter step is the same for every layer;
* **pixel norm** in the generator: every pixel's feature vector divided by its root mean square over
  channels;
* **minibatch standard deviation** in the discriminator: one extra channel at 4x4 holding the average
  across-group standard deviation of the features, which lets the discriminator see sample variety.

Layout: the PyTorch conversion of the official TensorFlow nets used by mGANprior and genforce, with
``fused_scale = False`` (nearest 2x upsampling, then a 3x3 conv). Every generator layer starts with pixel
norm (on z for the first one), so the features between two layers are the raw LeakyReLU outputs; the first
layer is the official dense layer written as a 4x4 conv with padding 3 on a 1x1 input. Parameter names
(``layer{i}.weight``, ``layer{i}.bias``, ``output{j}.weight``, ``output{j}.bias`` and the ``lod`` buffer)
are those of genforce's state dicts, so a genforce file loads as is and an mGANprior file after renaming
``.conv.weight`` -> ``.weight`` and ``.wscale.bias`` -> ``.bias``
(:func:`inpaint.models.pggan_weights.load_official_generator`).

Widths: ``nf(stage) = min(fmap_base // 2**stage, fmap_max)`` with ``stage = log2(res) - 1``, i.e.
``channels(res) = min(2 * fmap_base // res, fmap_max)``. The paper's 256x256 nets use fmap_base 8192 and
fmap_max 512 (512 channels up to 32x32, then 256, 128, 64); ``fmap_base=512, fmap_max=128, z_dim=128,
resolution=32`` is a small net that trains on a CPU.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EqualizedConv2d",
    "EqualizedLinear",
    "GeneratorLayer",
    "MinibatchStdDev",
    "PGGANDiscriminator",
    "PGGANGenerator",
    "PixelNorm",
    "ToRGB",
    "compose_layer",
    "nf",
    "pixel_norm",
    "real_images_at_lod",
    "upsample2x",
]

#: slope of every LeakyReLU of PGGAN
LRELU_SLOPE = 0.2
#: the He gain of the layers followed by a LeakyReLU
RELU_GAIN = math.sqrt(2.0)


def nf(stage: int, fmap_base: int = 8192, fmap_max: int = 512) -> int:
    """Feature maps at ``stage = log2(res) - 1`` (stage 1 = 4x4): ``min(fmap_base // 2**stage, fmap_max)``."""
    return min(fmap_base // 2**stage, fmap_max)


def _log2(resolution: int) -> int:
    r = int(resolution).bit_length() - 1
    if resolution < 4 or 2**r != resolution:
        raise ValueError(f"PGGAN resolution must be a power of two >= 4, got {resolution}")
    return r


def compose_layer(res: int, conv: int = 2) -> int:
    """Composition layer ``l`` whose G1 ends after conv ``conv`` (1 or 2) of the block at ``res`` x ``res``.

    ``l = 2 * (log2(res) - 2) + conv`` (spec 1.2): ``compose_layer(8) = 4``, ``compose_layer(32) = 8``,
    ``compose_layer(4, 1) = 1`` (after the dense layer). Independent of the network's resolution.
    """
    if conv not in (1, 2):
        raise ValueError(f"conv must be 1 or 2 (the block's first or second conv), got {conv}")
    return 2 * (_log2(res) - 2) + conv


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Each pixel's channel vector divided by its RMS: ``x / sqrt(mean_c(x**2) + eps)`` (dim 1)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


class PixelNorm(nn.Module):
    """:func:`pixel_norm` as a module."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return pixel_norm(x, self.eps)


def upsample2x(x: Tensor) -> Tensor:
    """Nearest-neighbour 2x upsampling (every pixel becomes a 2x2 block)."""
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class EqualizedConv2d(nn.Module):
    """Conv with equalized learning rate: ``conv(x, weight * gain / sqrt(in * k * k)) + bias``.

    ``weight`` (out, in, k, k) is initialised N(0, 1) and ``bias`` (out,) to 0; the stored values are the
    unscaled ones of the official checkpoints. ``padding`` defaults to ``k // 2`` (same size).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, gain: float = RELU_GAIN,
        padding: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.gain = gain
        self.padding = kernel_size // 2 if padding is None else padding
        self.scale = gain / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def runtime_weight(self) -> Tensor:
        """The weight the conv uses: stored weight times the He constant ``self.scale``."""
        return self.weight * self.scale

    def conv(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.runtime_weight(), self.bias, padding=self.padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"gain={self.gain:.4g}, padding={self.padding}")


class EqualizedLinear(nn.Module):
    """Dense layer with equalized learning rate: ``x @ (weight * gain / sqrt(in)).T + bias``."""

    def __init__(self, in_features: int, out_features: int, gain: float = RELU_GAIN) -> None:
        super().__init__()
        self.in_features, self.out_features, self.gain = in_features, out_features, gain
        self.scale = gain / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def runtime_weight(self) -> Tensor:
        return self.weight * self.scale

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.runtime_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, gain={self.gain:.4g}"


class GeneratorLayer(EqualizedConv2d):
    """One generator conv: pixel norm -> (nearest 2x upsampling) -> equalized conv + bias -> LeakyReLU 0.2.

    The first layer (``dense=True``) takes z as (B, z_dim) or (B, z_dim, 1, 1) and is the official dense
    layer written as a 4x4 conv with padding 3 on the 1x1 input (fan_in ``z_dim * 16``), giving 4x4.
    """

    def __init__(self, in_channels: int, out_channels: int, *, upsample: bool = False, dense: bool = False) -> None:
        if dense and upsample:
            raise ValueError("the dense (first) layer does not upsample")
        super().__init__(in_channels, out_channels, 4 if dense else 3, RELU_GAIN, padding=3 if dense else 1)
        self.upsample, self.dense = upsample, dense

    def forward(self, x: Tensor) -> Tensor:
        if self.dense and x.dim() == 2:
            x = x[:, :, None, None]
        x = pixel_norm(x)
        if self.upsample:
            x = upsample2x(x)
        return F.leaky_relu(self.conv(x), LRELU_SLOPE)


class ToRGB(EqualizedConv2d):
    """Pixel norm -> equalized 1x1 conv to 3 channels (gain 1) + bias; linear (no tanh, no clamp)."""

    def __init__(self, in_channels: int, out_channels: int = 3) -> None:
        super().__init__(in_channels, out_channels, 1, gain=1.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(pixel_norm(x))



class _LevelOfDetail(nn.Module):
    """The ``lod`` buffer (in the state dict, so checkpoints carry it) and a host copy of it that the forward
    reads: setting and reading the level of detail never waits for the device (no sync per training step).
    Change it with :meth:`set_lod`; loading a state dict refreshes the host copy."""

    def _init_lod(self) -> None:
        self.register_buffer("lod", torch.zeros(()))
        self._lod = 0.0
        self.register_load_state_dict_post_hook(_refresh_lod)

    def set_lod(self, value: float) -> None:
        self._lod = float(value)
        self.lod.fill_(self._lod)

    @property
    def level_of_detail(self) -> float:
        """The current lod as a Python float (the host copy of the buffer)."""
        return self._lod

    def _lod_value(self, lod: float | None) -> float:
        return self._lod if lod is None else float(lod)


def _refresh_lod(module: _LevelOfDetail, incompatible_keys) -> None:
    module._lod = 0.0 if module.lod.is_meta else float(module.lod)


def _split_lod(lod: float, num_blocks: int) -> tuple[int, float]:
    """``(top block index, fade weight t)`` of a level of detail; block ``b`` is at ``4 * 2**b``."""
    if not 0.0 <= lod <= num_blocks - 1:
        raise ValueError(f"lod must lie in [0, {num_blocks - 1}] for this network, got {lod}")
    whole = math.floor(lod)
    return num_blocks - 1 - whole, lod - whole


class PGGANGenerator(_LevelOfDetail):
    """The PGGAN generator (no labels, ``fused_scale = False``), growing from 4x4 to ``resolution``.

    Args:
        resolution: output size (power of two >= 4); 256 for the released LSUN priors.
        z_dim: latent size (512 in the paper).
        fmap_base, fmap_max: widths ``channels(res) = min(2 * fmap_base // res, fmap_max)``.
        out_channels: image channels.

    Modules, in the official registration order: ``layer0, layer1, output0, layer2, layer3, output1, ...``.
    Block ``b`` (``b = 0 .. num_blocks - 1``) works at ``4 * 2**b`` and owns ``layer{2b}`` (dense for b = 0,
    else upsample + conv), ``layer{2b+1}`` (conv) and ``output{b}`` (toRGB); upsampling is a function, not
    the official trailing ``upsample`` child, which holds no weights. The ``lod`` buffer (a float, saved in the
    state dict like the official one) is the level of detail of :meth:`forward`.

    **Layer numbering** (spec 1.2, mGANprior's ``--composing_layer``): the sequence
    ``S = [layer0, ..., layer{2R-1}, output{R-1}]`` (``R`` blocks) of the full network; ``g1(z, l)`` runs
    ``S[:l]`` and ``g2(f, l)`` runs ``S[l:]``. Features at ``l`` are the output of ``layer{l-1}``
    (``l = 0``: z as (B, z_dim, 1, 1)). Conv ``c`` (1 or 2) of the block at ``res`` is
    ``l = 2 * (log2(res) - 2) + c`` (:func:`compose_layer`). For the paper's 256x256 net:

    ====  ==================================  ==========
    l     G1 ends after                       features
    ====  ==================================  ==========
    0     nothing (z)                         512x1x1
    1     layer0 (dense -> 4x4)               512x4x4
    2     layer1                              512x4x4
    3     layer2 (1st conv of 8x8)            512x8x8
    4     layer3 (2nd conv of 8x8)            512x8x8
    5, 6  layer4, layer5                      512x16x16
    7, 8  layer6, layer7                      512x32x32
    9, 10 layer8, layer9                      256x64x64
    11,12 layer10, layer11                    128x128x128
    13,14 layer12, layer13                    64x256x256
    15    output6 (toRGB; G2 is empty)        3x256x256
    ====  ==================================  ==========

    ``forward(z) == g2(g1(z, l), l)`` for every ``l`` in ``0 .. 2R + 1``. At an integer ``lod = k > 0``
    the split is that of the ``resolution / 2**k`` network (same ``l`` for the same layer, the last index is
    ``2 (R - k) + 1``); at a fractional lod there is no split (the fade-in needs two resolutions).
    """

    def __init__(
        self, resolution: int = 256, z_dim: int = 512, fmap_base: int = 8192, fmap_max: int = 512,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.resolution, self.z_dim = resolution, z_dim
        self.fmap_base, self.fmap_max, self.out_channels = fmap_base, fmap_max, out_channels
        self.num_blocks = _log2(resolution) - 1
        self._init_lod()
        for b in range(self.num_blocks):
            ch = self.channels(4 * 2**b)
            if b == 0:
                self.add_module("layer0", GeneratorLayer(z_dim, ch, dense=True))
            else:
                self.add_module(f"layer{2 * b}", GeneratorLayer(self.channels(2 * 2**b), ch, upsample=True))
            self.add_module(f"layer{2 * b + 1}", GeneratorLayer(ch, ch))
            self.add_module(f"output{b}", ToRGB(ch, out_channels))

    def channels(self, res: int) -> int:
        """Feature maps of the block at ``res`` x ``res``."""
        return nf(_log2(res) - 1, self.fmap_base, self.fmap_max)

    @property
    def num_layers(self) -> int:
        """Number of conv layers (``2 * num_blocks``; 14 at 256 px). ``S`` has one more entry (toRGB)."""
        return 2 * self.num_blocks

    def layer(self, i: int) -> GeneratorLayer:
        return self.get_submodule(f"layer{i}")  # type: ignore[return-value]

    def to_rgb(self, b: int) -> ToRGB:
        return self.get_submodule(f"output{b}")  # type: ignore[return-value]


    def sequence(self, lod: float | None = None) -> list[nn.Module]:
        """``S`` of the network at an integer level of detail (default: the ``lod`` buffer)."""
        top, t = _split_lod(self._lod_value(lod), self.num_blocks)
        if t:
            raise ValueError(
                f"the G1/G2 split needs an integer lod (a plain network), got lod={self._lod_value(lod)}"
            )
        return [self.layer(i) for i in range(2 * top + 2)] + [self.to_rgb(top)]

    def feature_shape(self, l: int) -> tuple[int, int, int]:  # noqa: E741
        """(C, H, W) of the features at composition layer ``l`` of the full (lod 0) network."""
        if not 0 <= l <= self.num_layers + 1:
            raise ValueError(f"composition layer must lie in [0, {self.num_layers + 1}], got {l}")
        if l == 0:
            return (self.z_dim, 1, 1)
        if l == self.num_layers + 1:
            return (self.out_channels, self.resolution, self.resolution)
        res = 4 * 2 ** ((l - 1) // 2)
        return (self.channels(res), res, res)

    def _check_l(self, l: int, seq: list[nn.Module]) -> None:  # noqa: E741
        if not 0 <= l <= len(seq):
            raise ValueError(f"composition layer must lie in [0, {len(seq)}] at this lod, got {l}")

    def g1(self, z: Tensor, l: int, lod: float | None = None) -> Tensor:  # noqa: E741
        """z (B, z_dim) or (B, z_dim, 1, 1) -> the features after ``S[l - 1]`` (see the class docstring)."""
        seq = self.sequence(lod)
        self._check_l(l, seq)
        x = z[:, :, None, None] if z.dim() == 2 else z
        for module in seq[:l]:
            x = module(x)
        return x

    def g2(self, features: Tensor, l: int, lod: float | None = None) -> Tensor:  # noqa: E741
        """Features at composition layer ``l`` -> the image (``S[l:]``)."""
        seq = self.sequence(lod)
        self._check_l(l, seq)
        x = features
        for module in seq[l:]:
            x = module(x)
        return x

    def forward(self, z: Tensor, lod: float | None = None) -> Tensor:
        """z (B, z_dim) -> image (B, 3, r, r) at ``r = resolution / 2**floor(lod)``, nominally in [-1, 1].

        At a fractional lod with ``t = lod - floor(lod)`` the image is
        ``(1 - t) * toRGB_r(x_r) + t * upsample2x(toRGB_{r/2}(x_{r/2}))``.
        """
        top, t = _split_lod(self._lod_value(lod), self.num_blocks)
        x = z[:, :, None, None] if z.dim() == 2 else z
        prev = x
        for b in range(top + 1):
            prev = x
            x = self.layer(2 * b + 1)(self.layer(2 * b)(x))
        img = self.to_rgb(top)(x)
        if t > 0:  # top >= 1 here: lod < num_blocks - 1
            img = torch.lerp(img, upsample2x(self.to_rgb(top - 1)(prev)), t)
        return img


class MinibatchStdDev(nn.Module):
    """Appends one channel: the mean over (C, H, W) of the features' standard deviation within a group.

    The batch (size B) is split into ``B / G`` groups with ``G = min(group_size, B)``; as in the official
    code, sample ``i`` belongs to group ``i mod (B / G)``. Per group the population std over its members
    (``sqrt(var + 1e-8)``) of every feature is averaged to one scalar, which fills the new channel of every
    member. B must be a multiple of G.
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8) -> None:
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size, self.eps = group_size, eps

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        if b % g:
            raise ValueError(f"minibatch stddev: batch {b} is not a multiple of the group size {g}")
        y = x.reshape(g, b // g, c, h, w).float()
        y = (y - y.mean(dim=0)).pow(2).mean(dim=0)  # population variance per group: (B/G, C, H, W)
        y = (y + self.eps).sqrt().mean(dim=(1, 2, 3))  # (B/G,)
        y = y.to(x.dtype).repeat(g)[:, None, None, None].expand(b, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


class _FromRGB(EqualizedConv2d):
    """Equalized 1x1 conv from RGB -> LeakyReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv(x), LRELU_SLOPE)


class _DBlock(nn.Module):
    """conv0 3x3 (c -> c) -> conv1 3x3 (c -> c_next) -> 2x2 average pooling; LeakyReLU after each conv."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualizedConv2d(channels, channels, 3)
        self.conv1 = EqualizedConv2d(channels, out_channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        x = F.leaky_relu(self.conv0(x), LRELU_SLOPE)
        x = F.leaky_relu(self.conv1(x), LRELU_SLOPE)
        return F.avg_pool2d(x, 2)


class PGGANDiscriminator(_LevelOfDetail):
    """The PGGAN discriminator (spec 2.5): returns raw scores (B, 1) (WGAN-GP critic, no sigmoid).

    Args:
        resolution: full input size (power of two >= 4).
        fmap_base, fmap_max: widths as in :class:`PGGANGenerator`.
        mbstd_group: minibatch-stddev group size (4 in the paper's D; the released nets used 16).
        in_channels: image channels.

    Modules: ``from_rgb[b]`` (1x1 conv + LeakyReLU into block ``b`` at ``4 * 2**b``); ``blocks[b - 1]`` for
    ``b >= 1`` (conv0, conv1, 2x2 average pooling down to ``2 * 2**b``); at 4x4 ``mbstd``, ``conv`` (3x3,
    ``c + 1 -> c``), ``dense0`` (``c * 16 -> nf(0)``) and ``dense1`` (``-> 1``, gain 1, linear). No pixel norm.
    The ``lod`` buffer mirrors the generator's: the input must be ``resolution / 2**floor(lod)`` pixels, and at
    a fractional lod ``t`` the block being faded in is blended with the path that skips it:
    ``(1 - t) * block_r(fromRGB_r(img)) + t * fromRGB_{r/2}(avgpool2(img))``.
    """

    def __init__(
        self, resolution: int = 256, fmap_base: int = 8192, fmap_max: int = 512, mbstd_group: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.resolution, self.fmap_base, self.fmap_max = resolution, fmap_base, fmap_max
        self.in_channels = in_channels
        self.num_blocks = _log2(resolution) - 1
        self._init_lod()

        def ch(b: int) -> int:
            return nf(b + 1, fmap_base, fmap_max)

        self.from_rgb = nn.ModuleList(_FromRGB(in_channels, ch(b)) for b in range(self.num_blocks))
        self.blocks = nn.ModuleList(_DBlock(ch(b), ch(b - 1)) for b in range(1, self.num_blocks))
        self.mbstd = MinibatchStdDev(mbstd_group)
        self.conv = EqualizedConv2d(ch(0) + 1, ch(0), 3)
        self.dense0 = EqualizedLinear(ch(0) * 16, nf(0, fmap_base, fmap_max))
        self.dense1 = EqualizedLinear(nf(0, fmap_base, fmap_max), 1, gain=1.0)


    def input_resolution(self, lod: float | None = None) -> int:
        """The image size :meth:`forward` expects at ``lod`` (default: the buffer)."""
        top, _ = _split_lod(self._lod_value(lod), self.num_blocks)
        return 4 * 2**top

    def forward(self, img: Tensor, lod: float | None = None) -> Tensor:
        top, t = _split_lod(self._lod_value(lod), self.num_blocks)
        res = 4 * 2**top
        if img.shape[-2:] != (res, res):
            raise ValueError(
                f"the discriminator at lod {self._lod_value(lod)} takes {res}x{res} images, got "
                f"{tuple(img.shape[-2:])}"
            )
        x = self.from_rgb[top](img)
        if top > 0:
            x = self.blocks[top - 1](x)
            if t > 0:
                x = torch.lerp(x, self.from_rgb[top - 1](F.avg_pool2d(img, 2)), t)
            for b in range(top - 1, 0, -1):
                x = self.blocks[b - 1](x)
        x = F.leaky_relu(self.conv(self.mbstd(x)), LRELU_SLOPE)
        x = F.leaky_relu(self.dense0(x.flatten(1)), LRELU_SLOPE)
        return self.dense1(x)


def real_images_at_lod(images: Tensor, lod: float, resolution: int | None = None) -> Tensor:
    """Real images as the discriminator sees them at ``lod`` (spec 2.6): average-pooled to
    ``resolution / 2**floor(lod)``, then, at a fractional lod ``t``, lerped by ``t`` toward their own
    2x2-average-pooled-then-upsampled version (the real-side mirror of the generator's fade-in).

    ``images`` are at ``resolution`` (default: their own size).
    """
    resolution = images.shape[-1] if resolution is None else resolution
    num_blocks = _log2(resolution) - 1
    top, t = _split_lod(float(lod), num_blocks)
    factor = resolution // (4 * 2**top)
    x = F.avg_pool2d(images, factor) if factor > 1 else images
    if t > 0:
        x = torch.lerp(x, upsample2x(F.avg_pool2d(x, 2)), t)
    return x

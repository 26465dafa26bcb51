"""Attention blocks for the attention variants of mGANprior (thesis Ch. 5; spec ``mganprior-pggan.md`` §3).

Two blocks act on a feature map ``x`` of shape ``[B, C, H, W]`` and return a map of the same shape:

:class:`SelfAttention` (SAGAN). Every position of the map (a token; ``T = H*W`` of them) forms a query and
looks at keys built from all positions; a softmax over the keys turns the query-key scores into weights, and
the weighted sum of the values is added back to the input through a learnable scalar ``gamma``:
``y = gamma * o + x``. ``gamma`` starts at 0 (``gamma_init``), so a fresh block is exactly the identity and an
inversion starts from plain mGANprior. Options:

* ``score``: ``"dot"`` uses the raw scores ``q . k`` (SAGAN); ``"scaled_dot"`` divides them by
  ``sqrt(d_k)``, with ``d_k`` the query/key width (Vaswani et al.'s scaled dot product, thesis Eq. 5.1).
* ``variant``: ``"pytorch"`` (default; alias ``"pt"``) is the block most PyTorch SAGAN ports use: 1x1 convs
  with biases, query and key ``C -> C/8``, value ``C -> C``, every position a key, no output conv, no
  spectral norm. ``"authors"`` (alias ``"paper"``) follows the SAGAN authors' TensorFlow block as the spec
  records it: query and key ``C -> C/8``, value ``C -> C/2``, keys and values 2x2 max-pooled (``T/4`` keys,
  so ``H`` and ``W`` must be even), a 1x1 output conv ``C/2 -> C`` after the attention, and spectral norm
  on all four 1x1 convs. The spec is silent on biases and init there; the authors' code has bias-free convs
  with Xavier-uniform init, and so does this variant. The residual scale (the authors' ``sigma``) is the
  same ``gamma`` starting at 0.
* ``reduction``: the query/key width is ``C // reduction`` (8 in both variants).
* ``spectral_norm``: ``None`` picks the variant's choice (on for ``authors``, off for ``pytorch``).

:class:`CBAM` (Woo et al. 2018, as the official code builds it). A channel gate then a spatial gate, each a
sigmoid map multiplied into the features. The channel gate runs one shared MLP ``C -> C/r -> C`` (ReLU,
biases, ``r = reduction = 16``) on the globally average-pooled and on the max-pooled ``C``-vector, adds the
two results and takes the sigmoid: one weight per channel. The spatial gate pools across channels into a max
map and a mean map (in that order, as in the official code), runs a ``k x k`` conv ``2 -> 1``
(``spatial_kernel = 7``) and, as the official code does, a ``BatchNorm2d(1)`` (momentum 0.01; the conv then
has no bias; ``spatial_bn=False`` drops the norm and gives the conv a bias), then the sigmoid: one weight per
pixel, shared by all channels. ``use_channel`` / ``use_spatial`` switch either gate off; the gates are the
submodules :attr:`CBAM.channel_gate` and :attr:`CBAM.spatial_gate`, whose ``gate(x)`` returns the map alone.
Departure: the hidden width is ``C // r`` as in the official code, but too few channels (``C < r``) is an
error here instead of a zero-width layer.

Where the block goes, and what PixelNorm does to it (spec §3.3). The default position applies one block to
the composed feature map ``(1/N) sum_n alpha_n * F_n`` at the composition layer, right before ``G2``. Every
PGGAN block, the first block of ``G2`` included, starts with PixelNorm (:func:`pixel_norm`), which divides
each pixel's ``C``-vector by its root mean square. A positive factor that is the same for all channels of a
pixel cancels in that division. CBAM's spatial gate is exactly such a factor (a sigmoid value per pixel,
shared by all channels), so at that position it changes nothing downstream: ``pixel_norm(Ms * x) ==
pixel_norm(x)`` up to PixelNorm's ``eps``. The channel gate weighs channels differently within a pixel, so
it is not removed and does change the result; self-attention mixes positions and is residual, so it also
survives. (If the block is applied to each code's features before the weighted sum, the spatial gate
re-weights the codes per pixel and does matter.)

:func:`build_attention` builds a block from a config: ``"none"`` (``nn.Identity``), ``"sa"`` or ``"cbam"``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations

__all__ = [
    "ATTENTION_TYPES",
    "CBAM",
    "SA_SCORES",
    "SA_VARIANTS",
    "ChannelGate",
    "SelfAttention",
    "SpatialGate",
    "build_attention",
    "pixel_norm",
]

ATTENTION_TYPES = ("none", "sa", "cbam")
SA_SCORES = ("dot", "scaled_dot")
SA_VARIANTS = ("pytorch", "authors")
#: the spec's proposed config names for the variants (``attention.variant: pt|paper``)
_VARIANT_ALIASES = {"pt": "pytorch", "paper": "authors"}


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """PGGAN's PixelNorm: each pixel's channel vector divided by ``sqrt(mean_c(x^2) + eps)`` (dim 1)."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def _choice(value: str, allowed: tuple[str, ...], option: str, aliases: dict[str, str] | None = None) -> str:
    v = str(value).lower()
    v = (aliases or {}).get(v, v)
    if v not in allowed:
        alias_note = f" (aliases: {', '.join(f'{a}={b}' for a, b in aliases.items())})" if aliases else ""
        raise ValueError(f"unknown {option} {value!r}; choose from {', '.join(allowed)}{alias_note}")
    return v


class SelfAttention(nn.Module):
    """SAGAN self-attention over the ``H*W`` positions of ``[B, C, H, W]`` features (see the module doc).

    Args:
        channels: ``C``.
        score: ``"dot"`` or ``"scaled_dot"`` (scores divided by ``sqrt(d_k)``, ``d_k = C // reduction``).
        variant: ``"pytorch"`` (common PyTorch port, default) or ``"authors"`` (the SAGAN authors' block).
        reduction: query/key width divisor.
        gamma_init: start value of the residual scale ``gamma`` (0: the block starts as the identity).
        spectral_norm: spectral norm on the 1x1 convs; ``None``: on for ``authors``, off for ``pytorch``.
    """

    def __init__(
        self,
        channels: int,
        score: str = "dot",
        variant: str = "pytorch",
        reduction: int = 8,
        gamma_init: float = 0.0,
        spectral_norm: bool | None = None,
    ) -> None:
        super().__init__()
        self.score = _choice(score, SA_SCORES, "self-attention score")
        self.variant = _choice(variant, SA_VARIANTS, "self-attention variant", _VARIANT_ALIASES)
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"self-attention needs channels >= reduction >= 1, got {channels=} {reduction=}")
        self.channels = int(channels)
        self.key_channels = channels // reduction
        authors = self.variant == "authors"
        if authors and channels < 2:
            raise ValueError("the authors' self-attention variant needs channels >= 2 (value width C/2)")
        self.value_channels = channels // 2 if authors else channels
        self.spectral_norm = authors if spectral_norm is None else bool(spectral_norm)

        convs = {
            "query": nn.Conv2d(channels, self.key_channels, 1, bias=not authors),
            "key": nn.Conv2d(channels, self.key_channels, 1, bias=not authors),
            "value": nn.Conv2d(channels, self.value_channels, 1, bias=not authors),
        }
        if authors:
            convs["output"] = nn.Conv2d(self.value_channels, channels, 1, bias=False)
            for conv in convs.values():
                nn.init.xavier_uniform_(conv.weight)
        if self.spectral_norm:
            convs = {name: parametrizations.spectral_norm(conv) for name, conv in convs.items()}
        self.query = convs["query"]
        self.key = convs["key"]
        self.value = convs["value"]
        self.output: nn.Module | None = convs.get("output")
        self.gamma = nn.Parameter(torch.tensor(float(gamma_init)))

    def _keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, v = self.key(x), self.value(x)
        if self.variant == "authors":
            if x.shape[-2] % 2 or x.shape[-1] % 2:
                raise ValueError(f"the authors' self-attention pools 2x2: H and W must be even, got {tuple(x.shape)}")
            k, v = F.max_pool2d(k, 2), F.max_pool2d(v, 2)
        return k.flatten(2), v.flatten(2)  # [B, d_k, S], [B, C_v, S]

    def _attention(self, x: Tensor, k: Tensor) -> Tensor:
        q = self.query(x).flatten(2).transpose(1, 2)  # [B, T, d_k]
        scores = torch.bmm(q, k)  # [B, T, S]
        if self.score == "scaled_dot":
            scores = scores / math.sqrt(self.key_channels)
        return torch.softmax(scores, dim=-1)

    def attention(self, x: Tensor) -> Tensor:
        """The attention weights ``[B, T, S]``: row ``i`` (query position ``i``, row-major over ``H x W``)
        sums to 1 over the ``S`` key positions (``S = T``, or ``T/4`` for the authors' variant)."""
        k, _ = self._keys_values(x)
        return self._attention(x, k)

    def forward(self, x: Tensor) -> Tensor:
        """``x + gamma * o`` with ``o`` the attended values (through the output conv for ``authors``)."""
        b, _, h, w = x.shape
        k, v = self._keys_values(x)
        attn = self._attention(x, k)
        o = torch.bmm(v, attn.transpose(1, 2)).reshape(b, self.value_channels, h, w)
        if self.output is not None:
            o = self.output(o)
        return self.gamma * o + x

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, score={self.score!r}, variant={self.variant!r}, "
            f"key_channels={self.key_channels}, value_channels={self.value_channels}, "
            f"spectral_norm={self.spectral_norm}"
        )


class ChannelGate(nn.Module):
    """CBAM's channel attention: ``x * sigmoid(MLP(avgpool x) + MLP(maxpool x))``, one weight per channel."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"CBAM needs channels >= reduction >= 1, got {channels=} {reduction=}")
        hidden = channels // reduction
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def gate(self, x: Tensor) -> Tensor:
        """The channel weights ``[B, C, 1, 1]`` in (0, 1)."""
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        return torch.sigmoid(logits)[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class SpatialGate(nn.Module):
    """CBAM's spatial attention: ``x * sigmoid(BN(conv([max_c x, mean_c x])))``, one weight per pixel."""

    def __init__(self, kernel_size: int = 7, batch_norm: bool = True) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"CBAM spatial_kernel must be odd and positive, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
        self.bn: nn.Module | None = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01) if batch_norm else None

    def gate(self, x: Tensor) -> Tensor:
        """The pixel weights ``[B, 1, H, W]`` in (0, 1), shared by all channels."""
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        logits = self.conv(pooled)
        if self.bn is not None:
            logits = self.bn(logits)
        return torch.sigmoid(logits)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class CBAM(nn.Module):
    """Convolutional block attention: :class:`ChannelGate` then :class:`SpatialGate` (see the module doc).

    Args:
        channels: ``C``.
        reduction: the channel MLP's hidden width is ``C // reduction``.
        spatial_kernel: the spatial gate's odd conv size.
        spatial_bn: the official code's ``BatchNorm2d(1)`` after the spatial conv.
        use_channel, use_spatial: build that gate (off: the attribute is ``None`` and the step is skipped).
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        spatial_kernel: int = 7,
        spatial_bn: bool = True,
        use_channel: bool = True,
        use_spatial: bool = True,
    ) -> None:
        super().__init__()
        if not (use_channel or use_spatial):
            raise ValueError("CBAM with use_channel=False and use_spatial=False does nothing; use type 'none'")
        self.channel_gate: ChannelGate | None = ChannelGate(channels, reduction) if use_channel else None
        self.spatial_gate: SpatialGate | None = SpatialGate(spatial_kernel, spatial_bn) if use_spatial else None

    def forward(self, x: Tensor) -> Tensor:
        if self.channel_gate is not None:
            x = self.channel_gate(x)
        if self.spatial_gate is not None:
            x = self.spatial_gate(x)
        return x


_OPTIONS = {
    "sa": ("score", "variant", "reduction", "gamma_init", "spectral_norm"),
    "cbam": ("reduction", "spatial_kernel", "spatial_bn", "use_channel", "use_spatial"),
}


def build_attention(type: str, channels: int, **options: Any) -> nn.Module:
    """The attention block for a config: ``"none"`` -> ``nn.Identity()`` (options are ignored), ``"sa"`` ->
    :class:`SelfAttention`, ``"cbam"`` -> :class:`CBAM`, with ``options`` as their keyword arguments.

    Raises:
        ValueError: an unknown type, an option the type does not take, or a bad option value (the message
            names the option).
    """
    kind = _choice(type, ATTENTION_TYPES, "attention type")
    if kind == "none":
        return nn.Identity()
    allowed = _OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for attention type {kind!r}; allowed: {', '.join(allowed)}")
    if kind == "sa":
        return SelfAttention(channels, **options)
    return CBAM(channels, **options)

"""What the autoregressive density nets share ("Beyond CNNs" spec A5; PixelRNN's colour masks, spec A7).

Every net here models an RGB image as a sequence of sub-pixels in raster order over pixels and R, G, B within a
pixel, each a 256-way categorical over the 8-bit levels.

* ``forward(x)`` takes ``x`` ``[B,3,H,W]`` in [0,1] (on the 1/255 grid: :func:`quantize`) and returns the logits
  ``[B,3,256,H,W]`` of every sub-pixel under teacher forcing: the logits of sub-pixel ``t`` depend only on the
  sub-pixels before ``t`` (the causality every net's tests check).
* ``fill(x, hole, decoder)`` writes a value into every hole sub-pixel (``hole`` ``[B,H,W]`` bool) in raster/RGB
  order, each chosen by ``decoder`` from the logits given everything before it, and returns the filled image.
  Known sub-pixels are never written. :func:`naive_fill` is the reference: one full forward per generated
  sub-pixel. Each net overrides ``fill`` with a procedure that recomputes only what a sub-pixel depends on, and a
  test shows it chooses exactly the values of :func:`naive_fill`.

:class:`Decoder` turns logits into a value: ``argmax`` (the paper's greedy fill), ``sample`` (with temperature) or
``mean`` (the expected level, rounded to the grid). Sampling reads a uniform number drawn in advance for each
sub-pixel of each image (``noise`` ``[B,3,H,W]``), so the value a sub-pixel gets depends neither on the order in
which a procedure visits the sub-pixels nor on the batch: a fast and a naive fill sample the same image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint import progress

#: values of a sub-pixel (8-bit levels)
LEVELS = 256
DECODE_MODES = ("argmax", "sample", "mean")


def to_levels(x: Tensor) -> Tensor:
    """[0,1] floats -> int64 levels 0..255 (round to nearest)."""
    return (x.clamp(0.0, 1.0) * (LEVELS - 1)).round().long()


def from_levels(levels: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Levels 0..255 -> [0,1] floats on the 1/255 grid."""
    return levels.to(dtype) / (LEVELS - 1)


def quantize(x: Tensor) -> Tensor:
    """``x`` rounded to the 1/255 grid the nets see (a float image that did not come from 8 bits)."""
    return from_levels(to_levels(x), x.dtype)


def hole_pixels(hole: Tensor) -> Tensor:
    """Raster-ordered ``(row, col)`` pairs ``[N,2]`` of the pixels that are a hole in at least one image of the
    batch (``hole`` ``[B,H,W]`` bool)."""
    return hole.any(dim=0).nonzero()


class Decoder:
    """Chooses the value of sub-pixels from their logits.

    Args:
        mode: ``argmax`` | ``sample`` | ``mean``.
        temperature: ``sample`` draws from ``softmax(logits / temperature)``.
        noise: ``[B,3,H,W]`` uniform numbers in [0,1), one per sub-pixel of each image (``sample`` only); the
            drawn level is the first whose cumulative probability exceeds the sub-pixel's number.
        size: ``(H, W)`` of the images: each call reports the raster position reached to
            :func:`inpaint.progress.report` (when someone listens: the web app's progress bar and Stop button).
    """

    def __init__(self, mode: str = "argmax", temperature: float = 1.0, noise: Tensor | None = None,
                 size: tuple[int, int] | None = None) -> None:
        if mode not in DECODE_MODES:
            raise ValueError(f"decode={mode!r}: choose one of {', '.join(DECODE_MODES)}")
        if mode == "sample":
            if noise is None:
                raise ValueError("decode=sample needs the per-sub-pixel noise (Decoder(noise=...))")
            if not temperature > 0:
                raise ValueError(f"temperature={temperature}: give a positive number (1 = the model's distribution)")
        self.mode, self.temperature, self.noise = mode, float(temperature), noise
        self.size = size

    def __call__(self, logits: Tensor, b: Tensor, k: int, r: Tensor, c: Tensor) -> Tensor:
        """Levels (int64 ``[N]``) of sub-pixels ``(b[i], k, r[i], c[i])`` from their logits ``[N,256]``;
        ``r`` and ``c`` may be plain ints when all rows share a position."""
        if self.size is not None and progress.active():
            h, w = self.size
            row, col = int(torch.as_tensor(r).max()), int(torch.as_tensor(c).max())
            progress.report(row * w + col + 1, h * w, "pixel-by-pixel decoding (pixels)")
        if self.mode == "argmax":
            return logits.argmax(dim=-1)
        probs = F.softmax(logits.double() / (self.temperature if self.mode == "sample" else 1.0), dim=-1)
        if self.mode == "mean":
            return (probs @ torch.arange(LEVELS, device=probs.device, dtype=probs.dtype)).round().long()
        u = self.noise[b, k, r, c].to(probs)
        cdf = probs.cumsum(dim=-1)
        return torch.searchsorted(cdf, u[:, None], right=True).squeeze(1).clamp_max(LEVELS - 1)


class DensityNet(nn.Module):
    """Base of the nets: ``forward`` gives the teacher-forced logits; ``fill`` defaults to :func:`naive_fill`."""

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def fill(self, x: Tensor, hole: Tensor, decoder: Decoder) -> Tensor:
        return naive_fill(self, x, hole, decoder)


@torch.no_grad()
def naive_fill(net: nn.Module, x: Tensor, hole: Tensor, decoder: Decoder) -> Tensor:
    """The reference fill: for every hole sub-pixel in raster/RGB order, one forward of the whole working
    image, then the decoder's value for the images that have a hole there. ``x`` is not modified."""
    x = quantize(x).clone()
    for r, c in hole_pixels(hole).tolist():
        b = hole[:, r, c].nonzero().squeeze(1)
        for k in range(3):
            logits = net(x)[b, k, :, r, c]
            x[b, k, r, c] = from_levels(decoder(logits, b, k, r, c), x.dtype)
    return x


# ------------------------------------------------------------------------------------- colour masks
def colour_groups(channels: int, unit: int | None = None) -> Tensor:
    """The colour group (0 = R, 1 = G, 2 = B) of each of ``channels`` channels: contiguous thirds of every
    block of ``unit`` channels (default: the whole layer). A layer whose output holds several gates of ``h``
    units each uses ``unit=h``, so every gate is split R/G/B the same way."""
    unit = channels if unit is None else unit
    if unit % 3 or channels % unit:
        raise ValueError(f"{channels} channels in blocks of {unit} cannot be split into R/G/B thirds")
    return (torch.arange(channels) % unit) // (unit // 3)


def causal_mask(
    kernel: tuple[int, int], in_groups: Tensor, out_groups: Tensor, mask_type: str
) -> Tensor:
    """``[out, in, kh, kw]`` 0/1 mask of a PixelRNN masked convolution (its centre tap is the output pixel):
    rows above the centre and taps left of it in the centre row are open; at the centre, output group ``j``
    reads input group ``i`` when ``i < j`` (mask ``A``, the first layer) or ``i <= j`` (mask ``B``)."""
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type={mask_type!r}: 'A' (first layer) or 'B'")
    kh, kw = kernel
    cy, cx = kh // 2, kw // 2
    mask = torch.zeros(len(out_groups), len(in_groups), kh, kw)
    mask[:, :, :cy, :] = 1
    mask[:, :, cy, :cx] = 1
    allowed = in_groups[None, :] < out_groups[:, None] if mask_type == "A" else in_groups[None, :] <= out_groups[:, None]
    mask[:, :, cy, cx] = allowed.float()
    return mask


class MaskedConv2d(nn.Conv2d):
    """A convolution whose weight is multiplied by :func:`causal_mask` in every forward (so the masked taps get
    no gradient and never act, whatever an optimizer or a checkpoint does to them). Padding keeps the size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        mask_type: str = "B",
        in_unit: int | None = None,
        out_unit: int | None = None,
    ) -> None:
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        super().__init__(in_channels, out_channels, (kh, kw), padding=(kh // 2, kw // 2))
        mask = causal_mask((kh, kw), colour_groups(in_channels, in_unit), colour_groups(out_channels, out_unit),
                           mask_type)
        self.register_buffer("mask", mask, persistent=False)
        self.mask_type = mask_type

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

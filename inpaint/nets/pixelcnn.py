"""Window Pixel CNN: the "Pixel CNN" of "Beyond CNNs" (Jan & Noor 2024), spec ``cifar-models-and-scnn.md`` A6.

What the paper says: each sub-pixel is a 256-way softmax conditioned on the 24 pixels of the 5x5 square whose
bottom-right cell is the target pixel (the target itself excluded), so only context above and to the left is used;
the conditional is computed by a few conv layers with LeakyReLU and 50 % dropout, no pooling, and three softmax heads
(R, G, B), trained with cross-entropy and Adam.

How this module realises it, and what is our choice rather than the paper's:

* Convolutional form (spec A6) instead of running the layers on one cropped patch per pixel: the image is padded
  with ``window - 1`` zero rows on top and zero columns on the left, and a ``window x window`` valid convolution whose
  bottom-right tap is multiplied by 0 (a mask applied in every forward, so that tap can never act or learn) yields at
  every pixel a feature of exactly its causal window. The per-pixel fully connected layers become 1x1 convolutions,
  so one forward scores every sub-pixel of an image under teacher forcing.
* Zero padding is the border: a pixel near the top or left edge sees zeros where its window leaves the image.
* The widths (128 features, two hidden 1x1 layers) are a choice; the paper gives no sizes. Its "several conv
  layers" on the patch are read as one window-sized layer followed by per-pixel layers (the spec's other reading,
  small convs inside each cropped patch, is not built here).
* Colour order inside the pixel: the G head also reads the target's R value and the B head its R and G values (in
  [0,1]), which the R -> G -> B factorisation needs; the paper only says the heads are conditioned.
* ``window`` generalises the paper's 5 (24 neighbours); the target is always the bottom-right cell.

Filling (:meth:`WindowPixelCNN.fill`) exploits the small receptive field: a pixel's logits read only its own window
and its own earlier colours, so two pixels on one anti-diagonal (equal ``row + col``) never read each other. The fill
therefore visits the anti-diagonals in order and handles all hole pixels of a diagonal, of every image, in one batched
step on their gathered windows, with the same weights as :meth:`WindowPixelCNN.forward`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint.nets.autoregressive import LEVELS, Decoder, DensityNet, from_levels, quantize


def _pointwise(conv: nn.Conv2d, h: Tensor) -> Tensor:
    """A 1x1 convolution applied to channels-last features ``[..., in]`` as a matrix product."""
    return F.linear(h, conv.weight.flatten(1), conv.bias)


class WindowPixelCNN(DensityNet):
    """Autoregressive density net over sub-pixels whose conditional reads a causal ``window x window`` square.

    Layers: masked ``window x window`` conv 3 -> ``width``, then ``hidden_layers`` 1x1 convs ``width -> width``, each
    followed by LeakyReLU and dropout; heads are 1x1 convs to 256 logits: R from the features, G from the features
    and the target's R, B from the features and the target's R and G.

    Args:
        width: features per pixel in every layer before the heads.
        hidden_layers: 1x1 layers between the window conv and the heads (the spec's W2, W3).
        dropout: dropout probability after every LeakyReLU.
        negative_slope: slope of the LeakyReLU for negative inputs.
        window: side of the causal square; the target is its bottom-right cell (5 = the paper's 24 neighbours).
    """

    def __init__(
        self,
        width: int = 128,
        hidden_layers: int = 2,
        dropout: float = 0.5,
        negative_slope: float = 0.2,
        window: int = 5,
    ) -> None:
        super().__init__()
        for name, value, least in (("width", width, 1), ("hidden_layers", hidden_layers, 0), ("window", window, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name}={value!r}: give an integer >= {least}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout!r}: give a probability in [0, 1)")
        self.width, self.window = width, window
        self.window_conv = nn.Conv2d(3, width, window)
        mask = torch.ones(1, 1, window, window)
        mask[..., -1, -1] = 0.0  # the target pixel: its own value must never reach its logits
        self.register_buffer("mask", mask, persistent=False)
        self.hidden = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(hidden_layers))
        self.act = nn.LeakyReLU(negative_slope)
        self.drop = nn.Dropout(dropout)
        self.head_r = nn.Conv2d(width, LEVELS, 1)
        self.head_g = nn.Conv2d(width + 1, LEVELS, 1)
        self.head_b = nn.Conv2d(width + 2, LEVELS, 1)

    def _window_weight(self) -> Tensor:
        return self.window_conv.weight * self.mask

    def _trunk(self, h: Tensor) -> Tensor:
        """Channels-last window features ``[..., width]`` (before activation) -> the heads' input features."""
        h = self.drop(self.act(h))
        for layer in self.hidden:
            h = self.drop(self.act(_pointwise(layer, h)))
        return h

    def forward(self, x: Tensor) -> Tensor:
        """Teacher-forced logits ``[B,3,256,H,W]`` of every sub-pixel of ``x`` ``[B,3,H,W]`` in [0,1]."""
        pad = self.window - 1
        h = F.conv2d(F.pad(x, (pad, 0, pad, 0)), self._window_weight(), self.window_conv.bias)
        h = self._trunk(h.permute(0, 2, 3, 1))
        rg = x[:, :2].permute(0, 2, 3, 1)
        logits = torch.stack(
            [
                _pointwise(self.head_r, h),
                _pointwise(self.head_g, torch.cat([h, rg[..., :1]], dim=-1)),
                _pointwise(self.head_b, torch.cat([h, rg], dim=-1)),
            ],
            dim=1,
        )  # [B,3,H,W,256]
        return logits.permute(0, 1, 4, 2, 3)

    @torch.no_grad()
    def fill(self, x: Tensor, hole: Tensor, decoder: Decoder) -> Tensor:
        """Fill every hole sub-pixel in raster/RGB order, choosing each with ``decoder``; same values as
        :func:`~inpaint.nets.autoregressive.naive_fill`, one batched step per anti-diagonal of hole pixels.

        Uses the module as it is: call ``eval()`` first, or dropout acts on the fill too. ``x`` is not modified.
        """
        bsz, _, height, width = x.shape
        if hole.shape != (bsz, height, width):
            raise ValueError(f"hole {tuple(hole.shape)} does not match the images {tuple(x.shape)}: give [B,H,W]")
        pad = self.window - 1
        work = F.pad(quantize(x), (pad, 0, pad, 0))  # working image; pixel (r, c) sits at (r + pad, c + pad)
        b, r, c = hole.nonzero().unbind(1)
        if len(b):
            diagonal = r + c
            order = torch.argsort(diagonal, stable=True)
            counts = torch.unique_consecutive(diagonal[order], return_counts=True)[1]
            w1 = self._window_weight().flatten(1)  # [width, 3 * window^2] in the (channel, row, col) order of a patch
            taps = torch.arange(self.window, device=x.device)
            chans = torch.arange(3, device=x.device)
            for group in torch.split(order, counts.tolist()):
                bg, rg, cg = b[group], r[group], c[group]
                rows, cols = rg[:, None] + taps, cg[:, None] + taps  # padded coordinates of each window
                patch = work[bg[:, None, None, None], chans[None, :, None, None], rows[:, None, :, None],
                             cols[:, None, None, :]]
                h = self._trunk(F.linear(patch.flatten(1), w1, self.window_conv.bias))
                colours: list[Tensor] = []
                for k, head in enumerate((self.head_r, self.head_g, self.head_b)):
                    logits = _pointwise(head, torch.cat([h, *colours], dim=-1))
                    value = from_levels(decoder(logits, bg, k, rg, cg), work.dtype)
                    work[bg, k, rg + pad, cg + pad] = value
                    colours.append(value[:, None].to(h.dtype))
        return work[:, :, pad:, pad:].contiguous()

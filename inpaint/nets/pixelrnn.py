"""PixelRNN density nets: Row LSTM and Diagonal BiLSTM (van den Oord et al. 2016; spec A7).

Both nets follow the :class:`~inpaint.nets.autoregressive.DensityNet` contract: ``forward`` gives the teacher-forced
logits ``[B,3,256,H,W]`` of every sub-pixel, ``fill`` writes the hole sub-pixels in raster/RGB order.

Architecture (the layer plan of spec A7; every feature map is split into R/G/B thirds, the colour masks of
:class:`~inpaint.nets.autoregressive.MaskedConv2d`):

* ``L0``: 7x7 convolution, mask A, 3 -> 2h.
* ``K`` residual blocks: an input-to-state (i-s) masked convolution 2h -> 4h gives the four gates o, f, i, g (each
  gate's h units are split R/G/B alike), a state-to-state (s-s) convolution h -> 4h of the hidden state already
  computed, the LSTM update ``c = sig(f)*c_prev + sig(i)*tanh(g)``, ``h = sig(o)*tanh(c)``, then a 1x1 mask-B
  convolution h -> 2h added to the block input.
* Head: ReLU, 1x1 mask B 2h -> 2h, ReLU, 1x1 mask B 2h -> 3*256 (output third ``k`` holds colour ``k``'s logits).

The variants differ in the recurrence of the blocks:

* Row LSTM: i-s is a 1x3 mask-B convolution along the row (taps ``c-1`` and ``c``), s-s a 1x3 convolution of the
  hidden state of the row above; the state ``(h, c)`` of pixel ``(r, c)`` follows from that of ``(r-1, c)``.
  Within a row the receptive field grows one column to the left per block.
* Diagonal BiLSTM: i-s is a 1x1 mask-B convolution; the map is skewed (row ``r`` shifted right by ``r``) so that a
  column of the skewed map is a diagonal of the image, and s-s is a 2-tap convolution of the previous skewed
  column: pixel ``(r, c)`` reads the hidden states of ``(r-1, c)`` and ``(r, c-1)`` and the cell state of
  ``(r, c-1)``. A second LSTM with its own weights runs on the width-mirrored map (so it reads ``(r-1, c)`` and
  ``(r, c+1)``, i.e. the rest of its row: not causal); its output is mirrored back and shifted down one row (zero
  first row), which makes it causal, and added to the first direction's hidden state before the 1x1 output layer.

Taken from PixelRNN / the spec: the layer plan, kernel shapes, masks, skew and the down-shift of the reverse
direction. Sizes are the project's choice (spec A9 row 15): ``hidden`` h = 96 (so 2h = 192 splits into three
groups of 64), ``layers`` K = 4; the paper's CIFAR-10 depth of 12 blocks is ``layers=12``.

Fast fills (``fill``; the network is causal, so rows below the row being generated never matter):

* Row LSTM: every block's state at row ``r-1`` summarises all of rows ``< r``. The fill runs the rows above the
  first hole row once and caches each block's ``(h, c)`` of the last row; for a hole sub-pixel ``(r, c, k)`` it
  recomputes row ``r`` only on columns ``c-K .. c`` (within a row, block ``j`` reads one more column to the left,
  so after K blocks column ``c`` is exact even though the window's left columns are not), reading the cached row
  ``r-1`` for s-s and the image rows ``r-3 .. r`` for L0: O(K^2) work per sub-pixel. After a row (and through
  rows without holes) the cache advances with one batched pass.
* Diagonal BiLSTM: the spec suggests re-running the cropped net per sub-pixel, because the reverse direction makes
  row ``r`` depend on all of row ``r-1``. But both directions carry their cell state along the row only, so the
  rows above reach row ``r`` only through each direction's hidden state of row ``r-1``, which is final while row
  ``r`` is generated. The fill caches those per block, and within a hole row steps the forward direction left to
  right one pixel at a time (a pixel's state needs only its left neighbour's ``(h, c)``, the cached ``h`` above
  and the cached reverse output above): O(K) work per sub-pixel. Per hole row, one such step for each column up to
  the row's last hole column carries the left state once a pixel is final, and one O(K*W) pass over the final row
  (both directions) advances the cache.

Both fills choose exactly the values of :func:`~inpaint.nets.autoregressive.naive_fill` (up to floating-point
rounding of the same sums in another order; the tests compare them in float64).
"""

from __future__ import annotations

from itertools import groupby

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .autoregressive import LEVELS, Decoder, DensityNet, MaskedConv2d, from_levels, hole_pixels, quantize

#: L0 kernel size (7x7, mask A) and the number of image rows above a pixel it reads
L0_KERNEL = 7
L0_REACH = L0_KERNEL // 2


def _lstm(gates: Tensor, c_prev: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM update from the pre-activations (gates o, f, i, g stacked on dim 1) and the previous cell state."""
    o, f, i, g = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _skew(t: Tensor) -> Tensor:
    """``[N,C,n,W] -> [N,C,n,W+n-1]``: row ``i`` shifted right by ``i``, zeros elsewhere."""
    N, C, n, W = t.shape
    flat = F.pad(t, (0, n)).flatten(2)  # row i starts at i*(W+n) = i*(W+n-1) + i
    return flat[:, :, : n * (W + n - 1)].reshape(N, C, n, W + n - 1)


def _unskew(t: Tensor, width: int) -> Tensor:
    """Inverse of :func:`_skew`: ``[N,C,n,W+n-1] -> [N,C,n,W]``."""
    N, C, n, _ = t.shape
    flat = F.pad(t.flatten(2), (0, n))
    return flat.reshape(N, C, n, width + n)[..., :width]


def _subset(b: Tensor, n: int) -> Tensor | None:
    """The images ``b`` of a batch of ``n`` as an index, or None when they are all of them (no gather needed)."""
    return None if len(b) == n else b


def _take(t: Tensor, b: Tensor | None) -> Tensor:
    return t if b is None else t[b]


class _PixelRNN(DensityNet):
    """What both variants share: L0, the head and the windowed L0 the fills use."""

    def __init__(self, hidden: int, layers: int) -> None:
        super().__init__()
        if hidden <= 0 or hidden % 3:
            raise ValueError(f"hidden={hidden}: give a positive multiple of 3 (each gate is split R/G/B)")
        if layers < 1:
            raise ValueError(f"layers={layers}: give at least one LSTM block")
        self.hidden, self.layers = hidden, layers
        self.l0 = MaskedConv2d(3, 2 * hidden, L0_KERNEL, "A")
        self.head1 = MaskedConv2d(2 * hidden, 2 * hidden, 1, "B")
        self.head2 = MaskedConv2d(2 * hidden, 3 * LEVELS, 1, "B")

    def _l0(self, x: Tensor, r0: int, r1: int, c0: int, c1: int, b: Tensor | None = None) -> Tensor:
        """L0's output on rows ``[r0, r1)`` and columns ``[c0, c1)`` (of the images ``b``), from the image rows
        ``r0-3 .. r1-1`` only (the mask closes the rows below), zero-padded at the image border like the full
        convolution."""
        W = x.shape[-1]
        top, left, right = min(r0, L0_REACH), min(c0, L0_REACH), min(W - c1, L0_REACH)
        xs = _take(x[:, :, r0 - top : r1, c0 - left : c1 + right], b)
        xs = F.pad(xs, (L0_REACH - left, L0_REACH - right, L0_REACH - top, 0))
        weight = (self.l0.weight * self.l0.mask)[:, :, : L0_REACH + 1]
        return F.conv2d(xs, weight, self.l0.bias)

    def _logits(self, feats: Tensor) -> Tensor:
        """Block features ``[N,2h,n,m]`` -> logits ``[N,3,256,n,m]``."""
        out = self.head2(F.relu(self.head1(F.relu(feats))))
        return out.view(out.shape[0], 3, LEVELS, *out.shape[2:])


# ------------------------------------------------------------------------------------------------ Row LSTM
class _RowBlock(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.i_s = MaskedConv2d(2 * h, 4 * h, (1, 3), "B", out_unit=h)
        self.s_s = nn.Conv1d(h, 4 * h, 3, bias=False)  # over the row above, which the caller pads
        self.out = MaskedConv2d(h, 2 * h, 1, "B")


class RowLSTMNet(_PixelRNN):
    """PixelRNN Row LSTM (see the module docstring).

    Args:
        hidden: LSTM units h per block (a multiple of 3); L0, the blocks' outputs and the head have 2h channels.
        layers: number of Row LSTM blocks K.
    """

    def __init__(self, hidden: int = 96, layers: int = 4) -> None:
        super().__init__(hidden, layers)
        self.blocks = nn.ModuleList(_RowBlock(hidden) for _ in range(layers))

    def _zero_states(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        N, W = x.shape[0], x.shape[-1]
        h = x.new_zeros(N, self.hidden, W + 2)
        return [(h, x.new_zeros(N, self.hidden, W)) for _ in self.blocks]

    def _run(
        self,
        x: Tensor,
        r0: int,
        r1: int,
        c0: int,
        c1: int,
        states: list[tuple[Tensor, Tensor]],
        b: Tensor | None = None,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Block features ``[N,2h,r1-r0,c1-c0]`` of rows ``[r0, r1)``, columns ``[c0, c1)``, given each block's
        state of row ``r0-1``: ``(h, c)`` with ``h`` zero-padded by one column each side (``[N,h,c1-c0+2]``),
        ``c`` ``[N,h,c1-c0]``. Returns the features and the states of row ``r1-1``.

        A window narrower than the image is for a single row: its left ``K`` columns are wrong (their left
        neighbours are missing) but the last column is exact; the returned states are then meaningless."""
        feats = self._l0(x, r0, r1, c0, c1, b)
        new_states = []
        for block, (h_pad, cell) in zip(self.blocks, states, strict=True):
            gates = block.i_s(feats)  # 1x3 along the row, for all rows at once
            rows = []
            for i in range(r1 - r0):
                h, cell = _lstm(gates[:, :, i] + block.s_s(h_pad), cell)
                h_pad = F.pad(h, (1, 1))
                rows.append(h)
            feats = feats + block.out(torch.stack(rows, dim=2))
            new_states.append((h_pad, cell))
        return feats, new_states

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        feats, _ = self._run(x, 0, H, 0, W, self._zero_states(x))
        return self._logits(feats)

    @torch.no_grad()
    def fill(self, x: Tensor, hole: Tensor, decoder: Decoder) -> Tensor:
        x = quantize(x).clone()
        W = x.shape[-1]
        K = len(self.blocks)
        states = self._zero_states(x)
        done = 0  # rows [0, done) are final and `states` holds row done-1
        for r, row in groupby(hole_pixels(hole).tolist(), key=lambda p: p[0]):
            if r > done:
                _, states = self._run(x, done, r, 0, W, states)
            for _, c in row:
                b = hole[:, r, c].nonzero().squeeze(1)
                sel = _subset(b, x.shape[0])
                c0 = max(0, c - K)
                window = [(_take(h_pad[:, :, c0 : c + 3], sel), _take(cell[:, :, c0 : c + 1], sel))
                          for h_pad, cell in states]
                for k in range(3):
                    feats, _ = self._run(x, r, r + 1, c0, c + 1, window, sel)
                    logits = self._logits(feats[..., -1:])[:, k, :, 0, 0]
                    x[b, k, r, c] = from_levels(decoder(logits, b, k, r, c), x.dtype)
            _, states = self._run(x, r, r + 1, 0, W, states)
            done = r + 1
        return x


# ----------------------------------------------------------------------------------------- Diagonal BiLSTM
class _DiagonalLSTM(nn.Module):
    """One direction: i-s 1x1 mask B; s-s taps ``[0]`` the pixel above, ``[1]`` the pixel to the left."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.i_s = MaskedConv2d(2 * h, 4 * h, 1, "B", out_unit=h)
        self.s_s = nn.Conv1d(h, 4 * h, 2, bias=False)

    def run(self, gates: Tensor, above: Tensor) -> Tensor:
        """Hidden states ``[N,h,n,W]`` of a band of ``n`` rows from their i-s pre-activations ``[N,4h,n,W]`` and
        the hidden state of the row above the band ``[N,h,W]`` (zeros above the image); the left of each row
        starts from a zero state.

        The loop runs over the columns of the skewed band. A skewed position left of its row's start (zero i-s,
        zero neighbours, no s-s bias) keeps a zero state, which is the zero left boundary; positions right of a
        row's end are computed but never read by a pixel."""
        N, _, n, W = gates.shape
        skewed = _skew(gates).movedim(-1, 0).contiguous()  # [W+n-1,N,4h,n]: each step reads a contiguous column
        above = F.pad(above, (0, n - 1)).movedim(-1, 0)[:, :, :, None]  # row 0 sits at skewed column = column
        h = gates.new_zeros(N, above.shape[2], n)
        c = torch.zeros_like(h)
        out = []
        for j in range(skewed.shape[0]):
            up_left = torch.cat([above[j], h], dim=2)  # entry i+1's upper neighbour is entry i
            h, c = _lstm(skewed[j] + self.s_s(up_left), c)
            out.append(h)
        return _unskew(torch.stack(out, dim=-1), W)


class _DiagonalBlock(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.fwd = _DiagonalLSTM(h)
        self.rev = _DiagonalLSTM(h)
        self.out = MaskedConv2d(h, 2 * h, 1, "B")


class DiagonalBiLSTMNet(_PixelRNN):
    """PixelRNN Diagonal BiLSTM (see the module docstring).

    Args:
        hidden: LSTM units h per direction and block (a multiple of 3); L0, the blocks' outputs and the head
            have 2h channels.
        layers: number of Diagonal BiLSTM blocks K.
    """

    #: shift the reverse direction down one row (what makes it causal; tests turn it off to see them fail)
    _shift_reverse = True

    def __init__(self, hidden: int = 96, layers: int = 4) -> None:
        super().__init__(hidden, layers)
        self.blocks = nn.ModuleList(_DiagonalBlock(hidden) for _ in range(layers))

    def _zero_states(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        h = x.new_zeros(x.shape[0], self.hidden, x.shape[-1])
        return [(h, h) for _ in self.blocks]

    def _run(
        self, x: Tensor, r0: int, r1: int, states: list[tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Block features ``[N,2h,r1-r0,W]`` of rows ``[r0, r1)`` given each block's ``(forward h, reverse h)``
        of row ``r0-1`` (``[N,h,W]`` each); returns them and the states of row ``r1-1``."""
        feats = self._l0(x, r0, r1, 0, x.shape[-1])
        new_states = []
        for block, (above_f, above_r) in zip(self.blocks, states, strict=True):
            h_f = block.fwd.run(block.fwd.i_s(feats), above_f)
            h_r = block.rev.run(block.rev.i_s(feats).flip(-1), above_r.flip(-1)).flip(-1)
            shifted = torch.cat([above_r[:, :, None], h_r[:, :, :-1]], dim=2) if self._shift_reverse else h_r
            feats = feats + block.out(h_f + shifted)
            new_states.append((h_f[:, :, -1], h_r[:, :, -1]))
        return feats, new_states

    def _step(
        self,
        x: Tensor,
        r: int,
        c: int,
        states: list[tuple[Tensor, Tensor]],
        left: list[tuple[Tensor, Tensor]],
        b: Tensor | None = None,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Block features ``[N,2h,1,1]`` of pixel ``(r, c)`` (images ``b``) from the cached states of row
        ``r-1`` and each block's forward ``(h, c)`` of pixel ``(r, c-1)`` (``left``, ``[N,h]`` each, already
        restricted to ``b``); returns them and the forward ``(h, c)`` of ``(r, c)``."""
        feats = self._l0(x, r, r + 1, c, c + 1, b)
        new_left = []
        for block, (above_f, above_r), (h_left, c_left) in zip(self.blocks, states, left, strict=True):
            above_f, above_r = _take(above_f[:, :, c], b), _take(above_r[:, :, c], b)
            up_left = torch.stack([above_f, h_left], dim=2)
            h, cell = _lstm(block.fwd.i_s(feats)[:, :, 0, 0] + block.fwd.s_s(up_left)[:, :, 0], c_left)
            feats = feats + block.out((h + above_r)[:, :, None, None])
            new_left.append((h, cell))
        return feats, new_left

    def forward(self, x: Tensor) -> Tensor:
        feats, _ = self._run(x, 0, x.shape[-2], self._zero_states(x))
        return self._logits(feats)

    @torch.no_grad()
    def fill(self, x: Tensor, hole: Tensor, decoder: Decoder) -> Tensor:
        x = quantize(x).clone()
        zero = x.new_zeros(x.shape[0], self.hidden)
        states = self._zero_states(x)
        done = 0  # rows [0, done) are final and `states` holds row done-1
        for r, row in groupby(hole_pixels(hole).tolist(), key=lambda p: p[0]):
            if r > done:
                _, states = self._run(x, done, r, states)
            cols = [c for _, c in row]
            left = [(zero, zero) for _ in self.blocks]
            for c in range(cols[-1] + 1):
                if c in cols:
                    b = hole[:, r, c].nonzero().squeeze(1)
                    sel = _subset(b, x.shape[0])
                    left_b = [(_take(h, sel), _take(cell, sel)) for h, cell in left]
                    for k in range(3):
                        feats, _ = self._step(x, r, c, states, left_b, sel)
                        logits = self._logits(feats)[:, k, :, 0, 0]
                        x[b, k, r, c] = from_levels(decoder(logits, b, k, r, c), x.dtype)
                if c < cols[-1]:  # pixel (r, c) is final in every image: carry its state to the right
                    _, left = self._step(x, r, c, states, left)
            _, states = self._run(x, r, r + 1, states)
            done = r + 1
        return x

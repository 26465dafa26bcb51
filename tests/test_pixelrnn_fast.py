"""The fast PixelRNN nets (issue 19) against the implementation they replaced.

``ReferenceRowLSTMNet`` and ``ReferenceDiagonalBiLSTMNet`` below are the code of ``inpaint/nets/pixelrnn.py`` before
issue 19 (commit 2db610d), copied verbatim but for the class names: per-row / per-skewed-column Python loops over
``nn.Conv1d``/``MaskedConv2d`` modules, the skew done with a padded copy, the two directions of the BiLSTM run one
after the other. ``experiments/pixelrnn_bench.py`` times them against the new nets.

The new nets load the reference's state dict (strict: same keys and shapes, so existing checkpoints load) and must
give the same logits and the same gradient for every parameter (and the input). The arithmetic is not the same (the
i-s taps the mask closes are never computed, the bias of the i-s joins the s-s product, the weight gradients are one
product over all steps, float32 products run on oneDNN), so they are not bitwise equal: the comparison is in float64
with ``rtol = atol = 1e-12`` (the differences seen are ~1e-15), and in float32 (the oneDNN path) with
``rtol = 1e-4, atol = 1e-5``. The fills must choose exactly the same values, from logits equal to 1e-12.
"""

from __future__ import annotations

from itertools import groupby

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inpaint.nets.autoregressive import (
    LEVELS,
    Decoder,
    DensityNet,
    MaskedConv2d,
    from_levels,
    hole_pixels,
    quantize,
    to_levels,
)
from inpaint.nets.pixelrnn import DiagonalBiLSTMNet, RowLSTMNet

# ============================================================================ the reference: the nets before issue 19
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


class _ReferencePixelRNN(DensityNet):
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
class _ReferenceRowBlock(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.i_s = MaskedConv2d(2 * h, 4 * h, (1, 3), "B", out_unit=h)
        self.s_s = nn.Conv1d(h, 4 * h, 3, bias=False)  # over the row above, which the caller pads
        self.out = MaskedConv2d(h, 2 * h, 1, "B")


class ReferenceRowLSTMNet(_ReferencePixelRNN):
    """PixelRNN Row LSTM as it was before issue 19 (the reference).

    Args:
        hidden: LSTM units h per block (a multiple of 3); L0, the blocks' outputs and the head have 2h channels.
        layers: number of Row LSTM blocks K.
    """

    def __init__(self, hidden: int = 96, layers: int = 4) -> None:
        super().__init__(hidden, layers)
        self.blocks = nn.ModuleList(_ReferenceRowBlock(hidden) for _ in range(layers))

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
class _ReferenceDiagonalLSTM(nn.Module):
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


class _ReferenceDiagonalBlock(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.fwd = _ReferenceDiagonalLSTM(h)
        self.rev = _ReferenceDiagonalLSTM(h)
        self.out = MaskedConv2d(h, 2 * h, 1, "B")


class ReferenceDiagonalBiLSTMNet(_ReferencePixelRNN):
    """PixelRNN Diagonal BiLSTM as it was before issue 19 (the reference).

    Args:
        hidden: LSTM units h per direction and block (a multiple of 3); L0, the blocks' outputs and the head
            have 2h channels.
        layers: number of Diagonal BiLSTM blocks K.
    """

    #: shift the reverse direction down one row (what makes it causal; tests turn it off to see them fail)
    _shift_reverse = True

    def __init__(self, hidden: int = 96, layers: int = 4) -> None:
        super().__init__(hidden, layers)
        self.blocks = nn.ModuleList(_ReferenceDiagonalBlock(hidden) for _ in range(layers))

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


# ============================================================================ the tests
KINDS = {"row": (RowLSTMNet, ReferenceRowLSTMNet), "diagonal": (DiagonalBiLSTMNet, ReferenceDiagonalBiLSTMNet)}
#: float64 tolerance of the comparisons (the same sums in another order differ by ~1e-15)
TOL = {"rtol": 1e-12, "atol": 1e-12}


def pair(kind: str, hidden: int = 6, layers: int = 2, seed: int = 0, dtype=torch.float64):
    """A reference net with random weights (scaled up so that the gates are not all near 0.5) and a new net
    holding the same weights."""
    torch.manual_seed(seed)
    ref = KINDS[kind][1](hidden, layers).to(dtype)
    for p in ref.parameters():
        p.data.mul_(2.0)
    new = KINDS[kind][0](hidden, layers).to(dtype)
    new.load_state_dict(ref.state_dict())  # strict
    return new, ref


def images(n: int, h: int, w: int, seed: int = 1, dtype=torch.float64) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g).to(dtype) / 255


def logits_and_grads(net: nn.Module, x: Tensor, seed: int = 2) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    """Logits, every parameter's gradient and the input's gradient of a training loss (cross-entropy against
    random levels plus a random projection of the logits, so that every logit gets its own gradient)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, LEVELS, (x.shape[0], 3, *x.shape[2:]), generator=g)
    x = x.clone().requires_grad_()
    net.zero_grad(set_to_none=True)
    logits = net(x)
    proj = torch.randn(logits.shape, generator=g, dtype=logits.dtype)
    loss = F.cross_entropy(logits.transpose(1, 2), target) + (logits * proj).mean()
    loss.backward()
    return logits.detach(), {k: p.grad for k, p in net.named_parameters()}, x.grad


def assert_same(new: nn.Module, ref: nn.Module, x: Tensor, **tol) -> None:
    tol = tol or TOL
    y_new, g_new, dx_new = logits_and_grads(new, x)
    y_ref, g_ref, dx_ref = logits_and_grads(ref, x)
    torch.testing.assert_close(y_new, y_ref, **tol)
    assert g_new.keys() == g_ref.keys()
    for name in g_ref:
        torch.testing.assert_close(g_new[name], g_ref[name], **tol, msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(dx_new, dx_ref, **tol)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_keys_and_shapes_unchanged(kind: str) -> None:
    for hidden, layers in [(96, 4), (6, 2)]:
        new, ref = KINDS[kind][0](hidden, layers), KINDS[kind][1](hidden, layers)
        assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}


# (batch, rows, columns, hidden, layers): non-square both ways, a single row, a single column, one block
SHAPES = [(2, 8, 11, 6, 2), (2, 9, 4, 12, 2), (3, 5, 1, 3, 1), (2, 1, 7, 6, 3), (1, 6, 6, 9, 3)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_logits_and_gradients_equal_the_reference(kind: str, shape: tuple[int, ...]) -> None:
    n, h, w, hidden, layers = shape
    new, ref = pair(kind, hidden, layers)
    assert_same(new, ref, images(n, h, w))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_default_size_equals_the_reference(kind: str) -> None:
    """The configs' size (hidden 96, 4 blocks) on 32x32 images, float64."""
    new, ref = pair(kind, 96, 4)
    assert_same(new, ref, images(2, 32, 32))


@pytest.mark.parametrize("kind", KINDS)
def test_float32_close_to_the_reference(kind: str) -> None:
    """float32 runs the products on oneDNN (where available), float64 on torch.mm: compare that path too, to
    1e-4 of each tensor's largest entry."""
    new, ref = pair(kind, 12, 2, dtype=torch.float32)
    x = images(2, 12, 10, dtype=torch.float32)
    y_new, g_new, dx_new = logits_and_grads(new, x)
    y_ref, g_ref, dx_ref = logits_and_grads(ref, x)
    for name, a, b in [("logits", y_new, y_ref), ("input", dx_new, dx_ref), *((k, g_new[k], g_ref[k]) for k in g_ref)]:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item(), msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_float32_default_size_as_accurate_as_the_reference(kind: str) -> None:
    """At the configs' size float32 rounding is amplified through the 32 steps of 4 blocks (with these weights the
    float32 reference is ~5 % of a tensor's largest entry from float64), so compare accuracy: the new net's
    float32 logits and gradients are as close to the float64 ones as the reference's float32 ones are."""
    new, ref = pair(kind, 96, 4, dtype=torch.float32)
    _, ref64 = pair(kind, 96, 4, dtype=torch.float64)
    x = images(2, 32, 32, dtype=torch.float32)
    y_new, g_new, dx_new = logits_and_grads(new, x)
    y_ref, g_ref, dx_ref = logits_and_grads(ref, x)
    y_64, g_64, dx_64 = logits_and_grads(ref64, x.double())
    pairs = [("logits", y_new, y_ref, y_64), ("input", dx_new, dx_ref, dx_64),
             *((k, g_new[k], g_ref[k], g_64[k]) for k in g_ref)]
    for name, a, b, c in pairs:
        err_new, err_ref = (a.double() - c).abs().max().item(), (b.double() - c).abs().max().item()
        assert err_new <= 1.25 * err_ref + 1e-7, (name, err_new, err_ref)


def test_masks_changed_in_place_are_obeyed() -> None:
    """Masks changed in place act as in the reference: the Row LSTM skips the i-s taps its mask closes, read from
    the mask (cached per version of the mask), so opening the right tap of a block's i-s must reach the output;
    also giving L0 mask B, closing part of the head and of an i-s, or not shifting the reverse direction."""
    x = images(2, 7, 9)
    new, ref = pair("row")
    assert_same(new, ref, x)  # fills the caches
    for net in (new, ref):
        net.blocks[1].i_s.mask[:, :, 0, 2] = 1
        net.l0.mask[:, :, 3, 3] = 1
        net.head2.mask[: LEVELS // 2] = 0
        net.blocks[0].i_s.mask[5:9, :, 0, 0] = 0
    assert_same(new, ref, x)
    new, ref = pair("diagonal")
    assert_same(new, ref, x)
    for net in (new, ref):
        net._shift_reverse = False
        net.blocks[0].rev.i_s.mask[:, :4] = 0
        net.head1.mask[3:5, 7] = 0
    assert_same(new, ref, x)


class Recorder(Decoder):
    """A decoder that also keeps the logits it was given for every ``(image, colour, row, col)``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[tuple[int, int, int, int], Tensor] = {}

    def __call__(self, logits, b, k, r, c):
        for i, bi in enumerate(b.tolist()):
            self.seen[(bi, k, int(r), int(c))] = logits[i].clone()
        return super().__call__(logits, b, k, r, c)


@pytest.mark.parametrize("kind", KINDS)
def test_fills_equal_the_reference(kind: str) -> None:
    """The fills (the Row LSTM's row cache, the Diagonal BiLSTM's cached rows and left-to-right steps) choose the
    same values from the same logits as the reference's."""
    new, ref = pair(kind, 6, 2, seed=3)
    x = images(3, 8, 9, seed=4)
    hole = torch.zeros(3, 8, 9, dtype=torch.bool)
    hole[0, 3:6, 2:6] = True
    hole[1, 0, :2] = hole[1, 4, 8] = True
    hole[2] = torch.rand(8, 9, generator=torch.Generator().manual_seed(5)) < 0.2
    noise = torch.rand(3, 3, 8, 9, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for mode in ("argmax", "sample", "mean"):
        dec_new, dec_ref = Recorder(mode, noise=noise), Recorder(mode, noise=noise)
        filled = new.fill(x, hole, dec_new)
        assert torch.equal(filled, ref.fill(x, hole, dec_ref))
        assert dec_new.seen.keys() == dec_ref.seen.keys() and dec_new.seen
        for key, logits in dec_ref.seen.items():
            torch.testing.assert_close(dec_new.seen[key], logits, **TOL)
        assert (to_levels(filled) != to_levels(x))[hole[:, None].expand_as(x)].float().mean() > 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_autocast_trains(kind: str) -> None:
    """Under bf16 autocast (what ``precision=bf16-mixed`` runs) a training step works: the recurrences run in the
    dtype autocast gives the i-s products, the parameters get float32 gradients close to the float32 ones."""
    torch.manual_seed(0)
    net = KINDS[kind][0](6, 2)
    x = images(2, 6, 7, dtype=torch.float32)
    _, g32, _ = logits_and_grads(net, x)
    g32 = {k: v.clone() for k, v in g32.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, g16, _ = logits_and_grads(net, x)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits.float()).all()
    for name, g in g16.items():
        assert g.dtype == torch.float32 and torch.isfinite(g).all(), name
        assert F.cosine_similarity(g.flatten(), g32[name].flatten(), dim=0) > 0.95, name

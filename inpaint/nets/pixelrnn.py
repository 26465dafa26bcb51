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

How the nets are computed (the arithmetic of the layers above, arranged for speed; issue 19):

* Inside the blocks the feature maps are laid out ``[rows, columns, batch, channels]`` (the *rows layout*), so that
  an image row (Row LSTM) or a skewed column (Diagonal BiLSTM) is one contiguous matrix with a row per pixel and
  image, and every convolution of a block is a matrix product: the 1x1 convolutions directly, the 1x3 i-s as one
  product of the taps its mask opens stacked on the channels (the right tap of mask B is closed, so it is never
  computed), the s-s convolutions as one product of the weights with the stacked taps of the previous step's
  hidden state.
* The Row LSTM does a row's i-s and s-s as one product (the inputs of both stacked per pixel, the weights side by
  side); the Diagonal BiLSTM computes the i-s products of all steps at once before the recurrence. Each block is one
  :class:`torch.autograd.Function` (:class:`_RowBlockFn`, :class:`_DiagonalBlockFn`) that writes every step into
  preallocated buffers and whose backward walks the steps in reverse (the LSTM derivatives by hand, with
  autograd's own sigmoid/tanh derivative kernels; one product per step for the gradient of the previous state)
  and forms each weight gradient in a single product over all steps at the end. Nothing per step is left to
  autograd (its slicing of the per-step inputs zero-filled a full-size gradient for every step). The Row LSTM
  blocks take their large work buffers from a per-net pool (:class:`_BufferPool`) that keeps them from one
  training step to the next: freshly allocated, maps this large cost a page fault per 4 KB page on first touch.
* The skew of the Diagonal BiLSTM is a fixed permutation of the pixels (:class:`_DiagonalPlan`): the pixels are
  gathered in the order of the skewed columns (diagonal ``j = r + c``, rows ``max(0, j-W+1) .. min(n-1, j)``), so
  that skewed column ``j`` is one contiguous block and the recurrence touches only the ``n*W`` real positions,
  never the zero padding of the skewed map (which only ever holds the zero state left of a row's start, or values
  no pixel reads right of its end). Unskewing is the inverse permutation. The two directions are batched in one
  recurrence along a leading dimension (the mirrored direction is the same permutation of the width-mirrored
  map, each direction with its own weights); mirroring back is folded into the inverse permutation.
* On the CPU in float32/bfloat16 the products run on oneDNN (:func:`_mm_t`, :func:`_dw`), as the convolutions of
  the implementation before issue 19 did: ``torch.mm`` calls MKL's sgemm, which runs at about half of oneDNN's
  speed on AMD CPUs. The head's last product runs image by image with the weight on the left, so that the logits
  come out channels first without transposing them.

The outputs and gradients equal those of the implementation before issue 19 up to rounding (the same sums in
another order); ``tests/test_pixelrnn_fast.py`` keeps that implementation and compares them.

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

import weakref
from collections.abc import Callable
from functools import lru_cache
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


def _subset(b: Tensor, n: int) -> Tensor | None:
    """The images ``b`` of a batch of ``n`` as an index, or None when they are all of them (no gather needed)."""
    return None if len(b) == n else b


def _take(t: Tensor, b: Tensor | None) -> Tensor:
    return t if b is None else t[b]


def _to_rows(t: Tensor) -> Tensor:
    """``[N,C,n,W]`` -> ``[n,W,N,C]`` (contiguous): the layout of the maps inside the blocks."""
    return t.permute(2, 3, 0, 1).contiguous()


def _masked_weight(conv: MaskedConv2d) -> Tensor:
    return conv.weight * conv.mask


def _open_taps(conv: MaskedConv2d) -> tuple[int, ...]:
    """The columns of a one-row kernel's mask ``[out,in,1,kw]`` that are not all zero: the taps that can act (mask
    B never opens the right tap of the Row LSTM's i-s). Read from the mask itself, so a mask changed in place (as
    a test does) is obeyed; recomputed only when the mask changes (its version, or a move to another device), so
    that a GPU run does not wait for it every step."""
    mask = conv.mask
    key = (mask._version, mask.data_ptr(), mask.device)
    cache = conv.__dict__.get("_open_taps")
    if cache is None or cache[0] != key:
        taps = tuple(k for k in range(mask.shape[-1]) if bool(mask[..., k].any()))
        cache = conv.__dict__["_open_taps"] = (key, taps)
    return cache[1]


def _cast(dtype: torch.dtype, *ts: Tensor) -> tuple[Tensor, ...]:
    return tuple(t.to(dtype) for t in ts)


# ------------------------------------------------------------------------------------------------ matrix products
def _onednn_linear() -> Callable[..., Tensor] | None:
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return None
    return op if torch.backends.mkldnn.is_available() else None


_LINEAR = _onednn_linear()


def _use_onednn(t: Tensor) -> bool:
    return (_LINEAR is not None and t.device.type == "cpu" and t.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.enabled)


def _mm_t(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.T (+ bias)`` for ``a`` ``[M,K]``, ``b`` ``[N,K]`` (``b`` contiguous).

    On the CPU in float32/bfloat16 this is oneDNN's matmul (the op behind torch's fused CPU linear): MKL's sgemm,
    which ``torch.mm`` calls, runs its AVX2 code on AMD CPUs and reaches about half of oneDNN's speed there (oneDNN
    is what the convolutions of the implementation before issue 19 ran on). Elsewhere (float64, CUDA, a build
    without oneDNN): ``torch.mm``/``torch.addmm``."""
    if _use_onednn(a):
        return _LINEAR(a, b, bias, "none", [], "")
    return a @ b.t() if bias is None else torch.addmm(bias, a, b.t())


def _add_mm_t(out: Tensor, a: Tensor, b: Tensor) -> None:
    """``out += a @ b.T`` (see :func:`_mm_t`)."""
    if _use_onednn(a):
        out += _LINEAR(a, b, None, "none", [], "")
    else:
        out.addmm_(a, b.t())


def _dw(dy: Tensor, x: Tensor) -> Tensor:
    """``dy.T @ x`` summed over every pixel: the weight gradient ``[out,in]`` of the product ``x @ w.T`` applied to
    each pixel of the maps ``x`` ``[...,W,in]`` (contiguous), ``dy`` ``[...,W,out]``.

    On oneDNN this is the weight gradient of a 1x1 convolution of the maps viewed as NHWC images of one row (no
    copy; a batch of at least 16 such images, else torch picks its slow convolution): the long reduction over the
    pixels is then about as fast as the products above, where ``torch.mm`` would run MKL's sgemm."""
    if not _use_onednn(x):
        return dy.reshape(-1, dy.shape[-1]).t() @ x.reshape(-1, x.shape[-1])
    to4 = lambda t: t.reshape(-1, 1, *t.shape[-2:]).permute(0, 3, 1, 2)  # noqa: E731  [B,in,1,W]: batch >= 16
    weight = x.new_empty(dy.shape[-1], x.shape[-1], 1, 1)
    grads = torch.ops.aten.convolution_backward(to4(dy), to4(x), weight, None, [1, 1], [0, 0], [1, 1], False,
                                                [0, 0], 1, [False, True, False])
    return grads[1][:, :, 0, 0]


# ------------------------------------------------------------------------------------------------ LSTM cell
def _lstm_forward(gates: Tensor, c_prev: Tensor, cell: Tensor, tanh_cell: Tensor, hidden: Tensor,
                  acts: Tensor | None = None) -> None:
    """One LSTM update: writes into ``acts`` (default: in place into ``gates``) the activations (sig o, sig f,
    sig i, tanh g) of the pre-activations ``gates`` (o, f, i, g on the last dim, ``[...,4h]``), then
    ``cell = sig(f)*c_prev + sig(i)*tanh(g)``, its tanh and ``hidden = sig(o)*tanh(cell)`` (``[...,h]`` each)."""
    h = cell.shape[-1]
    if acts is None:
        acts = gates
    torch.sigmoid(gates[..., : 3 * h], out=acts[..., : 3 * h])
    torch.tanh(gates[..., 3 * h :], out=acts[..., 3 * h :])
    o, f, i, g = acts.split(h, dim=-1)
    torch.mul(f, c_prev, out=cell)
    cell.addcmul_(i, g)
    torch.tanh(cell, out=tanh_cell)
    torch.mul(o, tanh_cell, out=hidden)


def _lstm_backward(
    acts: Tensor, tanh_cell: Tensor, c_prev: Tensor, dh: Tensor, dc: Tensor, dgates: Tensor
) -> Tensor:
    """Backward of :func:`_lstm_forward` from its activations ``acts``, ``tanh_cell`` and ``c_prev``, given the
    gradients ``dh`` and ``dc`` reaching the hidden and cell state from later steps and layers: writes the
    pre-activation gradients into ``dgates`` and returns the gradient of ``c_prev``. The derivative kernels are
    the ones autograd uses for ``sigmoid`` and ``tanh``."""
    h = tanh_cell.shape[-1]
    o, f, i, g = acts.split(h, dim=-1)
    d_o, d_f, d_i, d_g = dgates.split(h, dim=-1)
    dc = dc + torch.ops.aten.tanh_backward(dh * o, tanh_cell)
    torch.mul(dh, tanh_cell, out=d_o)
    torch.mul(dc, c_prev, out=d_f)
    torch.mul(dc, g, out=d_i)
    torch.ops.aten.tanh_backward.grad_input(dc * i, g, grad_input=d_g)
    sig = dgates[..., : 3 * h]
    torch.ops.aten.sigmoid_backward.grad_input(sig, acts[..., : 3 * h], grad_input=sig)
    return dc * f


# ------------------------------------------------------------------------------------------------ buffer pool
class _BufferPool:
    """Work buffers of one net kept from one training step to the next.

    The Row LSTM blocks' largest maps (the stacked product inputs, the gate activations, the gradient of the gates:
    40-90 MB each at the default size) are above glibc's largest mmap threshold (32 MB), so allocating them afresh
    maps new pages every step, and the first touch of those pages costs about as much as the arithmetic on them.
    Buffers are handed out through a :class:`_Lease` and come back only when the lease is dropped: the forward's
    lease lives on the autograd node that reads the buffers in its backward, so a buffer is never overwritten while
    a graph can still read it (another forward before the backward, ``retain_graph``, a kept graph: those get
    buffers of their own). Each block of a step holds its own lease, hence its own buffers. The pool keeps the
    buffers of one input (shape, dtype, device) at a time: an input of another size empties it, so it does not
    grow with the sizes seen."""

    def __init__(self) -> None:
        self._signature: tuple | None = None
        self._free: dict[tuple, list[Tensor]] = {}

    def lease(self, like: Tensor) -> _Lease:
        """A lease for a block run on the input ``like``."""
        signature = (tuple(like.shape), like.dtype, like.device)
        if signature != self._signature:
            self._signature, self._free = signature, {}
        return _Lease(self, signature)

    def _take(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        free = self._free.get((shape, like.dtype, like.device))
        return free.pop() if free else like.new_empty(shape)

    def _give(self, signature: tuple, buffers: list[Tensor]) -> None:
        if signature == self._signature:  # else the pool has moved on to another size: let them go
            for t in buffers:
                self._free.setdefault((tuple(t.shape), t.dtype, t.device), []).append(t)


class _Lease:
    """Buffers taken from a :class:`_BufferPool` (fresh ones without a pool), all given back when the lease is
    freed."""

    def __init__(self, pool: _BufferPool | None = None, signature: tuple = ()) -> None:
        self._pool, self._signature, self._buffers = pool, signature, []

    def empty(self, like: Tensor, *shape: int) -> Tensor:
        """An uninitialised buffer of ``like``'s dtype and device (its contents are a previous step's)."""
        t = like.new_empty(shape) if self._pool is None else self._pool._take(shape, like)
        self._buffers.append(t)
        return t

    def __del__(self) -> None:
        if self._pool is not None:
            self._pool._give(self._signature, self._buffers)


#: each net's buffer pool, kept off the module (out of its state dict, deepcopy and pickling) and freed with it
_POOLS: weakref.WeakKeyDictionary[nn.Module, _BufferPool] = weakref.WeakKeyDictionary()


def _pool_of(net: nn.Module) -> _BufferPool | None:
    """The pool of ``net`` when a graph is being recorded (a training step); None otherwise (the fills' windows
    come in many sizes and their buffers are freed right after the forward anyway)."""
    if not torch.is_grad_enabled():
        return None
    pool = _POOLS.get(net)
    if pool is None:
        pool = _POOLS[net] = _BufferPool()
    return pool


# ------------------------------------------------------------------------------------------------ Row LSTM
def _row_recurrence(inp: Tensor, w: Tensor, b: Tensor, h0: Tensor, c0: Tensor, acts: Tensor, cells: Tensor,
                    tanh_cells: Tensor, hs: Tensor) -> None:
    """The Row LSTM recurrence over a band of ``n`` rows of width ``W``, with the i-s and s-s products of a row
    done as one product.

    ``inp`` ``[n,W,N,K+3h]``: per pixel its ``K`` i-s inputs (filled by the caller), then the s-s inputs, the hidden
    state of the row above at the taps ``c-1, c, c+1`` (filled here as the rows are computed); ``w`` ``[4h,K+3h]``:
    the i-s and s-s weights side by side, ``b`` ``[4h]``: the i-s bias; ``h0`` ``[W+2,N,h]``: the hidden state of
    the row above the band with one column of padding each side (the fill's windows pass real neighbours there);
    ``c0`` ``[W,N,h]``: its cell state. Row ``i`` reads only row ``i-1``, so the states of a row depend on nothing
    at or below it; rows after the first are zero-padded at the band's edges. Writes the gate activations
    ``acts`` ``[n,W,N,4h]``, the cell states, their tanh and the hidden states ``[n,W,N,h]``."""
    n, W, N, KS = inp.shape
    h = hs.shape[-1]
    K = KS - 3 * h
    taps = inp[..., K:]
    taps[1:, 0, :, :h] = 0  # left of the first column and right of the last: the zero padding
    taps[1:, -1, :, 2 * h :] = 0
    for k in range(3):
        taps[0, ..., k * h : (k + 1) * h] = h0[k : k + W]
    for i in range(n):
        if i:
            above, u = hs[i - 1], taps[i]
            u[1:, :, :h] = above[:-1]
            u[..., h : 2 * h] = above
            u[:-1, :, 2 * h :] = above[1:]
        pre = _mm_t(inp[i].view(W * N, KS), w, b).view(W, N, 4 * h)
        _lstm_forward(pre, c0 if i == 0 else cells[i - 1], cells[i], tanh_cells[i], hs[i], acts=acts[i])


def _row_recurrence_backward(
    d_hs: Tensor, wt: Tensor, acts: Tensor, cells: Tensor, tanh_cells: Tensor, c0: Tensor, d_gx: Tensor,
    d_x: Tensor, taps: tuple[int, ...]
) -> tuple[Tensor, Tensor]:
    """Backward of :func:`_row_recurrence` and of the i-s inputs over the rows in reverse, one product per row for
    the gradients of its i-s and s-s inputs (``wt`` ``[K+3h,4h]``: the stacked weight transposed). Writes the
    gradients of the gate pre-activations into ``d_gx`` ``[n,W,N,4h]`` and adds those of the block input (the
    adjoint shifts of the i-s taps) into ``d_x`` ``[n,W,N,C]``; returns the gradients of ``h0`` and ``c0``.
    ``d_hs`` (owned) accumulates the s-s gradients."""
    n, W, N, G = acts.shape
    h = G // 4
    C = d_x.shape[-1]
    K = len(taps) * C
    d_h0 = acts.new_zeros(W + 2, N, h)
    dc = acts.new_zeros(W, N, h)
    for i in reversed(range(n)):
        dg = d_gx[i]
        dc = _lstm_backward(acts[i], tanh_cells[i], c0 if i == 0 else cells[i - 1], d_hs[i], dc, dg)
        d_in = _mm_t(dg.view(W * N, G), wt).view(1, W, N, K + 3 * h)
        for t, k in enumerate(taps):  # the adjoint shifts of the i-s taps
            _shift_columns(d_in[..., t * C : (t + 1) * C], d_x[i : i + 1], 2 - k, add=True)
        du = d_in[0, ..., K:]
        if i > 0:
            above = d_hs[i - 1]
            above[:-1] += du[1:, :, :h]
            above += du[..., h : 2 * h]
            above[1:] += du[:-1, :, 2 * h :]
        else:
            for k in range(3):
                d_h0[k : k + W] += du[..., k * h : (k + 1) * h]
    return d_h0, dc


def _shift_columns(src: Tensor, dst: Tensor, k: int, add: bool = False) -> None:
    """``dst[:, c] (+)= src[:, c + k - 1]`` for the tap ``k`` (0: left, 1: centre, 2: right) of a 1x3 kernel
    along the columns (dim 1) of ``[n,W,...]`` maps; assigning, the columns beyond the row's ends are zeroed."""
    W = src.shape[1]
    d = k - 1
    to, fr = dst[:, max(0, -d) : W - max(0, d)], src[:, max(0, d) : W - max(0, -d)]
    if add:
        to += fr
        return
    to.copy_(fr)
    if d:
        dst[:, 0 if d < 0 else W - 1] = 0


class _RowBlockFn(torch.autograd.Function):
    """One Row LSTM block on the maps ``[n,W,N,2h]``: the 1x3 i-s (its open taps stacked on the channels) and the
    s-s as one product per row (:func:`_row_recurrence`), the 1x1 output convolution added to the input. Returns
    the block's output and, for the fill's cache (no gradient), the last row's ``(h, c)``. Its work buffers come
    from ``pool`` (None: fresh ones) and go back when the node is freed."""

    @staticmethod
    def forward(ctx, x: Tensor, w_is: Tensor, b_is: Tensor, w_ss: Tensor, w_out: Tensor, b_out: Tensor,
                h0: Tensor, c0: Tensor, taps: tuple[int, ...], pool: _BufferPool | None
                ) -> tuple[Tensor, Tensor, Tensor]:
        n, W, N, C = x.shape
        G = w_is.shape[0]
        h = G // 4
        K = len(taps) * C
        ctx.dtypes = [t.dtype for t in (w_is, b_is, w_ss, w_out, b_out, h0, c0)]
        w_is, b_is, w_ss, w_out, b_out, h0, c0 = _cast(x.dtype, w_is, b_is, w_ss, w_out, b_out, h0, c0)
        lease = _Lease() if pool is None else pool.lease(x)
        with torch.autocast(x.device.type, enabled=False):
            inp = lease.empty(x, n, W, N, K + 3 * h)
            for t, k in enumerate(taps):  # the open i-s taps of every pixel, stacked on the channels
                _shift_columns(x, inp[..., t * C : (t + 1) * C], k)
            w = torch.cat([w_is, w_ss.t()], dim=1)  # [4h, K+3h]: the weights of a row's one product
            acts = lease.empty(x, n, W, N, G)
            cells, tanh_cells, hs = (lease.empty(x, n, W, N, h) for _ in range(3))
            _row_recurrence(inp, w, b_is, h0, c0, acts, cells, tanh_cells, hs)
            out = _mm_t(hs.view(-1, h), w_out.contiguous(), b_out).view(n, W, N, C).add_(x)
        ctx.taps, ctx.lease = taps, lease
        ctx.save_for_backward(inp, w, w_out, c0, hs, acts, cells, tanh_cells)
        last_h, last_c = hs[-1].clone(), cells[-1].clone()
        ctx.mark_non_differentiable(last_h, last_c)
        return out, last_h, last_c

    @staticmethod
    def backward(ctx, d_out: Tensor, _d_h: Tensor | None, _d_c: Tensor | None) -> tuple[Tensor | None, ...]:
        inp, w, w_out, c0, hs, acts, cells, tanh_cells = ctx.saved_tensors
        taps = ctx.taps
        n, W, N, G = acts.shape
        C, h = w_out.shape
        K = len(taps) * C
        # the gradient of the input: the residual path here (our own copy), the i-s path added row by row
        d_x = d_out.to(acts.dtype).clone(memory_format=torch.contiguous_format)
        d_flat = d_x.view(-1, C)
        d_hs = _mm_t(d_flat, w_out.t().contiguous()).view(n, W, N, h)
        d_w_out, d_b_out = _dw(d_x, hs), d_flat.sum(0)
        # scratch for this backward only (one block's backward runs at a time: the blocks share it)
        pool = ctx.lease._pool
        scratch = _Lease() if pool is None else pool.lease(d_x)
        d_gx = scratch.empty(acts, n, W, N, G)
        d_h0, d_c0 = _row_recurrence_backward(
            d_hs, w.t().contiguous(), acts, cells, tanh_cells, c0, d_gx, d_x, taps)
        d_w = _dw(d_gx, inp)  # [4h, K+3h]: both weights' gradients in one product over all pixels
        d_b_is = d_gx.view(-1, G).sum(0)
        grads = (d_w[:, :K], d_b_is, d_w[:, K:].t(), d_w_out, d_b_out, d_h0, d_c0)
        return (d_x, *(g.to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True)), None, None)


# ----------------------------------------------------------------------------------------- Diagonal BiLSTM
class _DiagonalPlan:
    """The skew of an ``n x W`` map as a permutation of its pixels, in the order of the skewed columns.

    Skewed column ``j`` (``j = r + c``, ``0 <= j < n+W-1``) holds the pixels ``(r, j-r)`` for the rows
    ``lo_j = max(0, j-W+1) .. hi_j = min(n-1, j)``; they take the packed positions ``off_j .. off_j+m_j-1``.
    ``steps[j] = (off_j, m_j, a_j, nl_j)`` where ``a_j = lo_j - lo_{j-1}`` (1 once the diagonals start below row 0)
    and ``nl_j`` is the number of rows of column ``j`` whose left neighbour ``(r, c-1)`` is a pixel (the others
    start their row: a zero left state). Entry ``e`` of column ``j`` finds its left neighbour at entry ``e + a_j``
    of column ``j-1`` and the pixel above ``(r-1, c)`` at entry ``e + a_j - 1`` (row 0 reads the state above the
    band instead).

    Index tensors over both directions stacked (``2*n*W`` positions; direction 0: the map, 1: the width-mirrored
    map): ``gather`` gives the pixel (``r*W + c``, of the map as it is) that each packed position reads, and the
    packed position of each pixel's state, mirrored back, is ``scatter`` (for direction 0 at ``[0, n*W)``, for
    direction 1 at ``[n*W, 2*n*W)``). ``unscatter`` is the inverse permutation of ``scatter``."""

    def __init__(self, n: int, W: int) -> None:
        self.n, self.W = n, W
        rows, cols, steps = [], [], []
        off = 0
        for j in range(n + W - 1):
            lo, hi = max(0, j - W + 1), min(n - 1, j)
            m = hi - lo + 1
            nl = 0 if j == 0 else min(hi, n - 1, j - 1) - lo + 1
            steps.append((off, m, int(j >= W), nl))
            rows += range(lo, hi + 1)
            cols += [j - r for r in range(lo, hi + 1)]
            off += m
        self.steps = steps
        r, c = torch.tensor(rows), torch.tensor(cols)
        fwd, rev = r * W + c, r * W + (W - 1 - c)
        packed = torch.arange(n * W)
        inv_fwd, inv_rev = torch.empty_like(fwd), torch.empty_like(rev)
        inv_fwd[fwd], inv_rev[rev] = packed, packed
        self._index = {"gather": torch.cat([fwd, rev]), "scatter": torch.cat([inv_fwd, inv_rev + n * W]),
                       "unscatter": torch.cat([fwd, rev + n * W])}
        self._on: dict[torch.device, dict[str, Tensor]] = {}

    def index(self, name: str, device: torch.device) -> Tensor:
        if device not in self._on:
            self._on[device] = {k: v.to(device) for k, v in self._index.items()}
        return self._on[device][name]


@lru_cache(maxsize=64)
def _diagonal_plan(n: int, W: int) -> _DiagonalPlan:
    return _DiagonalPlan(n, W)


def _diagonal_recurrence(gx: Tensor, w: Tensor, above: Tensor, plan: _DiagonalPlan) -> tuple[Tensor, ...]:
    """Both Diagonal LSTMs of a block over a band of ``n`` rows of width ``W``, in the packed skewed order of
    :class:`_DiagonalPlan` (``D`` = 2 directions on the leading dim, each with its own weights).

    ``gx`` ``[D,n*W,N,4h]``: the i-s products, overwritten with the gate activations;
    ``w`` ``[D,2h,4h]``: the s-s weights (tap 0: the pixel above, tap 1: the pixel to the left, stacked on the
    input dim); ``above`` ``[D,W,N,h]``: the hidden state of the row above the band (the mirrored direction's mirrored). Skewed column
    ``j`` depends only on column ``j-1``: a pixel reads ``(r-1, c)`` and ``(r, c-1)``, and a row starts from a zero
    left state. Returns the hidden states ``[D,n*W,N,h]`` (packed) and, for the backward, the s-s inputs
    ``[D,n*W,N,2h]``, the cell states and their tanh."""
    D, P, N, G = gx.shape
    h = G // 4
    taps = gx.new_zeros(D, P, N, 2 * h)
    cells, tanh_cells, hs = (gx.new_empty(D, P, N, h) for _ in range(3))
    wt = w.transpose(1, 2).contiguous()
    poff = 0
    for j, (off, m, a, nl) in enumerate(plan.steps):
        u = taps[:, off : off + m]
        c_prev = gx.new_zeros(D, m, N, h)
        if j:
            u[:, :nl, :, h : 2 * h] = hs[:, poff + a : poff + a + nl]
            c_prev[:, :nl] = cells[:, poff + a : poff + a + nl]
            if a:
                u[..., :h] = hs[:, poff : poff + m]
            else:
                u[:, 1:, :, :h] = hs[:, poff : poff + m - 1]
        if not a:  # the column starts in the band's first row: its upper neighbour is the row above
            u[:, 0, :, :h] = above[:, j]
        gates = gx[:, off : off + m]
        for d in range(D):
            _add_mm_t(gates[d].view(m * N, G), u[d].view(m * N, 2 * h), wt[d])
        sl = slice(off, off + m)
        _lstm_forward(gates, c_prev, cells[:, sl], tanh_cells[:, sl], hs[:, sl])
        poff = off
    return hs, taps, cells, tanh_cells


def _diagonal_recurrence_backward(
    d_hs: Tensor, w: Tensor, acts: Tensor, cells: Tensor, tanh_cells: Tensor, plan: _DiagonalPlan
) -> tuple[Tensor, Tensor]:
    """Backward of :func:`_diagonal_recurrence` over the skewed columns in reverse: returns the gradients of the
    i-s products ``[D,n*W,N,4h]`` and of ``above``. ``d_hs`` (owned) accumulates the s-s gradients."""
    D, P, N, G = acts.shape
    h = G // 4
    d_gx = torch.empty_like(acts)
    d_c = acts.new_zeros(D, P, N, h)  # the left neighbour's cell gradient, from the next column
    d_above = acts.new_zeros(D, plan.W, N, h)
    w = w.contiguous()
    for j in reversed(range(len(plan.steps))):
        off, m, a, nl = plan.steps[j]
        poff = plan.steps[j - 1][0] if j else 0
        c_prev = acts.new_zeros(D, m, N, h)
        if j:
            c_prev[:, :nl] = cells[:, poff + a : poff + a + nl]
        sl = slice(off, off + m)
        dg = d_gx[:, sl]
        dc_prev = _lstm_backward(acts[:, sl], tanh_cells[:, sl], c_prev, d_hs[:, sl], d_c[:, sl], dg)
        if j:
            d_c[:, poff + a : poff + a + nl] += dc_prev[:, :nl]
        for d in range(D):
            du = _mm_t(dg[d].view(m * N, G), w[d]).view(m, N, 2 * h)
            if j:
                d_hs[d, poff + a : poff + a + nl] += du[:nl, :, h : 2 * h]
                if a:
                    d_hs[d, poff : poff + m] += du[..., :h]
                else:
                    d_hs[d, poff : poff + m - 1] += du[1:, :, :h]
            if not a:
                d_above[d, j] += du[0, :, :h]
    return d_gx, d_above


class _DiagonalBlockFn(torch.autograd.Function):
    """One Diagonal BiLSTM block on the maps ``[n,W,N,2h]``: the 1x1 i-s of both directions on the pixels
    gathered in skewed order (the mirrored direction from the mirrored map), the recurrence
    (:func:`_diagonal_recurrence`), the inverse permutation (unskew, mirror
    back), the down-shift of the reverse direction (its first row: ``above_r``, the reverse state of the row above
    the band), the 1x1 output convolution of the sum added to the input. Returns the block's output and, for the
    fill's cache (no gradient), each direction's hidden state of the last row."""

    @staticmethod
    def forward(ctx, x: Tensor, w_is: Tensor, b_is: Tensor, w_ss: Tensor, w_out: Tensor, b_out: Tensor,
                above_f: Tensor, above_r: Tensor, plan: _DiagonalPlan, shift: bool
                ) -> tuple[Tensor, Tensor, Tensor]:
        n, W, N, C = x.shape
        G = w_is.shape[1]
        h = G // 4
        P = n * W
        ctx.dtypes = [t.dtype for t in (w_is, b_is, w_ss, w_out, b_out, above_f, above_r)]
        w_is, b_is, w_ss, w_out, b_out, above_f, above_r = _cast(
            x.dtype, w_is, b_is, w_ss, w_out, b_out, above_f, above_r)
        with torch.autocast(x.device.type, enabled=False):
            packed = x.view(P, N, C).index_select(0, plan.index("gather", x.device)).view(2, P * N, C)
            gx = torch.stack([_mm_t(packed[d], w_is[d].contiguous(), b_is[d]) for d in range(2)]).view(2, P, N, G)
            w_ss = w_ss.contiguous()
            hs, s_taps, cells, tanh_cells = _diagonal_recurrence(
                gx, w_ss, torch.stack([above_f, above_r.flip(0)]), plan)
            h_f, h_r = hs.view(2 * P, N, h).index_select(0, plan.index("scatter", x.device)).view(
                2, n, W, N, h).unbind(0)
            both = h_f.clone()
            if shift:
                both[0] += above_r
                both[1:] += h_r[:-1]
            else:
                both += h_r
            out = _mm_t(both.view(-1, h), w_out.contiguous(), b_out).view(n, W, N, C).add_(x)
        ctx.plan, ctx.shift = plan, shift
        ctx.save_for_backward(packed, w_is, w_ss, w_out, both, s_taps, gx, cells, tanh_cells)
        last_f, last_r = h_f[-1].clone(), h_r[-1].clone()
        ctx.mark_non_differentiable(last_f, last_r)
        return out, last_f, last_r

    @staticmethod
    def backward(ctx, d_out: Tensor, _d_f: Tensor | None, _d_r: Tensor | None) -> tuple[Tensor | None, ...]:
        packed, w_is, w_ss, w_out, both, s_taps, acts, cells, tanh_cells = ctx.saved_tensors
        plan = ctx.plan
        D, P, N, G = acts.shape
        C, h = w_out.shape
        n, W = plan.n, plan.W
        d_out = d_out.to(acts.dtype).contiguous().view(-1, C)
        d_both = _mm_t(d_out, w_out.t().contiguous()).view(n, W, N, h)
        d_w_out, d_b_out = _dw(d_out.view(n, W, N, C), both), d_out.sum(0)
        d_img = acts.new_empty(2, n, W, N, h)  # gradients of the unskewed states h_f, h_r
        d_img[0] = d_both
        if ctx.shift:
            d_img[1, :-1] = d_both[1:]
            d_img[1, -1] = 0
            d_above_r = d_both[0].clone()
        else:
            d_img[1] = d_both
            d_above_r = torch.zeros_like(d_both[0])
        d_hs = d_img.view(2 * P, N, h).index_select(0, plan.index("unscatter", d_img.device)).view(D, P, N, h)
        d_gx, d_above = _diagonal_recurrence_backward(d_hs, w_ss, acts, cells, tanh_cells, plan)
        d_gx = d_gx.view(D, P * N, G)
        d_w_ss = torch.stack([_dw(d_gx[d].view(P, N, G), s_taps[d]).t() for d in range(D)])
        d_b_is = d_gx.sum(1)
        d_w_is = torch.stack([_dw(d_gx[d].view(P, N, G), packed[d].view(P, N, C)) for d in range(D)])
        d_packed = torch.stack([_mm_t(d_gx[d], w_is[d].t().contiguous()) for d in range(D)])
        d_x = d_packed.view(2 * P, N, C).index_select(0, plan.index("scatter", d_packed.device))
        d_x = d_x.view(2, n, W, N, C).sum(0).add_(d_out.view(n, W, N, C))
        d_above_r += d_above[1].flip(0)
        grads = (d_w_is, d_b_is, d_w_ss, d_w_out, d_b_out, d_above[0], d_above_r)
        return (d_x, *(g.to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True)), None, None)


# ------------------------------------------------------------------------------------------------ head
class _HeadFn(torch.autograd.Function):
    """The head on block features in the rows layout ``[n,m,N,2h]``: ReLU, 1x1 mask B, ReLU, 1x1 mask B -> logits
    ``[N,3,256,n,m]``. The first product runs over all pixels at once (the images one after the other, pixels as
    rows); the second image by image with the weight on the left, so that each image's logits come out channels
    first, as the logits are laid out, without transposing the largest map of the net. Its bias rides on an extra
    first layer's output that is constant 1 (weight 0, bias 1: ReLU(1) = 1)."""

    @staticmethod
    def forward(ctx, feats: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor) -> Tensor:
        n, m, N, C = feats.shape
        ctx.dtypes = [t.dtype for t in (w1, b1, w2, b2)]
        w1, b1, w2, b2 = _cast(feats.dtype, w1, b1, w2, b2)
        with torch.autocast(feats.device.type, enabled=False):
            w1 = torch.cat([w1.new_zeros(1, C), w1])  # output 0: the constant 1 that carries the second bias
            b1 = torch.cat([b1.new_ones(1), b1])
            w2 = torch.cat([b2[:, None], w2], dim=1).contiguous()
            r = feats.permute(2, 0, 1, 3).contiguous().clamp_min_(0)  # ReLU, images first: [N, n, m, C]
            a = _mm_t(r.view(-1, C), w1, b1).clamp_min_(0).view(N, n * m, C + 1)
            out = torch.stack([_mm_t(w2, a[i]) for i in range(N)])
        ctx.save_for_backward(r, a, w1, w2)
        # [N,3,256,n,m] here rather than a view by the caller: the gradient of the loss (a transposed view,
        # typically) then comes as it is, copied image by image below instead of whole into a fresh map
        return out.view(N, 3, LEVELS, n, m)

    @staticmethod
    def backward(ctx, d_out: Tensor) -> tuple[Tensor | None, ...]:
        r, a, w1, w2 = ctx.saved_tensors
        N, n, m, C = r.shape
        d_out = d_out.to(a.dtype)
        d_w2 = torch.zeros_like(w2)
        d_a = torch.empty_like(a)
        w2t, a_t = w2.t().contiguous(), a.transpose(1, 2).contiguous()  # a_t: each image's channels first
        for i in range(N):
            d_i = d_out[i].reshape(-1, n * m)  # [768, n*m]
            d_w2 += _mm_t(d_i, a_t[i])
            d_a[i] = _mm_t(d_i.t(), w2t)
        d_a = torch.ops.aten.threshold_backward(d_a, a, 0).view(N, n, m, C + 1)
        d_w1 = _dw(d_a, r)
        d_r = _mm_t(d_a.view(-1, C + 1), w1.t().contiguous()).view(N, n, m, C)
        d_feats = torch.ops.aten.threshold_backward(d_r, r, 0).permute(1, 2, 0, 3)
        grads = (d_w1[1:], d_a[..., 1:].sum((0, 1, 2)), d_w2[:, 1:], d_w2[:, 0])
        return (d_feats, *(g.to(dt) for g, dt in zip(grads, ctx.dtypes, strict=True)))


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
        return self._head(_to_rows(feats))

    def _head(self, feats: Tensor) -> Tensor:
        """Block features in the rows layout ``[n,m,N,2h]`` -> logits ``[N,3,256,n,m]``."""
        h1, h2 = self.head1, self.head2
        return _HeadFn.apply(feats, _masked_weight(h1)[:, :, 0, 0], h1.bias, _masked_weight(h2)[:, :, 0, 0],
                             h2.bias)


# ------------------------------------------------------------------------------------------------ Row LSTM net
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
        """Block features ``[r1-r0,c1-c0,N,2h]`` (the rows layout) of rows ``[r0, r1)``, columns ``[c0, c1)``,
        given each block's state of row ``r0-1``: ``(h, c)`` with ``h`` zero-padded by one column each side
        (``[N,h,c1-c0+2]``), ``c`` ``[N,h,c1-c0]``. Returns the features and the states of row ``r1-1``.

        A window narrower than the image is for a single row: its left ``K`` columns are wrong (their left
        neighbours are missing) but the last column is exact; the returned states are then meaningless."""
        feats = _to_rows(self._l0(x, r0, r1, c0, c1, b))  # [n, W, N, 2h]
        new_states = []
        pool = _pool_of(self)
        for block, (h_pad, cell) in zip(self.blocks, states, strict=True):
            taps = _open_taps(block.i_s)
            w_is = _masked_weight(block.i_s)[:, :, 0]  # [4h, 2h, 3]: the open taps stacked on the inputs
            w_is = torch.cat([w_is[..., k] for k in taps], dim=1) if taps else w_is[..., :0].flatten(1)
            w_ss = block.s_s.weight.permute(2, 1, 0).flatten(0, 1)  # [3h, 4h]: taps c-1, c, c+1 stacked
            feats, h_last, c_last = _RowBlockFn.apply(
                feats, w_is, block.i_s.bias, w_ss, _masked_weight(block.out)[:, :, 0, 0], block.out.bias,
                h_pad.permute(2, 0, 1), cell.permute(2, 0, 1), taps, pool)
            new_states.append((F.pad(h_last.permute(1, 2, 0), (1, 1)), c_last.permute(1, 2, 0)))
        return feats, new_states

    def forward(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        feats, _ = self._run(x, 0, H, 0, W, self._zero_states(x))
        return self._head(feats)

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
                    logits = self._head(feats[:, -1:])[:, k, :, 0, 0]
                    x[b, k, r, c] = from_levels(decoder(logits, b, k, r, c), x.dtype)
            _, states = self._run(x, r, r + 1, 0, W, states)
            done = r + 1
        return x



# ----------------------------------------------------------------------------------------- Diagonal BiLSTM net
class _DiagonalLSTM(nn.Module):
    """One direction: i-s 1x1 mask B; s-s taps ``[0]`` the pixel above, ``[1]`` the pixel to the left."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.i_s = MaskedConv2d(2 * h, 4 * h, 1, "B", out_unit=h)
        self.s_s = nn.Conv1d(h, 4 * h, 2, bias=False)


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
        """Block features ``[r1-r0,W,N,2h]`` (the rows layout) of rows ``[r0, r1)`` given each block's
        ``(forward h, reverse h)`` of row ``r0-1`` (``[N,h,W]`` each); returns them and the states of row ``r1-1``.

        Per block: the i-s of both directions for every pixel in one batched product, gathered in the skewed
        order of :class:`_DiagonalPlan` (the mirrored direction reads the width-mirrored map); the recurrence
        over the skewed columns; the inverse permutation unskews both directions and mirrors the reverse one
        back; the reverse direction is shifted down one row (its first row: the reverse state of row ``r0-1``)
        and added to the forward one."""
        feats = _to_rows(self._l0(x, r0, r1, 0, x.shape[-1]))  # [n, W, N, 2h]
        plan = _diagonal_plan(*feats.shape[:2])
        new_states = []
        for block, (above_f, above_r) in zip(self.blocks, states, strict=True):
            dirs = (block.fwd, block.rev)
            feats, last_f, last_r = _DiagonalBlockFn.apply(
                feats, torch.stack([_masked_weight(d.i_s)[:, :, 0, 0] for d in dirs]),
                torch.stack([d.i_s.bias for d in dirs]),
                torch.stack([d.s_s.weight.permute(2, 1, 0).flatten(0, 1) for d in dirs]),  # [2, 2h, 4h]
                _masked_weight(block.out)[:, :, 0, 0], block.out.bias,
                above_f.permute(2, 0, 1), above_r.permute(2, 0, 1), plan, self._shift_reverse)
            new_states.append((last_f.permute(1, 2, 0), last_r.permute(1, 2, 0)))
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
        return self._head(feats)

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

"""PixelRNN Row LSTM and Diagonal BiLSTM: colour masks, causality (with broken variants that must fail it), the
fast fills against the naive reference fill, and a few training steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inpaint.nets.autoregressive import Decoder, causal_mask, colour_groups, naive_fill, quantize, to_levels
from inpaint.nets.pixelrnn import DiagonalBiLSTMNet, RowLSTMNet

NETS = {"row": RowLSTMNet, "diagonal": DiagonalBiLSTMNet}
H, W = 8, 11  # non-square on purpose


def make_net(kind: str, hidden: int = 6, layers: int = 2, seed: int = 0) -> RowLSTMNet | DiagonalBiLSTMNet:
    torch.manual_seed(seed)
    return NETS[kind](hidden=hidden, layers=layers).double().eval()


def images(n: int, h: int = H, w: int = W, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g).double() / 255


def masks(h: int = H, w: int = W) -> torch.Tensor:
    """Each image its own hole: a centre block, row 0 + the last column + the bottom-left corner, an irregular
    random mask, none."""
    hole = torch.zeros(4, h, w, dtype=torch.bool)
    hole[0, 3:6, 4:8] = True
    hole[1, 0, :3] = True
    hole[1, 2:5, w - 1] = True
    hole[1, h - 1, 0] = True
    hole[2] = torch.rand(h, w, generator=torch.Generator().manual_seed(2)) < 0.15
    return hole


def order(h: int, w: int) -> torch.Tensor:
    """Raster/RGB index of every sub-pixel, laid out ``[3,h,w]`` like an image."""
    return torch.arange(h * w * 3).view(h, w, 3).permute(2, 0, 1)


#: float64 convolutions re-associate sums of masked-out (zero) terms: a causal logit moves by ~1e-16 at most
TOL = 1e-12


def moved(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > TOL


def causality_violations(net: torch.nn.Module, x: torch.Tensor, positions: list[tuple[int, int, int]]) -> list:
    """Positions ``(r, c, k)`` whose logits change when every sub-pixel at or after them is perturbed."""
    idx = order(*x.shape[-2:])
    base = net(x)
    g = torch.Generator().manual_seed(3)
    bad = []
    for r, c, k in positions:
        t = (r * x.shape[-1] + c) * 3 + k
        noise = torch.rand(x.shape, generator=g, dtype=x.dtype)
        y = net(torch.where(idx >= t, noise, x))
        if moved(y[:, k, :, r, c], base[:, k, :, r, c]):
            bad.append((r, c, k))
    return bad


POSITIONS = [(0, 0, 0), (0, 0, 2), (0, 5, 1), (3, 0, 0), (3, 4, 0), (3, 4, 1), (3, 4, 2), (5, W - 1, 2), (H - 1, 3, 1)]


# ------------------------------------------------------------------------------------------------ masks
def test_colour_mask_rule_at_the_centre_tap() -> None:
    net = make_net("row")
    h = net.hidden
    # L0, mask A: output third j reads input colour i < j only
    expected_a = torch.tensor([[0, 0, 0], [1, 0, 0], [1, 1, 0]]).float().repeat_interleave(2 * h // 3, dim=0)
    assert torch.equal(net.l0.mask[:, :, 3, 3], expected_a)
    assert net.l0.mask[:, :, 4:].sum() == 0 and net.l0.mask[:, :, 3, 4:].sum() == 0
    # Row LSTM i-s, mask B, 1x3: left tap open, right tap closed, centre by colour with every gate split R/G/B
    mask = net.blocks[0].i_s.mask
    groups_out = colour_groups(4 * h, h)
    groups_in = colour_groups(2 * h)
    assert torch.equal(mask[:, :, 0, 1], (groups_in[None] <= groups_out[:, None]).float())
    assert mask[:, :, 0, 0].all() and not mask[:, :, 0, 2].any()
    assert torch.equal(groups_out.view(4, h)[0], torch.tensor([0, 0, 1, 1, 2, 2]))
    # Diagonal i-s, 1x1 mask B, and the residual output h -> 2h
    diag = make_net("diagonal")
    assert torch.equal(diag.blocks[0].fwd.i_s.mask[:, :, 0, 0], mask[:, :, 0, 1])
    assert torch.equal(diag.blocks[0].out.mask[:, :, 0, 0],
                       (colour_groups(h)[None] <= colour_groups(2 * h)[:, None]).float())


@pytest.mark.parametrize("kind", NETS)
def test_output_shape_and_hidden_check(kind: str) -> None:
    assert make_net(kind)(images(2, 5, 7)).shape == (2, 3, 256, 5, 7)
    with pytest.raises(ValueError, match="multiple of 3"):
        NETS[kind](hidden=8)


# ------------------------------------------------------------------------------------------------ causality
@pytest.mark.parametrize("kind", NETS)
def test_causal(kind: str) -> None:
    net = make_net(kind)
    x = images(2)
    assert causality_violations(net, x, POSITIONS) == []
    # ...and the check can see dependence: the sub-pixel just before t (the same pixel's earlier colours through
    # mask A, the left neighbour) and the whole past move the logits of t
    idx, base = order(H, W), net(x)
    for r, c, k in [(3, 4, 1), (3, 4, 2), (3, 4, 0), (H - 1, 3, 1)]:
        t = (r * W + c) * 3 + k
        for before in (idx == t - 1, idx < t):
            y = net(torch.where(before, 1 - x, x))
            assert moved(y[:, k, :, r, c], base[:, k, :, r, c]), (r, c, k)


def test_diagonal_sees_the_row_above_to_the_right() -> None:
    """The reverse direction gives the Diagonal BiLSTM the whole row above (beyond L0's 7x7 reach); the Row
    LSTM's triangular field does not reach that far in two blocks."""
    x = images(2)
    x2 = x.clone()
    x2[:, :, 3, W - 1] = 1 - x2[:, :, 3, W - 1]
    for kind, sees in [("diagonal", True), ("row", False)]:
        net = make_net(kind)
        assert moved(net(x2)[:, :, :, 4, 0], net(x)[:, :, :, 4, 0]) == sees, kind


def test_broken_variants_fail_the_causality_check() -> None:
    x = images(2)
    diag = make_net("diagonal")
    diag._shift_reverse = False  # the reverse direction then reads the rest of the row
    assert causality_violations(diag, x, POSITIONS)
    row = make_net("row")
    row.blocks[1].i_s.mask[:, :, 0, 2] = 1  # open the right tap of a block's i-s
    assert causality_violations(row, x, POSITIONS)
    for kind in NETS:  # L0 with mask B reads the sub-pixel it predicts
        net = make_net(kind)
        net.l0.mask.copy_(causal_mask((7, 7), colour_groups(3), colour_groups(2 * net.hidden), "B"))
        assert causality_violations(net, x, POSITIONS)


# ------------------------------------------------------------------------------------------------ fills
class Recorder(Decoder):
    """A decoder that also keeps the logits it was given for every ``(image, colour, row, col)``: the values a
    fill chooses hide small logit errors (an argmax rarely flips), the logits do not."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: dict[tuple[int, int, int, int], torch.Tensor] = {}

    def __call__(self, logits, b, k, r, c):
        for i, bi in enumerate(b.tolist()):
            key = (bi, k, int(r), int(c))
            assert key not in self.seen, f"{key} decoded twice"
            self.seen[key] = logits[i].clone()
        return super().__call__(logits, b, k, r, c)


def assert_same_fill(net, x, hole, *args, **kwargs) -> torch.Tensor:
    """Fast and naive fill choose the same values from the same logits (to rounding); returns the fast fill."""
    fast_dec, naive_dec = Recorder(*args, **kwargs), Recorder(*args, **kwargs)
    x_before = x.clone()
    fast = net.fill(x, hole, fast_dec)
    assert torch.equal(x, x_before)
    assert torch.equal(fast, naive_fill(net, x, hole, naive_dec))
    assert fast_dec.seen.keys() == naive_dec.seen.keys() == {
        (b, k, r, c) for b, r, c in hole.nonzero().tolist() for k in range(3)
    }
    for key, logits in naive_dec.seen.items():
        assert not moved(fast_dec.seen[key], logits), key
    return fast


@pytest.mark.parametrize("kind", NETS)
@pytest.mark.slow
def test_fast_fill_equals_naive_fill(kind: str) -> None:
    net = make_net(kind)
    x, hole = images(4), masks()
    noise = torch.rand(4, 3, H, W, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for decoder in (Decoder("argmax"), Decoder("sample", noise=noise), Decoder("mean")):
        fast = assert_same_fill(net, x, hole, decoder.mode, noise=decoder.noise)
        # known sub-pixels untouched; hole sub-pixels were written (random weights rarely reproduce the image)
        known = ~hole[:, None].expand_as(x)
        assert torch.equal(fast[known], quantize(x)[known])
        assert (to_levels(fast) != to_levels(x))[~known].float().mean() > 0.5
        assert torch.equal(fast, quantize(fast))


@pytest.mark.parametrize("kind", NETS)
def test_fast_fill_cifar_like_centre_hole_and_empty_hole(kind: str) -> None:
    """A centre hole away from the top (rows above it cached), on a non-square image; an empty hole."""
    net = make_net(kind, hidden=3, layers=3, seed=5)
    x = images(2, 9, 12, seed=6)
    hole = torch.zeros(2, 9, 12, dtype=torch.bool)
    hole[:, 4:7, 5:8] = True
    hole[1, 8, 11] = True  # last row, last column, in one image only
    assert_same_fill(net, x, hole)
    none = torch.zeros_like(hole)
    assert torch.equal(net.fill(x, none, Decoder()), quantize(x))


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("kind", NETS)
def test_a_few_adam_steps_lower_the_loss(kind: str) -> None:
    net = make_net(kind).train()
    x = images(2, 6, 7)
    target = to_levels(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(net(x).transpose(1, 2), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    assert all(p.grad is not None for p in net.parameters())

"""Window Pixel CNN (spec A6, C4): the fast diagonal fill chooses exactly what the naive fill chooses, the logits of
a pixel read exactly its causal window (and its own earlier colours), and the net trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from inpaint.nets.autoregressive import Decoder, naive_fill, quantize, to_levels
from inpaint.nets.pixelcnn import WindowPixelCNN


def make_net(seed: int = 0, std: float = 0.4, **kwargs) -> WindowPixelCNN:
    """A small float64 net in eval mode whose random weights are large enough that the logits are far from ties."""
    torch.manual_seed(seed)
    net = WindowPixelCNN(**{"width": 12, **kwargs}).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, std)
    return net


def images(bsz: int, height: int, width: int, seed: int = 1) -> Tensor:
    """Random float64 images in [0,1], deliberately off the 1/255 grid."""
    return torch.rand(bsz, 3, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def mixed_holes(height: int = 12, width: int = 14) -> Tensor:
    """One mask per image: a centre block, an irregular random mask, a mask on the top-left corner and the right
    border, no hole at all."""
    hole = torch.zeros(4, height, width, dtype=torch.bool)
    hole[0, 4:8, 5:10] = True
    hole[1] = torch.rand(height, width, generator=torch.Generator().manual_seed(7)) < 0.3
    hole[2, 0:3, 0:4] = True
    hole[2, 5:9, width - 3:] = True
    return hole


def sub_pixel_index(height: int, width: int) -> Tensor:
    """Raster/RGB position ``(r * W + c) * 3 + k`` of every sub-pixel, laid out ``[3,H,W]``."""
    pix = torch.arange(height * width).view(1, height, width)
    return pix * 3 + torch.arange(3).view(3, 1, 1)


def assert_causal(net: torch.nn.Module, x: Tensor) -> None:
    """For every sub-pixel ``t`` of the single image ``x`` ``[1,3,H,W]``: replacing all sub-pixels at or after ``t``
    with other values leaves the logits of ``t`` unchanged (forward only, one batch of all perturbations)."""
    _, _, height, width = x.shape
    pos = sub_pixel_index(height, width)
    n = pos.numel()
    later = pos[None] >= torch.arange(n).view(n, 1, 1, 1)  # [n,3,H,W]: sub-pixels at or after t
    other = torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    perturbed = torch.where(later, other, x.expand(n, -1, -1, -1))
    with torch.no_grad():
        base, moved = net(x), net(perturbed)
    ts = torch.arange(n)
    k, r, c = ts % 3, ts // 3 // width, ts // 3 % width  # sub-pixel t
    expected = base[0, k, :, r, c]  # [n,256]
    got = moved[ts, k, :, r, c]
    assert torch.allclose(got, expected, rtol=0.0, atol=1e-12), "logits of a sub-pixel read itself or a later one"


# ------------------------------------------------------------------------------------------------------ fill
@pytest.mark.parametrize("mode", ["argmax", "sample", "mean"])
def test_fast_fill_equals_naive_fill(mode):
    net = make_net()
    x, hole = images(4, 12, 14), mixed_holes()
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    decoder = Decoder(mode, temperature=0.7, noise=noise) if mode == "sample" else Decoder(mode)
    x_in = x.clone()
    fast = net.fill(x, hole, decoder)
    naive = naive_fill(net, x, hole, decoder)
    assert torch.equal(x, x_in)  # the input is not modified
    assert torch.equal(fast, naive)
    # the fill is not trivial: the hole gets many different values
    assert to_levels(fast[hole[:, None].expand_as(fast)]).unique().numel() > 20


def test_fill_keeps_known_sub_pixels_and_writes_grid_values():
    net = make_net(seed=2)
    x, hole = images(4, 12, 14, seed=4), mixed_holes()
    out = net.fill(x, hole, Decoder("argmax"))
    known = ~hole[:, None].expand_as(x)
    assert torch.equal(out[known], quantize(x)[known])
    assert torch.equal(out[3], quantize(x)[3])  # the image without a hole
    filled = out[~known] * 255
    assert torch.equal(filled, filled.round()) and filled.min() >= 0 and filled.max() <= 255


def test_fill_with_an_empty_hole_returns_the_quantized_image():
    net = make_net()
    x = images(2, 5, 6)
    out = net.fill(x, torch.zeros(2, 5, 6, dtype=torch.bool), Decoder("argmax"))
    assert torch.equal(out, quantize(x))


def test_fill_rejects_a_hole_of_the_wrong_shape():
    with pytest.raises(ValueError, match="hole"):
        make_net().fill(images(2, 5, 6), torch.ones(2, 6, 5, dtype=torch.bool), Decoder("argmax"))


def test_cifar_centre_hole_matches_naive():
    """The CIFAR 8x8 centre hole (rows/cols 12..19) on 32x32 images."""
    net = make_net(seed=3, width=8, hidden_layers=1)
    x = images(2, 32, 32, seed=6)
    hole = torch.zeros(2, 32, 32, dtype=torch.bool)
    hole[:, 12:20, 12:20] = True
    assert torch.equal(net.fill(x, hole, Decoder("argmax")), naive_fill(net, x, hole, Decoder("argmax")))


# ------------------------------------------------------------------------------------- receptive field
def window_support(r: int, c: int, height: int, width: int, window: int = 5) -> set[tuple[int, int, int]]:
    return {
        (ch, i, j)
        for ch in range(3)
        for i in range(max(r - window + 1, 0), r + 1)
        for j in range(max(c - window + 1, 0), c + 1)
        if (i, j) != (r, c) and j < width and i < height
    }


@pytest.mark.parametrize("window", [5, 3])
@pytest.mark.parametrize("r,c", [(6, 7), (2, 1), (0, 0), (8, 9), (0, 5)])
def test_logits_read_exactly_the_causal_window(window, r, c):
    net = make_net(window=window)
    height, width = 9, 10
    x = images(1, height, width).requires_grad_(True)
    logits = net(x)
    weights = torch.randn(256, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    support = window_support(r, c, height, width, window)
    for k, own in enumerate([set(), {(0, r, c)}, {(0, r, c), (1, r, c)}]):
        (grad,) = torch.autograd.grad((logits[0, k, :, r, c] * weights).sum(), x, retain_graph=True)
        got = {tuple(p) for p in grad[0].nonzero().tolist()}
        assert got == support | own, f"head {'RGB'[k]} at ({r},{c})"
        assert (2, r, c) not in got
    if window == 5 and (r, c) == (6, 7):
        assert len(support) == 24 * 3  # an interior pixel: exactly the paper's 24 neighbours


@pytest.mark.parametrize("window", [5, 2])
def test_perturbing_t_or_later_leaves_logits_of_t_unchanged(window):
    assert_causal(make_net(window=window), images(1, 6, 7))


def test_causality_checks_catch_an_unmasked_target_tap():
    net = make_net()
    net.mask.fill_(1.0)  # the target pixel's own colours now reach its logits
    with pytest.raises(AssertionError):
        assert_causal(net, images(1, 6, 7))


def test_mask_is_applied_in_forward_and_not_saved():
    net = make_net()
    assert "mask" not in net.state_dict()
    x = images(1, 7, 7)
    y = x.clone()
    y[:, :, 6, 6] = 1.0 - y[:, :, 6, 6]  # the target pixel's own colours; the R head must not notice
    with torch.no_grad():
        assert torch.equal(net(x)[:, 0, :, 6, 6], net(y)[:, 0, :, 6, 6])


# ------------------------------------------------------------------------------------------- training, shapes
def test_a_few_adam_steps_lower_the_cross_entropy():
    torch.manual_seed(0)
    net = WindowPixelCNN(width=32, dropout=0.0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 8), torch.linspace(0, 1, 8), indexing="ij")
    x = quantize(torch.stack([yy, xx, (yy + xx) / 2]).expand(4, -1, -1, -1) * torch.rand(4, 3, 1, 1))
    target = to_levels(x)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = F.cross_entropy(net(x).transpose(1, 2), target)  # [B,256,3,H,W] against [B,3,H,W]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize("height,width", [(1, 1), (3, 7), (1, 5), (6, 1)])
def test_forward_and_fill_shapes_for_odd_sizes(height, width):
    net = make_net(width=6, hidden_layers=1)
    x = images(2, height, width)
    assert net(x).shape == (2, 3, 256, height, width)
    hole = torch.ones(2, height, width, dtype=torch.bool)
    hole[1, 0, 0] = False
    out = net.fill(x, hole, Decoder("argmax"))
    assert out.shape == x.shape
    assert torch.equal(out, naive_fill(net, x, hole, Decoder("argmax")))


def test_defaults_and_argument_checks():
    net = WindowPixelCNN()
    assert net.window_conv.weight.shape == (128, 3, 5, 5) and len(net.hidden) == 2
    assert net.head_g.in_channels == 129 and net.head_b.in_channels == 130
    assert WindowPixelCNN(hidden_layers=0, window=1)(torch.rand(1, 3, 2, 2)).shape == (1, 3, 256, 2, 2)
    for bad in ({"width": 0}, {"hidden_layers": -1}, {"window": 0}, {"window": 2.0}, {"dropout": 1.0}):
        with pytest.raises(ValueError):
            WindowPixelCNN(**bad)

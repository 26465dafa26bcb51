"""Attention blocks of the mGANprior attention variants (spec mganprior-pggan §3): SAGAN self-attention and
CBAM against naive references written with explicit loops, the PixelNorm property of spec §3.3, and
``build_attention``. All in float64 on tiny maps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from inpaint.nets.attention import CBAM, ChannelGate, SelfAttention, SpatialGate, build_attention, pixel_norm

B, C, H, W = 2, 16, 6, 4  # T = 24 positions; the authors' variant pools to 3 x 2 = 6 keys
VARIANTS = ("pytorch", "authors")
SCORES = ("dot", "scaled_dot")


def _x(shape=(B, C, H, W), seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _sa(score: str, variant: str, gamma: float = 0.0, channels: int = C, reduction: int = 8) -> SelfAttention:
    torch.manual_seed(1)
    m = SelfAttention(channels, score=score, variant=variant, reduction=reduction, gamma_init=gamma).double()
    return m.eval()  # eval: the spectral-norm power iteration does not move between two weight reads


def _conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> list[list[torch.Tensor]]:
    """A 1x1 conv applied position by position: ``out[i][j]`` is the output vector at pixel (i, j)."""
    w = conv.weight.detach()[:, :, 0, 0]
    b = conv.bias.detach() if conv.bias is not None else torch.zeros(w.shape[0], dtype=x.dtype)
    return [[w @ x[:, i, j] + b for j in range(x.shape[2])] for i in range(x.shape[1])]


def _naive_sa(m: SelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Self-attention of one sample ``x`` ``[C, H, W]`` with explicit loops: (output, attention rows)."""
    c, h, w = x.shape
    q, k, v = _conv1x1(m.query, x), _conv1x1(m.key, x), _conv1x1(m.value, x)
    queries = [q[i][j] for i in range(h) for j in range(w)]  # row-major positions
    if m.variant == "authors":  # keys/values: elementwise max over each 2x2 cell
        keys = [torch.stack([k[2 * i + a][2 * j + b] for a in (0, 1) for b in (0, 1)]).max(0).values
                for i in range(h // 2) for j in range(w // 2)]
        vals = [torch.stack([v[2 * i + a][2 * j + b] for a in (0, 1) for b in (0, 1)]).max(0).values
                for i in range(h // 2) for j in range(w // 2)]
    else:
        keys = [k[i][j] for i in range(h) for j in range(w)]
        vals = [v[i][j] for i in range(h) for j in range(w)]
    d_k = queries[0].numel()
    rows, outs = [], []
    for qi in queries:
        s = [float(qi @ kj) for kj in keys]
        if m.score == "scaled_dot":
            s = [e / math.sqrt(d_k) for e in s]
        top = max(s)
        ex = [math.exp(e - top) for e in s]
        z = sum(ex)
        a = [e / z for e in ex]
        rows.append(torch.tensor(a, dtype=x.dtype))
        outs.append(sum(aj * vj for aj, vj in zip(a, vals, strict=True)))
    o = torch.stack(outs, dim=1).reshape(-1, h, w)  # [C_v, H, W]
    if m.output is not None:
        wo = m.output.weight.detach()[:, :, 0, 0]
        o = torch.einsum("oc,chw->ohw", wo, o)
    return float(m.gamma.detach()) * o + x, torch.stack(rows)


# ----------------------------------------------------------------------------- self-attention


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("score", SCORES)
def test_sa_gamma_zero_is_exact_identity(score, variant):
    m = _sa(score, variant).train()
    x = _x()
    assert float(m.gamma.detach()) == 0.0
    assert torch.equal(m(x), x)
    # the first step of an inversion still moves gamma (and only gamma: the rest is multiplied by 0)
    m(x).pow(3).sum().backward()
    assert m.gamma.grad is not None and float(m.gamma.grad.abs()) > 0


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("score", SCORES)
def test_sa_matches_naive_reference(score, variant):
    m = _sa(score, variant, gamma=0.7)
    x = _x()
    with torch.no_grad():
        y, attn = m(x), m.attention(x)
    for n in range(B):
        ref_y, ref_a = _naive_sa(m, x[n])
        torch.testing.assert_close(y[n], ref_y, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(attn[n], ref_a, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(y, x)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("score", SCORES)
def test_sa_attention_rows_sum_to_one(score, variant):
    m = _sa(score, variant)
    with torch.no_grad():
        a = m.attention(_x(seed=3))
    keys = H * W // 4 if variant == "authors" else H * W
    assert a.shape == (B, H * W, keys)
    assert (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(B, H * W, dtype=a.dtype))


@pytest.mark.parametrize("variant", VARIANTS)
def test_scaled_dot_is_dot_with_scores_over_sqrt_dk(variant):
    # d_k = 32 // 4 = 8, so the two scores differ by a factor sqrt(8)
    dot, scaled = _sa("dot", variant, 0.5, 32, 4), _sa("scaled_dot", variant, 0.5, 32, 4)
    scaled.load_state_dict(dot.state_dict())
    assert scaled.key_channels == 8
    x = _x((B, 32, H, W), seed=5)
    with torch.no_grad():
        a_dot, a_scaled = dot.attention(x), scaled.attention(x)
        # softmax(E) = exp(E - c_row) / ... so log a_dot = E - c'_row; dividing by sqrt(d_k) keeps c'_row a
        # per-row constant, which softmax ignores
        torch.testing.assert_close(a_scaled, torch.softmax(a_dot.log() / math.sqrt(8), dim=-1))
        assert not torch.allclose(a_scaled, a_dot, atol=1e-3)
        # the forward pass is the dot block with the scaled weights put in
        o_dot = dot(x) - x
        assert not torch.allclose(o_dot, scaled(x) - x, atol=1e-6)


def test_sa_pytorch_variant_layout():
    m = SelfAttention(512)
    assert (m.key_channels, m.value_channels, m.output, m.spectral_norm) == (64, 512, None, False)
    assert m.query.bias is not None and not parametrize.is_parametrized(m.query)
    assert sum(p.numel() for p in m.parameters()) == 328_321  # spec §3.1


def test_sa_authors_variant_layout():
    m = SelfAttention(64, variant="authors")
    assert (m.key_channels, m.value_channels, m.spectral_norm) == (8, 32, True)
    assert m.output is not None and tuple(m.output.weight.shape) == (64, 32, 1, 1)
    for conv in (m.query, m.key, m.value, m.output):
        assert conv.bias is None and parametrize.is_parametrized(conv, "weight")
        # spectral norm: the effective 1x1 weight has largest singular value ~1 (torch's power iteration
        # estimate), the stored Xavier weight does not
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        raw = torch.linalg.matrix_norm(conv.parametrizations.weight.original.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1.0) < 0.05 and abs(float(raw) - 1.0) > 0.2
    assert SelfAttention(64, variant="paper").variant == "authors"
    assert SelfAttention(64, variant="pt").variant == "pytorch"
    assert not SelfAttention(64, variant="authors", spectral_norm=False).spectral_norm
    with pytest.raises(ValueError, match="even"):
        m(torch.randn(1, 64, 5, 4))


# ----------------------------------------------------------------------------- CBAM


def _naive_cbam(m: CBAM, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CBAM in train mode written out: (output, channel weights [B,C], pixel weights [B,H,W])."""
    b, c, h, w = x.shape
    lin1, lin2 = m.channel_gate.mlp[0], m.channel_gate.mlp[2]

    def mlp(vec):
        hid = lin1.weight.detach() @ vec + lin1.bias.detach()
        hid = torch.where(hid > 0, hid, torch.zeros_like(hid))
        return lin2.weight.detach() @ hid + lin2.bias.detach()

    mc = torch.empty(b, c, dtype=x.dtype)
    for n in range(b):
        flat = x[n].reshape(c, h * w)
        avg = flat.sum(1) / (h * w)
        mx = torch.stack([max(row) for row in flat])
        mc[n] = 1 / (1 + torch.exp(-(mlp(avg) + mlp(mx))))
    f1 = x * mc[:, :, None, None]

    sg = m.spatial_gate
    kw = sg.conv.weight.detach()[0]  # [2, k, k]; input 0 = channel max, input 1 = channel mean
    k = kw.shape[-1]
    r = k // 2
    logits = torch.zeros(b, h, w, dtype=x.dtype)
    for n in range(b):
        maps = [f1[n].max(0).values, f1[n].mean(0)]
        for i in range(h):
            for j in range(w):
                acc = 0.0
                for ch in range(2):
                    for di in range(k):
                        for dj in range(k):
                            ii, jj = i + di - r, j + dj - r
                            if 0 <= ii < h and 0 <= jj < w:
                                acc += float(kw[ch, di, dj]) * float(maps[ch][ii, jj])
                logits[n, i, j] = acc
    # BatchNorm2d(1) in train mode: batch statistics over (B, H, W), biased variance
    mean, var = logits.mean(), logits.var(unbiased=False)
    bn = sg.bn
    logits = (logits - mean) / torch.sqrt(var + bn.eps) * float(bn.weight) + float(bn.bias)
    ms = 1 / (1 + torch.exp(-logits))
    return f1 * ms[:, None], mc, ms


def _cbam(**kw) -> CBAM:
    torch.manual_seed(2)
    m = CBAM(32, reduction=8, spatial_kernel=3, **kw).double().train()
    if m.spatial_gate is not None and m.spatial_gate.bn is not None:
        with torch.no_grad():  # non-default affine so the reference exercises it
            m.spatial_gate.bn.weight.fill_(1.3)
            m.spatial_gate.bn.bias.fill_(-0.2)
    return m


def test_cbam_matches_naive_reference():
    m = _cbam()
    x = _x((B, 32, 5, 4), seed=7)
    with torch.no_grad():
        ref, mc, ms = _naive_cbam(m, x)
        torch.testing.assert_close(m.channel_gate.gate(x), mc[:, :, None, None])
        torch.testing.assert_close(m.spatial_gate.gate(m.channel_gate(x)), ms[:, None])
        torch.testing.assert_close(m(x), ref)


def test_cbam_layout_and_switches():
    m = CBAM(512)
    assert sum(p.numel() for p in m.parameters()) == 33_412  # spec §3.2
    assert m.spatial_gate.conv.bias is None and m.spatial_gate.conv.kernel_size == (7, 7)
    assert m.spatial_gate.bn.momentum == 0.01
    x = _x((1, 32, 4, 4))
    only_c, only_s = _cbam(use_spatial=False), _cbam(use_channel=False)
    assert only_c.spatial_gate is None and only_s.channel_gate is None
    with torch.no_grad():
        torch.testing.assert_close(only_c(x), only_c.channel_gate(x))
        torch.testing.assert_close(only_s(x), only_s.spatial_gate(x))
    assert SpatialGate(5, batch_norm=False).conv.bias is not None
    with pytest.raises(ValueError, match="nothing"):
        CBAM(32, use_channel=False, use_spatial=False)
    with pytest.raises(ValueError, match="odd"):
        CBAM(32, spatial_kernel=4)
    with pytest.raises(ValueError, match="reduction"):
        ChannelGate(8, reduction=16)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixel_norm_removes_spatial_gate_not_channel_gate(seed):
    """Spec §3.3: before PixelNorm a positive per-pixel factor shared by all channels cancels (exactly with
    eps = 0; with PGGAN's eps = 1e-8 up to a relative ~eps / (gate^2 * mean_c x^2))."""
    m = _cbam()
    x = _x((B, 32, 6, 6), seed=seed) * 3
    with torch.no_grad():
        ms = m.spatial_gate.gate(x)
        assert ms.shape == (B, 1, 6, 6) and ms.min() > 0 and ms.std() > 0.05  # a real, varying gate
        for eps, tol in ((0.0, 1e-12), (1e-8, 1e-4)):
            torch.testing.assert_close(pixel_norm(ms * x, eps), pixel_norm(x, eps), rtol=tol, atol=tol)
            torch.testing.assert_close(pixel_norm(m.spatial_gate(x), eps), pixel_norm(x, eps), rtol=tol, atol=tol)
            # the full CBAM is, after PixelNorm, just its channel gate ...
            torch.testing.assert_close(
                pixel_norm(m(x), eps), pixel_norm(m.channel_gate(x), eps), rtol=tol, atol=tol
            )
        # ... and the channel gate is not removed
        diff = (pixel_norm(m.channel_gate(x)) - pixel_norm(x)).abs().max()
        assert diff > 1e-2


def test_pixel_norm_definition():
    x = _x((2, 5, 3, 3))
    ref = x / torch.sqrt((x**2).sum(1, keepdim=True) / 5 + 1e-8)
    torch.testing.assert_close(pixel_norm(x), ref)


# ----------------------------------------------------------------------------- build_attention


def test_build_attention_choices():
    assert isinstance(build_attention("none", 16), nn.Identity)
    assert isinstance(build_attention("none", 16, score="dot"), nn.Identity)  # options ignored for none
    sa = build_attention("sa", 16, score="scaled_dot", variant="paper", gamma_init=0.1)
    assert isinstance(sa, SelfAttention) and (sa.score, sa.variant) == ("scaled_dot", "authors")
    assert float(sa.gamma.detach()) == pytest.approx(0.1)
    cb = build_attention("CBAM", 32, reduction=4, spatial_kernel=3)
    assert isinstance(cb, CBAM) and cb.channel_gate.mlp[0].out_features == 8


@pytest.mark.parametrize(
    ("args", "kwargs", "named"),
    [
        (("transformer", 16), {}, "attention type 'transformer'"),
        (("sa", 16), {"score": "cosine"}, "score 'cosine'"),
        (("sa", 16), {"variant": "tf"}, "variant 'tf'"),
        (("sa", 16), {"kernel": 3}, "'kernel'"),
        (("cbam", 32), {"score": "dot"}, "'score'"),
    ],
)
def test_build_attention_errors_name_the_option(args, kwargs, named):
    with pytest.raises(ValueError) as exc:
        build_attention(*args, **kwargs)
    assert named in str(exc.value)

"""PGGAN nets (inpaint.nets.pggan) and the official-weights loader (inpaint.models.pggan_weights).

256-px networks are only built on the meta device (shapes without compute); numerics use a 32-px net with
small widths.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inpaint.checkpoints import CheckpointMismatchError
from inpaint.models.pggan_weights import load_official_generator
from inpaint.nets.pggan import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdDev,
    PGGANDiscriminator,
    PGGANGenerator,
    PixelNorm,
    compose_layer,
    nf,
    real_images_at_lod,
    upsample2x,
)
from inpaint.weights import REGISTRY

SMALL = dict(resolution=32, z_dim=16, fmap_base=128, fmap_max=16)  # widths 16, 16, 16, 8 at 4, 8, 16, 32 px

# spec 1.2: (C, H, W) of the features after layer l of the 256-px generator
SHAPES_256 = {
    0: (512, 1, 1), 1: (512, 4, 4), 2: (512, 4, 4), 3: (512, 8, 8), 4: (512, 8, 8), 5: (512, 16, 16),
    6: (512, 16, 16), 7: (512, 32, 32), 8: (512, 32, 32), 9: (256, 64, 64), 10: (256, 64, 64),
    11: (128, 128, 128), 12: (128, 128, 128), 13: (64, 256, 256), 14: (64, 256, 256), 15: (3, 256, 256),
}


def small_generator(seed: int = 0, **kw) -> PGGANGenerator:
    torch.manual_seed(seed)
    g = PGGANGenerator(**{**SMALL, **kw})
    with torch.no_grad():  # non-zero biases, so a lost bias shows
        for name, p in g.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    return g


# ---------------------------------------------------------------- architecture and layer numbering


def test_widths_formula():
    assert [nf(s) for s in range(1, 8)] == [512, 512, 512, 512, 256, 128, 64]  # 4 .. 256 px, fmap_base 8192
    g = PGGANGenerator(32, 128, fmap_base=512, fmap_max=128, out_channels=3)
    assert [g.channels(r) for r in (4, 8, 16, 32)] == [128, 128, 64, 32]


def test_256_state_dict_matches_official_shapes():
    with torch.device("meta"):
        g = PGGANGenerator()
    sd = g.state_dict()
    assert list(sd)[:7] == ["lod", "layer0.weight", "layer0.bias", "layer1.weight", "layer1.bias",
                            "output0.weight", "output0.bias"]
    assert sd["layer0.weight"].shape == (512, 512, 4, 4)
    for i in range(1, 8):
        assert sd[f"layer{i}.weight"].shape == (512, 512, 3, 3)
    expected = {8: (256, 512), 9: (256, 256), 10: (128, 256), 11: (128, 128), 12: (64, 128), 13: (64, 64)}
    for i, (o, c) in expected.items():
        assert sd[f"layer{i}.weight"].shape == (o, c, 3, 3)
    assert sd["output6.weight"].shape == (3, 64, 1, 1)
    assert sum(k.startswith("layer") and k.endswith("weight") for k in sd) == 14
    assert sum(k.startswith("output") and k.endswith("weight") for k in sd) == 7


@pytest.mark.parametrize("l", range(16))
def test_256_composition_layer_shapes(l):  # noqa: E741
    with torch.device("meta"):
        g = PGGANGenerator()
    assert len(g.sequence()) == 15
    z = torch.empty(2, 512, device="meta")
    f = g.g1(z, l)
    assert tuple(f.shape) == (2, *SHAPES_256[l]) == (2, *g.feature_shape(l))
    assert tuple(g.g2(f, l).shape) == (2, 3, 256, 256)


def test_thesis_layers_and_formula():
    assert SHAPES_256[compose_layer(8)] == SHAPES_256[4] == (512, 8, 8)
    assert SHAPES_256[compose_layer(32)] == SHAPES_256[8] == (512, 32, 32)
    assert compose_layer(4, 1) == 1 and compose_layer(256, 2) == 14 and compose_layer(64, 1) == 9
    g = PGGANGenerator(**SMALL)
    assert g.feature_shape(compose_layer(16)) == (16, 16, 16)
    assert g.feature_shape(compose_layer(32)) == (8, 32, 32)
    with pytest.raises(ValueError):
        compose_layer(12)


def test_g1_g2_compose_to_forward_for_every_layer():
    g = small_generator().eval()
    z = torch.randn(3, SMALL["z_dim"])
    with torch.no_grad():
        x = g(z)
        assert x.shape == (3, 3, 32, 32)
        for l in range(g.num_layers + 2):  # noqa: E741
            f = g.g1(z, l)
            assert f.shape[1:] == g.feature_shape(l)
            torch.testing.assert_close(g.g2(f, l), x, rtol=0, atol=0)
        assert not torch.equal(g.g2(g.g1(z, 4) * 0.5 + 0.1, 4), x)  # g2 really uses its input
    with pytest.raises(ValueError, match="composition layer"):
        g.g1(z, g.num_layers + 2)


def test_split_at_integer_lod_and_refused_at_fractional():
    g = small_generator().eval()
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        x = g(z, lod=1.0)
        assert x.shape == (2, 3, 16, 16)
        seq = g.sequence(lod=1.0)
        assert len(seq) == 7 and seq[-1] is g.to_rgb(2)
        for l in range(len(seq) + 1):  # noqa: E741
            torch.testing.assert_close(g.g2(g.g1(z, l, lod=1.0), l, lod=1.0), x, rtol=0, atol=0)
    with pytest.raises(ValueError, match="integer lod"):
        g.g1(z, 3, lod=0.5)


def test_g2_starts_with_pixel_norm():
    # spec 1.4: G2 is invariant to a positive per-pixel rescaling of its input features
    g = small_generator().eval()
    with torch.no_grad():
        f = g.g1(torch.randn(2, SMALL["z_dim"]), 6)
        gate = torch.rand(2, 1, *f.shape[-2:]) + 0.05
        torch.testing.assert_close(g.g2(f * gate, 6), g.g2(f, 6), rtol=1e-4, atol=1e-5)
        assert (g.g2(f * torch.rand(1, f.shape[1], 1, 1), 6) - g.g2(f, 6)).abs().max() > 1e-3
        last = g.num_layers  # G2 = toRGB alone: it starts with pixel norm too
        f = g.g1(torch.randn(2, SMALL["z_dim"]), last)
        torch.testing.assert_close(g.g2(f * 3.0, last), g.g2(f, last), rtol=1e-4, atol=1e-5)


def test_generator_layer_semantics_by_hand():
    g = small_generator().eval()
    z = torch.randn(2, SMALL["z_dim"])
    pn = lambda x: x / (x.pow(2).mean(1, keepdim=True) + 1e-8).sqrt()  # noqa: E731
    with torch.no_grad():
        # layer0: the official dense layer as a 4x4 conv on 1x1 with padding 3, so pixel (y, x) uses the
        # kernel tap (3 - y, 3 - x)
        l0 = g.layer(0)
        w = l0.weight * math.sqrt(2 / (16 * 16))
        dense = torch.einsum("bi,oiyx->boyx", pn(z), w.flip(2, 3)) + l0.bias[None, :, None, None]
        f1 = g.g1(z, 1)
        torch.testing.assert_close(f1, F.leaky_relu(dense, 0.2), rtol=1e-5, atol=1e-5)
        # layer2: pixel norm, then nearest upsampling, then the 3x3 conv, bias, LeakyReLU
        f2 = g.g1(z, 2)
        l2 = g.layer(2)
        up = pn(f2).repeat_interleave(2, 2).repeat_interleave(2, 3)
        ref = F.conv2d(up, l2.weight * math.sqrt(2 / (16 * 9)), l2.bias, padding=1)
        torch.testing.assert_close(g.g1(z, 3), F.leaky_relu(ref, 0.2), rtol=1e-5, atol=1e-5)
        # toRGB: pixel norm, 1x1 conv with gain 1, bias, no activation (values outside [0, inf) survive)
        f = g.g1(z, g.num_layers)
        rgb = g.to_rgb(g.num_blocks - 1)
        ref = F.conv2d(pn(f), rgb.weight / math.sqrt(f.shape[1]), rgb.bias)
        torch.testing.assert_close(g.g2(f, g.num_layers), ref, rtol=1e-5, atol=1e-5)
        assert (ref < 0).any()


# ---------------------------------------------------------------- progressive growing


def _plain_output(g: PGGANGenerator, z: torch.Tensor, top: int) -> torch.Tensor:
    """Hand-run: blocks 0..top, then toRGB of block top."""
    x = z[:, :, None, None]
    for b in range(top + 1):
        x = g.layer(2 * b + 1)(g.layer(2 * b)(x))
    return g.to_rgb(top)(x), x


def test_fade_in_integer_lod_is_the_plain_network():
    g = small_generator().eval()
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        for lod in range(g.num_blocks):
            top = g.num_blocks - 1 - lod
            ref, _ = _plain_output(g, z, top)
            out = g(z, lod=float(lod))
            assert out.shape[-1] == 4 * 2**top
            torch.testing.assert_close(out, ref, rtol=0, atol=0)
            g.set_lod(lod)  # the set level of detail is the default
            torch.testing.assert_close(g(z), ref, rtol=0, atol=0)
        g.set_lod(0)


@pytest.mark.parametrize("lod", [0.25, 1.5, 2.75])
def test_fade_in_fractional_lod_is_the_documented_blend(lod):
    g = small_generator().eval()
    z = torch.randn(2, SMALL["z_dim"])
    top, t = g.num_blocks - 1 - math.floor(lod), lod - math.floor(lod)
    with torch.no_grad():
        new, _ = _plain_output(g, z, top)
        old, _ = _plain_output(g, z, top - 1)
        old_up = old.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
        ref = (1 - t) * new + t * old_up
        torch.testing.assert_close(g(z, lod=lod), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="lod"):
        g(z, lod=g.num_blocks - 0.5)


def test_real_images_at_lod():
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(real_images_at_lod(x, 0.0), x)
    x16 = F.avg_pool2d(x, 2)
    torch.testing.assert_close(real_images_at_lod(x, 1.0), x16)
    ref = 0.75 * x16 + 0.25 * upsample2x(F.avg_pool2d(x16, 2))
    torch.testing.assert_close(real_images_at_lod(x, 1.25), ref)


# ---------------------------------------------------------------- building blocks


def test_equalized_lr_runtime_weight():
    torch.manual_seed(0)
    conv = EqualizedConv2d(6, 5, 3)
    torch.testing.assert_close(conv.runtime_weight(), conv.weight * math.sqrt(2) / math.sqrt(6 * 9))
    x = torch.randn(2, 6, 7, 7)
    with torch.no_grad():
        conv.bias.normal_()
        ref = F.conv2d(x, conv.weight * math.sqrt(2 / 54), conv.bias, padding=1)
        torch.testing.assert_close(conv(x), ref)
    assert abs(EqualizedConv2d(64, 64, 3).weight.std().item() - 1) < 0.05  # stored N(0, 1)
    rgb = PGGANGenerator(**SMALL).to_rgb(0)
    torch.testing.assert_close(rgb.runtime_weight(), rgb.weight / math.sqrt(16))  # gain 1
    dense = EqualizedLinear(20, 4, gain=1.0)
    torch.testing.assert_close(dense.runtime_weight(), dense.weight / math.sqrt(20))
    first = PGGANGenerator(**SMALL).layer(0)
    assert first.weight.shape == (16, 16, 4, 4)
    torch.testing.assert_close(first.runtime_weight(), first.weight * math.sqrt(2 / (16 * 16)))


def test_pixel_norm_unit_mean_square():
    x = torch.randn(3, 10, 5, 5) * torch.rand(3, 1, 5, 5) * 7
    y = PixelNorm()(x)
    torch.testing.assert_close(y.pow(2).mean(dim=1), torch.ones(3, 5, 5), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y * x.pow(2).mean(dim=1, keepdim=True).sqrt(), x, rtol=1e-5, atol=1e-5)


def test_minibatch_stddev_hand_computed():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 2, 2)
    out = MinibatchStdDev(group_size=2)(x)
    assert out.shape == (4, 4, 2, 2)
    torch.testing.assert_close(out[:, :3], x)
    # groups: sample i is in group i % 2, i.e. {0, 2} and {1, 3}
    for members in ((0, 2), (1, 3)):
        a, b = x[members[0]], x[members[1]]
        mean = (a + b) / 2
        std = (((a - mean) ** 2 + (b - mean) ** 2) / 2 + 1e-8).sqrt()
        for i in members:
            torch.testing.assert_close(out[i, 3], torch.full((2, 2), std.mean().item()))
    default = MinibatchStdDev()
    assert default.group_size == 4
    x4 = torch.randn(4, 2, 1, 1)
    torch.testing.assert_close(default(x4)[:, 2].flatten(), (x4.var(0, unbiased=False) + 1e-8).sqrt().mean().expand(4))
    with pytest.raises(ValueError, match="multiple"):
        MinibatchStdDev(4)(torch.randn(6, 2, 2, 2))


# ---------------------------------------------------------------- discriminator


def test_discriminator_shapes_and_lod():
    torch.manual_seed(0)
    d = PGGANDiscriminator(32, fmap_base=128, fmap_max=16, mbstd_group=2)
    assert d.conv.in_channels == 16 + 1 and d.dense0.in_features == 16 * 16 and d.dense1.out_features == 1
    assert d.dense1.gain == 1.0
    x = torch.randn(4, 3, 32, 32)
    assert d(x).shape == (4, 1)
    for lod, res in ((1.0, 16), (1.5, 16), (3.0, 4)):
        assert d.input_resolution(lod) == res
        assert d(torch.randn(4, 3, res, res), lod=lod).shape == (4, 1)
    with pytest.raises(ValueError, match="16x16"):
        d(x, lod=1.5)
    with torch.device("meta"):
        big = PGGANDiscriminator()
    assert big(torch.empty(4, 3, 256, 256, device="meta")).shape == (4, 1)
    assert big.from_rgb[6].out_channels == 64 and big.blocks[5].conv1.out_channels == 128


def test_discriminator_fade_in_blend():
    torch.manual_seed(0)
    d = PGGANDiscriminator(32, fmap_base=128, fmap_max=16, mbstd_group=2).eval()
    img = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tail = lambda x: d(x, lod=2.0)  # noqa: E731  (the 8x8 network)
        plain16 = d(img, lod=1.0)
        t = 0.25
        # hand blend: the 16-px block's output and the skip path at 8 px, then the rest
        x_new = d.blocks[1](d.from_rgb[2](img))
        x_old = d.from_rgb[1](F.avg_pool2d(img, 2))
        x = (1 - t) * x_new + t * x_old
        x = d.blocks[0](x)
        x = F.leaky_relu(d.conv(d.mbstd(x)), 0.2)
        ref = d.dense1(F.leaky_relu(d.dense0(x.flatten(1)), 0.2))
        torch.testing.assert_close(d(img, lod=1.25), ref, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(plain16, ref) and tail(F.avg_pool2d(img, 2)).shape == (2, 1)


# ---------------------------------------------------------------- official weight files


def _mganprior_file(g: PGGANGenerator) -> dict[str, torch.Tensor]:
    """A flat mGANprior/InterFaceGAN state dict, written key by key from the spec's names."""
    sd = {"lod": torch.tensor(0.0)}
    for i in range(g.num_layers):
        sd[f"layer{i}.conv.weight"] = g.layer(i).weight.detach().clone()
        sd[f"layer{i}.wscale.bias"] = g.layer(i).bias.detach().clone()
    for j in range(g.num_blocks):
        sd[f"output{j}.conv.weight"] = g.to_rgb(j).weight.detach().clone()
        sd[f"output{j}.wscale.bias"] = g.to_rgb(j).bias.detach().clone()
    return sd


def _genforce_file(g: PGGANGenerator, other: PGGANGenerator) -> dict[str, dict[str, torch.Tensor]]:
    """A genforce model-zoo dict; ``generator_smooth`` is ``g``, ``generator`` a different net."""
    def plain(net):
        sd = {"lod": torch.tensor(0.0)}
        for i in range(net.num_layers):
            sd[f"layer{i}.weight"], sd[f"layer{i}.bias"] = net.layer(i).weight.detach(), net.layer(i).bias.detach()
        for j in range(net.num_blocks):
            sd[f"output{j}.weight"], sd[f"output{j}.bias"] = net.to_rgb(j).weight.detach(), net.to_rgb(j).bias.detach()
        return sd

    return {"generator": plain(other), "discriminator": {"layer0.weight": torch.zeros(1)},
            "generator_smooth": plain(g)}


def test_loader_mganprior_layout(tmp_path):
    src, dst = small_generator(1).eval(), small_generator(2).eval()
    path = tmp_path / "pggan_tiny_generator.pth"
    torch.save(_mganprior_file(src), path)
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        assert not torch.allclose(src(z), dst(z))
        report = load_official_generator(dst, path)
        torch.testing.assert_close(dst(z), src(z), rtol=0, atol=0)
    assert report["layout"] == "mganprior" and report["entry"] is None and report["lod"] == 0.0
    assert report["loaded"] == len(dst.state_dict())


def test_loader_genforce_layout_prefers_generator_smooth(tmp_path):
    src, other, dst = small_generator(1).eval(), small_generator(3).eval(), small_generator(2).eval()
    path = tmp_path / "pggan_tiny.pth"
    torch.save(_genforce_file(src, other), path)
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        report = load_official_generator(dst, path)
        torch.testing.assert_close(dst(z), src(z), rtol=0, atol=0)
    assert report["layout"] == "genforce" and report["entry"] == "generator_smooth"
    torch.save({"generator": _genforce_file(other, other)["generator"]}, path)
    assert load_official_generator(dst, path)["entry"] == "generator"
    torch.testing.assert_close(dst(z), other(z), rtol=0, atol=0)


def test_loader_wrong_shape_names_the_key(tmp_path):
    sd = _mganprior_file(small_generator(1))
    sd["layer3.conv.weight"] = torch.zeros(7, 16, 3, 3)
    dst = small_generator(2)
    expected = list(dst.layer(3).weight.shape)
    assert expected == [16, 16, 3, 3]
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as e:
        load_official_generator(dst, path)
    msg = str(e.value)
    assert str(path) in msg and "'layer3.weight'" in msg and str(expected) in msg
    assert str(list(sd["layer3.conv.weight"].shape)) in msg
    assert all(torch.equal(v, before[k]) for k, v in dst.state_dict().items())  # nothing loaded


def test_loader_resolution_mismatch_lists_keys(tmp_path):
    path = tmp_path / "pggan64.pth"
    torch.save(_mganprior_file(small_generator(1, resolution=64)), path)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys .*'layer8\.bias'.*'output4\.weight'.*resolution=64"):
        load_official_generator(small_generator(2), path)
    path16 = tmp_path / "pggan16.pth"
    torch.save(_mganprior_file(small_generator(1, resolution=16)), path16)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys .*'layer6\.bias'"):
        load_official_generator(small_generator(2), path16)


def test_loader_refuses_other_models(tmp_path):
    dst = small_generator()
    path = tmp_path / "isnet.pth"
    torch.save({"generator": {"stem.conv.weight_orig": torch.zeros(3, 3, 1, 1), "head.bias": torch.zeros(3)}}, path)
    with pytest.raises(CheckpointMismatchError, match=r"isnet\.pth \(entry 'generator'\) is not a PGGAN generator"):
        load_official_generator(dst, path)
    disc = tmp_path / "disc.pth"
    torch.save(PGGANDiscriminator(32, 128, 16).state_dict(), disc)
    with pytest.raises(CheckpointMismatchError, match="not a PGGAN generator"):
        load_official_generator(dst, disc)
    junk = tmp_path / "page.pth"
    junk.write_text("<html>sign in</html>")
    with pytest.raises(CheckpointMismatchError, match="cannot read"):
        load_official_generator(dst, junk)
    with pytest.raises(CheckpointMismatchError, match="does not exist"):
        load_official_generator(dst, tmp_path / "nope.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(CheckpointMismatchError, match="holds no PGGAN generator"):
        load_official_generator(dst, tmp_path / "list.pth")


def test_registry_has_the_pggan_priors(monkeypatch, tmp_path):
    for name in ("pggan_bedroom256", "pggan_churchoutdoor256", "pggan_cat256", "pggan_dog256"):
        spec = REGISTRY[name]
        assert spec.filename == f"{name}.pth" and spec.url.startswith("https://") and spec.sha256 is None
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match=r"pggan_bedroom256\.pth.*model\.prior\.weights=null"):
        load_official_generator(small_generator(), "pggan_bedroom256", offline_hint="model.prior.weights=null")


def test_registry_name_loads_from_the_cache_unverified(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    src, dst = small_generator(1).eval(), small_generator(2).eval()
    cached = tmp_path / "hub" / "checkpoints" / "pggan_cat256.pth"
    cached.parent.mkdir(parents=True)
    torch.save(_genforce_file(src, src), cached)
    with caplog.at_level("WARNING", logger="inpaint.weights"):
        report = load_official_generator(dst, "pggan_cat256")
    assert report["path"] == str(cached) and "no published checksum" in caplog.text
    z = torch.randn(1, SMALL["z_dim"])
    with torch.no_grad():
        torch.testing.assert_close(dst(z), src(z), rtol=0, atol=0)

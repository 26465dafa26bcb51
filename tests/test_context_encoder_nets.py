"""Context-encoder networks (spec ``cifar-models-and-scnn.md`` A3, A4.1-A4.3): parameter counts, shapes at
32 and 128 px, the overlap weight map, refusal of other sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inpaint.nets.context_encoder import (
    BACKBONES,
    Bottleneck,
    ContextDiscriminator,
    ContextEncoderGenerator,
    DeconvDecoder,
    Encoder,
    FCDecoder,
    PathakDecoder,
    decoder_plan,
    geometry,
    hole_slice,
    overlap_weight_map,
    pathak_init,
    window_slice,
)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ------------------------------------------------------------------------------------- the spec's numbers
def test_spec_a3_parameter_counts():
    assert n_params(Encoder(32, "vgg", "pool")) == pytest.approx(1.14e6, abs=0.01e6)  # "convs about 1.14 M"
    assert n_params(Bottleneck(256, 512)) == pytest.approx(2.10e6, abs=0.005e6)  # FC1
    assert n_params(FCDecoder(512, 8)) == pytest.approx(0.10e6, abs=0.005e6)  # FC2 B -> 192
    assert n_params(Bottleneck(256, 2048)) == pytest.approx(8.4e6, abs=0.05e6)  # B = 2048
    assert n_params(FCDecoder(512, 16)) == 512 * 768 + 768  # CE-AE-ov: B -> 768
    # the conv form of FC1 holds the same weights
    assert n_params(Bottleneck(256, 512, form="conv")) == n_params(Bottleneck(256, 512))


@pytest.mark.parametrize(
    ("backbone", "variant", "expected"),
    [
        ("vgg", "pool", 1_146_304),
        ("vgg", "strided", 1_921_344),
        ("pathak", "pool", 659_200),
        ("resnet", "pool", 4_021_824),
        ("inception", "pool", 344_768),
        ("inception", "strided", 1_119_808),
    ],
)
def test_encoder_parameter_counts(backbone, variant, expected):
    assert n_params(Encoder(32, backbone, variant)) == expected


@pytest.mark.parametrize(
    ("backbone", "decoder", "overlap", "expected"),
    [
        ("vgg", "fc", 0, 3_342_976),  # CE-AE, B = 512
        ("vgg", "fc", 4, 3_638_464),  # CE-AE-ov
        ("vgg", "deconv", 4, 6_192_003),  # G-VGG
        ("vgg", "deconv", 0, 6_025_539),
        ("pathak", None, 4, 5_385_728),  # G-Pathak32
        ("pathak", None, 0, 4_867_328),
        ("resnet", "fc", 0, 6_218_496),
        ("resnet", "deconv", 4, 9_067_523),
        ("inception", "fc", 0, 2_541_440),
        ("inception", "deconv", 4, 5_390_467),
    ],
)
def test_generator_parameter_counts(backbone, decoder, overlap, expected):
    assert n_params(ContextEncoderGenerator(32, overlap, backbone, decoder=decoder)) == expected


def test_generator_parameter_counts_128px():
    assert n_params(ContextEncoderGenerator(128, 4, "vgg", decoder="fc")) == 21_581_440
    assert n_params(ContextEncoderGenerator(128, 4, "vgg", decoder="deconv")) == 38_450_051
    assert n_params(ContextEncoderGenerator(128, 4, "pathak")) == 35_011_072


def test_discriminator_parameter_counts():
    assert n_params(ContextDiscriminator(32, "image")) == 6_273_025
    assert n_params(ContextDiscriminator(16, "patch")) == 372_225
    assert n_params(ContextDiscriminator(128, "image")) == 8_633_345
    assert n_params(ContextDiscriminator(32, "image", norm="none")) == 6_271_105  # biases instead of BN


# ------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize(("size", "overlap", "out"), [(32, 0, 8), (32, 4, 16), (128, 0, 64), (128, 4, 72)])
def test_generator_shapes(backbone, size, overlap, out):
    for decoder in ("fc", "deconv", "pathak"):
        g = ContextEncoderGenerator(size, overlap, backbone, width=8, bottleneck=16, decoder=decoder).eval()
        with torch.no_grad():
            y = g(torch.zeros(2, 3, size, size))
        assert y.shape == (2, 3, out, out)
        assert y.abs().max() <= 1.0  # tanh


def test_depth_follows_the_size():
    assert len([m for m in Encoder(32, "vgg").modules() if isinstance(m, nn.MaxPool2d)]) == 3
    assert len([m for m in Encoder(128, "vgg").modules() if isinstance(m, nn.MaxPool2d)]) == 5
    for size in (32, 128):
        for bb in BACKBONES:
            with torch.no_grad():
                assert Encoder(size, bb, width=8).eval()(torch.zeros(1, 3, size, size)).shape[-2:] == (4, 4)
    assert [decoder_plan(o) for o in (8, 16, 64, 72)] == [(4, 1), (4, 2), (4, 4), (9, 3)]
    assert len([m for m in DeconvDecoder(16, 16).modules() if isinstance(m, nn.ConvTranspose2d)]) == 2
    assert len([m for m in PathakDecoder(16, 8).modules() if isinstance(m, nn.ConvTranspose2d)]) == 2


@pytest.mark.parametrize(("size", "d_input", "convs"), [(32, "image", 6), (16, "patch", 3), (128, "image", 7), (72, "patch", 6)])
def test_discriminator_shapes(size, d_input, convs):
    d = ContextDiscriminator(size, d_input, width=8).eval()
    strided = [m for m in d.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert len(strided) == convs
    assert not isinstance(d.net[1], nn.BatchNorm2d)  # no norm on the first layer
    assert not isinstance(d.net[-1], nn.Sigmoid)
    with torch.no_grad():
        assert d(torch.randn(3, 3, size, size)).shape == (3,)


# ------------------------------------------------------------------------------------- geometry, weights, init
def test_geometry_and_weight_map():
    g = geometry(32, 4)
    assert (g.hole, g.window, g.hole_slice, g.window_slice) == (8, 16, slice(12, 20), slice(8, 24))
    assert hole_slice(32) == slice(12, 20) and window_slice(32, 4) == slice(8, 24)
    assert window_slice(128, 4) == slice(28, 100) and hole_slice(128) == slice(32, 96)
    w = overlap_weight_map(16, 8)
    assert int((w == 1).sum()) == 64 and int((w == 20).sum()) == 192
    assert torch.equal(w[4:12, 4:12], torch.ones(8, 8))
    assert torch.equal(overlap_weight_map(8, 8), torch.ones(8, 8))
    assert int((overlap_weight_map(16, 8, 10.0) == 10).sum()) == 192


@pytest.mark.parametrize("size", [48, 64, 256])
def test_other_sizes_are_refused(size):
    with pytest.raises(ValueError, match=rf"image size {size}.*data.image_size=32 with mask=cifar_center.*128"):
        ContextEncoderGenerator(size)
    with pytest.raises(ValueError, match="data.image_size=32"):
        geometry(32, 0, hole=16)
    with pytest.raises(ValueError, match="overlap"):
        geometry(32, 5)
    with pytest.raises(ValueError, match="built for 32x32"):
        ContextEncoderGenerator(32, width=8, bottleneck=16)(torch.zeros(1, 3, 64, 64))


def test_bad_choices_name_the_options():
    for kwargs, pattern in [
        ({"backbone": "alexnet"}, "vgg, pathak, resnet, inception"),
        ({"variant": "avg"}, "pool, strided"),
        ({"decoder": "mlp"}, "fc, deconv, pathak"),
        ({"dropout": "all"}, "bottleneck, everywhere, none"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            ContextEncoderGenerator(32, **kwargs)
    with pytest.raises(ValueError, match="image, patch"):
        ContextDiscriminator(32, "window")


def test_dropout_options():
    def drops(**kw):
        return sum(isinstance(m, nn.Dropout) for m in ContextEncoderGenerator(32, width=8, bottleneck=16, **kw).modules())

    assert drops() == 1 and drops(dropout="none") == 0 and drops(dropout="everywhere") > 6


def test_pathak_init():
    torch.manual_seed(0)
    g = pathak_init(ContextEncoderGenerator(32, 4, "pathak"))
    convs = [m.weight for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    w = torch.cat([c.flatten() for c in convs])
    assert w.std().item() == pytest.approx(0.02, rel=0.05) and abs(w.mean().item()) < 1e-3
    bns = [m for m in g.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    gamma = torch.cat([b.weight.flatten() for b in bns])
    assert gamma.mean().item() == pytest.approx(1.0, abs=0.01) and gamma.std().item() == pytest.approx(0.02, rel=0.2)
    assert all(not b.bias.any() for b in bns)
    assert all(not isinstance(m, nn.Conv2d | nn.ConvTranspose2d) or m.bias is None for m in g.modules())

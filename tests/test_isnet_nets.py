"""ISNet generators and the PatchGAN discriminator (spec ``isnet.md`` sections 2, 2.7 and 3); the loader of
the authors' generator weights is tested in test_isnet_weights.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inpaint.nets.isnet import GENERATOR_VARIANTS, ISNetGenerator, PatchDiscriminator, build_generator
from inpaint.nets.isnet_blocks import check_size, init_weights
from inpaint.nets.isnet_variants import ISNetBase, ISNetBaseFF, UNetLikeGenerator


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def is_sn(conv: nn.Module) -> bool:
    return hasattr(conv, "weight_orig") and hasattr(conv, "weight_u") and hasattr(conv, "weight_v")


def convs(net: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]


def conv_groups(net: nn.Module) -> int:
    return len({k.rpartition(".")[0] for k in net.state_dict()})


# ------------------------------------------------------------------------------------- sizes and API
@pytest.mark.parametrize(
    ("variant", "blocks", "expected"),
    [
        ("isnet", 1, 19_908_259),
        ("isnet", 2, 21_530_275),
        ("isnet", 3, 23_152_291),
        ("isnet", 4, 24_774_307),
        ("base", 4, 16_516_995),
        ("base_ff", 4, 14_610_083),
        ("unet", 4, 24_403_715),
    ],
)
@pytest.mark.slow
def test_generator_parameter_counts(variant, blocks, expected):
    net = build_generator(variant, blocks)
    assert n_params(net) == expected


def test_discriminator_parameter_count():
    assert n_params(PatchDiscriminator()) == 2_763_776


def test_build_generator_classes_and_errors():
    assert GENERATOR_VARIANTS == ("isnet", "base", "base_ff", "unet")
    classes = (ISNetGenerator, ISNetBase, ISNetBaseFF, UNetLikeGenerator)
    for variant, cls in zip(GENERATOR_VARIANTS, classes, strict=True):
        net = build_generator(variant, blocks=1)
        assert type(net) is cls
        assert net.size_multiple == (8 if variant == "unet" else 16)
    with pytest.raises(ValueError, match=r"'resnet'.*isnet.*base.*base_ff.*unet"):
        build_generator("resnet")
    for bad in (0, 5):
        with pytest.raises(ValueError, match=rf"blocks={bad}.*\(1, 2, 3, 4\)"):
            build_generator("isnet", bad)
    with pytest.raises(ValueError, match="blocks"):
        ISNetGenerator(blocks=5)


@pytest.mark.parametrize("variant", GENERATOR_VARIANTS)
@pytest.mark.slow
def test_generator_shapes_and_range(variant):
    torch.manual_seed(0)
    net = build_generator(variant, blocks=1)
    for h, w in ((32, 32), (64, 48)):
        x = torch.rand(2, 3, h, w)
        net.train()
        y = net(x)
        assert y.shape == x.shape
        assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
        net.eval()
        with torch.no_grad():
            y = net(x)
        assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1


@pytest.mark.slow
def test_full_isnet_forward_at_256():
    torch.manual_seed(0)
    net = ISNetGenerator().eval()
    with torch.no_grad():
        y = net(torch.rand(1, 3, 256, 256))
    assert y.shape == (1, 3, 256, 256)
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("variant", GENERATOR_VARIANTS)
def test_size_not_divisible_raises(variant):
    net = build_generator(variant, blocks=1)
    m = net.size_multiple
    with pytest.raises(ValueError, match=rf"divisible by {m}, got {2 * m - 2}x{2 * m}.*data.image_size"):
        net(torch.rand(1, 3, 2 * m - 2, 2 * m))


def test_check_size_message():
    check_size(32, 48, 16, "ISNetGenerator")
    with pytest.raises(ValueError) as err:
        check_size(30, 32, 16, "ISNetGenerator")
    assert str(err.value) == (
        "ISNetGenerator needs H and W divisible by 16, got 30x32: crop or pad the input (data.image_size=32)"
    )
    with pytest.raises(ValueError, match=r"got 250x100.*data.image_size=\[256, 96\]"):
        check_size(250, 100, 16, "ISNetGenerator")


# ------------------------------------------------------------------------------ architecture details
def test_channel_plan_of_spec_2_3():
    """Phase outputs 32@H plus 64/128/256/512 at H/2..H/16, and the conv widths of phase 4."""
    net = ISNetGenerator(blocks=1).eval()
    seen = []
    for phase in net.phases:
        phase.register_forward_hook(lambda mod, inp, out: seen.append([tuple(t.shape[1:]) for t in out]))
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 64))
    assert seen == [
        [(32, 64, 64), (64, 32, 32)],
        [(32, 64, 64), (128, 16, 16)],
        [(32, 64, 64), (256, 8, 8)],
        [(32, 64, 64), (512, 4, 4)],
    ]
    p4 = net.phases[3]
    shape = lambda conv: tuple(conv.weight_orig.shape[:2])  # noqa: E731  (out, in)
    assert [shape(c) for c in p4.hi_to_lo.modules() if isinstance(c, nn.Conv2d)] == [
        (64, 32), (128, 64), (256, 128), (512, 256)
    ]
    assert all(c.stride == (2, 2) for c in p4.hi_to_lo.modules() if isinstance(c, nn.Conv2d))
    assert [shape(c) for c in p4.lo_to_hi.modules() if isinstance(c, nn.Conv2d)] == [
        (512, 256), (256, 128), (128, 64)
    ]
    assert shape(p4.lo_down[0]) == (512, 256) and p4.lo_down[0].stride == (2, 2)
    assert shape(p4.hi_agg[0]) == (32, 64) and shape(p4.lo_agg[0]) == (512, 1024)
    assert [c.dilation for c in p4.hi_blocks.modules() if isinstance(c, nn.Conv2d)] == [(1, 1), (1, 1)]
    assert [c.dilation for c in p4.lo_blocks.modules() if isinstance(c, nn.Conv2d)] == [(2, 2), (1, 1)]
    assert [shape(c) for c in net.fusion_up.modules() if isinstance(c, nn.Conv2d)] == [
        (1024, 512), (512, 256), (256, 128), (128, 64)
    ]
    assert tuple(net.fusion_conv.weight_orig.shape) == (32, 64, 7, 7)
    assert tuple(net.head.weight_orig.shape) == (3, 32, 3, 3)
    # ablation widths (spec 2.7): bilinear low->high keeps c_l channels; Base+FF has a 256-wide phase 4
    base, base_ff = ISNetBase(blocks=1), ISNetBaseFF(blocks=1)
    assert [tuple(p.hi_agg[0].weight_orig.shape[:2]) for p in base.phases] == [(32, 32), (32, 96), (32, 160), (32, 288)]
    assert tuple(base_ff.phases[3].lo_agg[0].weight_orig.shape[:2]) == (256, 1024)
    assert tuple(base_ff.fusion_conv.weight_orig.shape[:2]) == (32, 288)
    assert not is_sn(base.head) and not is_sn(base_ff.head)


def test_spectral_norm_and_bias_placement():
    net = ISNetGenerator(blocks=1)
    all_convs = convs(net)
    assert len(all_convs) == 50
    for name, conv in all_convs:
        if name == "stem.shortcut":
            assert not is_sn(conv) and not hasattr(conv, "weight_orig") and conv.bias is None
            assert conv.kernel_size == (1, 1)
        else:
            assert is_sn(conv), name
            assert (conv.bias is not None) == (name in ("fusion_conv", "head")), name
    keys = net.state_dict()
    assert "stem.shortcut.weight" in keys and "stem.conv1.weight_orig" in keys and "stem.conv1.weight_v" in keys
    # only tanh as activation in the full ISNet (spec 2.5)
    acts = {type(m) for m in net.modules() if isinstance(m, nn.Tanh | nn.LeakyReLU | nn.ReLU)}
    assert acts == {nn.Tanh}
    disc = PatchDiscriminator()
    assert all(is_sn(c) and c.bias is None and c.kernel_size == (4, 4) for _, c in convs(disc))
    unet = UNetLikeGenerator(blocks=1)
    assert all(not is_sn(c) and c.bias is not None for _, c in convs(unet))


def test_init_std():
    torch.manual_seed(0)
    net = ISNetGenerator(blocks=1)
    std = net.stem.shortcut.weight.std().item()  # the only non-SN conv: its std is what the init drew
    assert 0.7e-3 < std < 1.3e-3
    assert 0.9e-3 < net.phases[3].lo_agg[0].weight_orig.std().item() < 1.1e-3
    assert torch.count_nonzero(net.fusion_conv.bias) == 0 and torch.count_nonzero(net.head.bias) == 0
    init_weights(net, std=0.02)
    assert 0.019 < net.phases[3].lo_agg[0].weight_orig.std().item() < 0.021
    assert 0.014 < ISNetGenerator(blocks=1, init_std=0.02).stem.shortcut.weight.std().item() < 0.026
    convt = UNetLikeGenerator(blocks=1).decoder[0][0]
    assert isinstance(convt, nn.ConvTranspose2d) and 0.9e-3 < convt.weight.std().item() < 1.1e-3


def test_discriminator_shapes():
    disc = PatchDiscriminator()
    out, feats = disc(torch.rand(2, 3, 256, 256))
    assert out.shape == (2, 1, 30, 30)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 128, 128), (128, 64, 64), (256, 32, 32), (512, 31, 31), (1, 30, 30)
    ]
    assert feats[-1] is out
    out, feats = disc(torch.rand(1, 3, 32, 32))
    assert [tuple(f.shape[2:]) for f in feats] == [(16, 16), (8, 8), (4, 4), (3, 3), (2, 2)]
    # raw logits (no sigmoid): a large-scale init gives values outside [0, 1]
    disc = PatchDiscriminator(init_std=1.0).eval()
    with torch.no_grad():
        logits, _ = disc(torch.rand(1, 3, 32, 32) * 10)
    assert (logits < 0).any() or (logits > 1).any()


@pytest.mark.parametrize("variant", GENERATOR_VARIANTS)
def test_backward_through_generator_and_discriminator(variant):
    torch.manual_seed(0)
    gen, disc = build_generator(variant, blocks=1), PatchDiscriminator()
    x = torch.rand(2, 3, 32, 32)
    out = gen(x)
    logits, feats = disc(out)
    real_logits, real_feats = disc(x)
    loss = logits.mean() + sum((f - r.detach()).abs().mean() for f, r in zip(feats, real_feats, strict=True))
    loss = loss - real_logits.mean() + (out - x).abs().mean()
    loss.backward()
    # the Base model computes phase 4's low-res output but does not use it (spec 2.7)
    unused = ("phases.3.hi_to_lo.", "phases.3.lo_down.", "phases.3.lo_agg.") if variant == "base" else ()
    for name, p in gen.named_parameters():
        assert (p.grad is None) == name.startswith(unused), name
        assert p.grad is None or torch.isfinite(p.grad).all(), name
    assert all(p.grad is not None for p in disc.parameters())

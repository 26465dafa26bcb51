"""The loader of the ISNet authors' released generator weights (inpaint.models.isnet_weights): their key
layout mapped onto our generators by order, both spectral-norm formats, and its error messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inpaint.checkpoints import CheckpointMismatchError
from inpaint.models.isnet_weights import _group_count, load_official_generator, sn_v_from_old_format
from inpaint.nets.isnet import GENERATOR_VARIANTS, ISNetGenerator, PatchDiscriminator, build_generator
from inpaint.nets.isnet_blocks import BLOCK_CHOICES


@pytest.mark.parametrize("variant", GENERATOR_VARIANTS)
@pytest.mark.slow
def test_group_count_matches_the_generators(variant):
    """The loader's cheap candidate filter counts each generator's weighted modules right."""
    for blocks in BLOCK_CHOICES:
        with torch.device("meta"):
            net = build_generator(variant, blocks)
        assert len({k.rpartition(".")[0] for k in net.state_dict()}) == _group_count(variant, blocks)


def authors_prefixes(blocks: int, first_stage: int = 1) -> list[str]:
    """Module prefixes of the authors' ``RFFNet`` in their registration order (Final Fusion names unknown:
    invented ones stand in for them)."""
    names = ["layer1.downsample", "layer1.conv_block.1", "layer1.conv_block.4"]
    for s in range(4):
        p, stage = s + 1, f"stage{first_stage + s}"
        for b in range(2 if p >= 2 else 1):
            for i in range(blocks):
                names += [f"{stage}.branches.{b}.{i}.conv_block.1", f"{stage}.branches.{b}.{i}.conv_block.4"]
        if p >= 2:
            names += [f"{stage}.fuse_layers.0.1.{j}.0" for j in range(p - 1)]
        names += [f"{stage}.fuse_layers.1.0.{j}.0" for j in range(p)]
        if p >= 2:
            names += [f"{stage}.fuse_layers.1.1.0.0"]
        names += [f"{stage}.fused_branches.0.0.0", f"{stage}.fused_branches.1.0.0"]
    names += [f"up_layer.{j}.0" for j in range(4)] + ["final_layer.0", "final_layer.2"]
    return names


def authors_state_dict(net: nn.Module, blocks: int, old_sn_format: bool, first_stage: int = 1) -> dict:
    """``net``'s weights renamed into the authors' scheme, optionally in PyTorch < 1.1's SN format."""
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in net.state_dict().items():
        prefix, _, suffix = key.rpartition(".")
        groups.setdefault(prefix, {})[suffix] = value.clone()
    theirs = authors_prefixes(blocks, first_stage)
    assert len(theirs) == len(groups)
    out = {}
    for their, tensors in zip(theirs, groups.values(), strict=True):
        if old_sn_format and "weight_v" in tensors:
            w, u, v = tensors["weight_orig"], tensors["weight_u"], tensors.pop("weight_v")
            sigma = torch.dot(u, w.flatten(1) @ v)
            tensors["weight"] = w / sigma  # what the old hook API stored as the buffer `weight`
        out.update({f"{their}.{suffix}": t for suffix, t in tensors.items()})
    return out


def trained_isnet(seed: int = 0) -> ISNetGenerator:
    """A blocks=1 ISNet whose SN vectors went through a few power iterations (as in a trained model)."""
    torch.manual_seed(seed)
    net = ISNetGenerator(blocks=1, init_std=0.02)
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(1, 3, 32, 32))
    return net.eval()


@pytest.fixture(scope="module")
def source_net():
    return trained_isnet(0)


@pytest.mark.parametrize(("old_sn_format", "first_stage"), [(False, 1), (True, 0)])
@pytest.mark.slow
def test_load_official_generator_round_trip(source_net, tmp_path, old_sn_format, first_stage):
    state = authors_state_dict(source_net, 1, old_sn_format, first_stage)
    assert f"stage{first_stage}.branches.0.0.conv_block.1.weight_orig" in state
    assert "layer1.downsample.weight" in state and "up_layer.0.0.weight_orig" in state
    assert any(k.endswith("weight_v") for k in state) != old_sn_format
    path = tmp_path / "InpaintingModel_gen.pth"
    torch.save({"iteration": 123, "generator": {"module." + k: v for k, v in state.items()}}, path)

    target = trained_isnet(1)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = source_net(x)
        assert not torch.allclose(target(x), expected, atol=1e-3)
        report = load_official_generator(target, path)
        got = target(x)
    assert report == {"loaded": len(state), "iteration": 123}
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    for key, value in source_net.state_dict().items():
        atol = 1e-4 if old_sn_format and key.endswith("weight_v") else 0
        torch.testing.assert_close(target.state_dict()[key], value, atol=atol, rtol=1e-4 if atol else 0)


def test_old_sn_format_conversion_matches_torch_hook():
    """An old-format SN conv (weight_orig + weight + weight_u, no weight_v) loaded into a module: torch's load
    hook really converts it (the eval-mode weight is the stored one), and our fast conversion gives the same
    normalising sigma, with the true v (the hook's float32 pseudo-inverse of the rank-deficient W^T W only
    gets the scale right). The hook is run on a small conv only: it takes minutes on ISNet's wide convs."""
    torch.manual_seed(0)
    src = nn.utils.spectral_norm(nn.Conv2d(16, 24, 3, bias=False))
    for _ in range(3):
        src(torch.rand(1, 16, 8, 8))
    w, u, v = src.weight_orig.detach(), src.weight_u, src.weight_v
    weight = w / torch.dot(u, w.flatten(1) @ v)
    old = {"weight_orig": w.clone(), "weight": weight.clone(), "weight_u": u.clone()}
    via_hook = nn.utils.spectral_norm(nn.Conv2d(16, 24, 3, bias=False))
    v_before = via_hook.weight_v.clone()
    via_hook.load_state_dict(dict(old), strict=True)  # no metadata -> version None -> the hook solves weight_v
    assert not torch.equal(via_hook.weight_v, v_before)
    via_hook.eval()
    via_hook(torch.rand(1, 16, 8, 8))
    torch.testing.assert_close(via_hook.weight, weight, atol=1e-6, rtol=1e-5)

    ours = sn_v_from_old_format(w, weight, u)
    torch.testing.assert_close(ours, v, atol=1e-5, rtol=1e-4)
    sigma = lambda vec: torch.dot(u, w.flatten(1) @ vec)  # noqa: E731
    torch.testing.assert_close(sigma(ours), sigma(via_hook.weight_v), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_load_official_generator_wrong_blocks(tmp_path):
    torch.manual_seed(0)
    state = authors_state_dict(ISNetGenerator(blocks=2), 2, old_sn_format=False)
    path = tmp_path / "gen_b2.pth"
    torch.save({"iteration": 5, "generator": state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_official_generator(ISNetGenerator(blocks=1), path)
    msg = str(err.value)
    assert "gen_b2.pth" in msg and "stage1.branches.0.1.conv_block.1" in msg  # first extra ResBlock of theirs
    assert "phases.0.hi_to_lo.0.0" in msg  # our group it was paired with
    assert "model.generator.variant=isnet model.generator.blocks=2" in msg


def test_load_official_generator_rejects_discriminator_and_junk(tmp_path):
    path = tmp_path / "InpaintingModel_dis.pth"
    torch.save({"iteration": 7, "discriminator": PatchDiscriminator().state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="InpaintingModel_dis.pth.*no generator state dict"):
        load_official_generator(ISNetGenerator(blocks=1), path)
    torch.save({"generator": PatchDiscriminator().state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match=r"InpaintingModel_dis.pth.*convs.0.*fits none"):
        load_official_generator(ISNetGenerator(blocks=1), path)
    with pytest.raises(CheckpointMismatchError, match="missing.pth"):
        load_official_generator(ISNetGenerator(blocks=1), tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatchError, match="junk.pth"):
        load_official_generator(ISNetGenerator(blocks=1), junk)
    assert issubclass(CheckpointMismatchError, ValueError)

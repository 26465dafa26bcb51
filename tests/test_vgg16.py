"""VGG16 feature extractor (the mGANprior perceptual network, spec mganprior-pggan section 1.5): torchvision's
layer indices and key names, relu3_3 output, loading torchvision-keyed files, refusing VGG19 files, and
VGGLoss built on it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inpaint.losses import VGGLoss
from inpaint.nets.vgg import VGG16_LAYERS, VGG19_LAYERS, VGG16Features, VGG19Features, VGGFeatures, vgg_layers

# torchvision vgg16().features: conv layers sit at these indices (configuration "D"), pools at 4, 9, 16, 23, 30
VGG16_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
VGG16_POOL_INDICES = [4, 9, 16, 23, 30]


def test_vgg16_layer_names_and_relu3_3_index():
    assert len(VGG16_LAYERS) == 31
    assert vgg_layers(16) == VGG16_LAYERS and vgg_layers(19) == VGG19_LAYERS
    assert [i for i, n in enumerate(VGG16_LAYERS) if n.startswith("conv")] == VGG16_CONV_INDICES
    assert [i for i, n in enumerate(VGG16_LAYERS) if n.startswith("pool")] == VGG16_POOL_INDICES
    # relu3_3 is features[15], so the mGANprior slice features[:16] ends at it; conv4_3 is features[21]
    assert VGG16_LAYERS.index("relu3_3") == 15
    assert VGG16_LAYERS.index("conv4_3") == 21 and VGG16_LAYERS.index("relu4_3") == 22
    assert "conv3_4" not in VGG16_LAYERS
    with pytest.raises(ValueError, match="16 or 19"):
        vgg_layers(11)


def test_vgg16_builds_up_to_relu3_3_only():
    vgg = VGG16Features(weights="random")
    assert vgg.outputs == ("relu3_3",) and vgg.depth == 16
    assert len(vgg.features) == 16
    assert isinstance(vgg.features[14], torch.nn.Conv2d) and isinstance(vgg.features[15], torch.nn.ReLU)
    assert all(not p.requires_grad for p in vgg.parameters()) and not vgg.train(True).training
    with pytest.raises(ValueError, match="unknown VGG16 layer"):
        VGG16Features(weights="random", outputs=("relu3_4",))


def test_vgg16_relu3_3_shape_at_64():
    vgg = VGG16Features(weights="random", outputs=("relu3_3", "relu1_2"))
    out = vgg(torch.rand(2, 3, 64, 64))
    assert list(out) == ["relu3_3", "relu1_2"]
    assert out["relu3_3"].shape == (2, 256, 16, 16)  # two pools before block 3
    assert out["relu1_2"].shape == (2, 64, 64, 64)
    assert (out["relu3_3"] >= 0).all()


def test_vgg16_full_keys_are_torchvision_names():
    vgg = VGGFeatures(depth=16, weights="random", outputs=("pool5",))
    keys = list(vgg.state_dict())
    expected = [f"features.{i}.{p}" for i in VGG16_CONV_INDICES for p in ("weight", "bias")]
    assert keys == expected
    assert vgg.state_dict()["features.28.weight"].shape == (512, 512, 3, 3)


def _torchvision_vgg16_file(path, seed: int = 0):
    """A state dict laid out like torchvision's vgg16-397923af.pth: ``features.N.*`` plus ``classifier.*``;
    the keys and shapes are written out here from the VGG16 configuration, not taken from our module."""
    g = torch.Generator().manual_seed(seed)
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    sd: dict[str, torch.Tensor] = {}
    c_in = 3
    for idx, c_out in zip(VGG16_CONV_INDICES, widths, strict=True):
        sd[f"features.{idx}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * 0.05
        sd[f"features.{idx}.bias"] = torch.randn(c_out, generator=g) * 0.05
        c_in = c_out
    sd["classifier.0.weight"] = torch.zeros(4, 8)
    sd["classifier.6.bias"] = torch.zeros(4)
    torch.save(sd, path)
    return sd


def test_vgg16_loads_torchvision_keyed_file(tmp_path):
    path = tmp_path / "vgg16-test.pth"
    sd = _torchvision_vgg16_file(path)
    vgg = VGG16Features(weights=str(path))
    x = torch.rand(1, 3, 16, 16)
    # independent forward through features[:16] with the file's tensors
    h = x
    for idx in VGG16_CONV_INDICES[:7]:
        h = F.relu(F.conv2d(h, sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"], padding=1))
        if idx in (2, 7):  # conv1_2, conv2_2 are followed by the pools at 4 and 9
            h = F.max_pool2d(h, 2)
    torch.testing.assert_close(vgg(x)["relu3_3"], h)


def test_vgg16_and_vgg19_refuse_each_others_files(tmp_path):
    # VGG16 and VGG19 agree up to conv3_3, so the refusal must come from the conv layout, not missing keys
    v19 = tmp_path / "vgg19-like.pth"
    torch.save(VGG19Features(weights="random", outputs=("pool5",)).state_dict(), v19)
    with pytest.raises(ValueError, match="VGG19 file"):
        VGG16Features(weights=str(v19))
    v16 = tmp_path / "vgg16-like.pth"
    _torchvision_vgg16_file(v16)
    with pytest.raises(ValueError, match="VGG16 file"):
        VGG19Features(weights=str(v16), outputs=("relu1_1",))


def test_vgg_loss_on_vgg16_relu3_3():
    vgg = VGG16Features(weights="random", normalize_input=True)
    loss = VGGLoss(vgg=vgg, perceptual_layers=("relu3_3",), style=False)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    res = loss(a, b)
    assert set(res) == {"perceptual"}
    torch.testing.assert_close(res["perceptual"], (vgg(a)["relu3_3"] - vgg(b)["relu3_3"]).abs().mean())
    built = VGGLoss(weights="random", depth=16, perceptual_layers=("relu3_3",), style=False)
    assert built.vgg.depth == 16 and built.vgg.outputs == ("relu3_3",)
    with pytest.raises(ValueError, match="does not output"):
        VGGLoss(vgg=vgg, style=False)  # the VGG19 default layers are not among its outputs
    with pytest.raises(ValueError, match="empty"):
        VGGLoss(vgg=vgg, perceptual_layers=(), style=False)


def test_vgg16_imagenet_uses_the_vgg16_registry_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as exc:  # WeightsUnavailableError, naming file and switch
        VGG16Features(weights="imagenet", offline_hint="model.prior.loss.vgg=random")
    assert "vgg16-397923af.pth" in str(exc.value) and "model.prior.loss.vgg=random" in str(exc.value)

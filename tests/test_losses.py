"""ISNet/EdgeConnect losses and the VGG19 feature extractor, each against an independent reference
(hand-computed numbers, explicit loops, numpy, plain conv calls)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inpaint.losses import (
    AdversarialLoss,
    VGGLoss,
    feature_matching_loss,
    gradient_penalty,
    gram_matrix,
    hole_normalized_l1,
)
from inpaint.nets.vgg import VGG19_LAYERS, VGG19Features
from inpaint.weights import WeightsUnavailableError

CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
LOGITS = torch.tensor([-2.0, 0.0, 3.0])


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


# ----------------------------------------------------------------------------- reconstruction L1


def test_hole_normalized_l1_by_hand():
    out = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    tgt = torch.ones(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]]).view(1, 1, 2, 2)  # 1 = hole: a quarter of the image
    # |diff| = 0, 1, 2, 3 -> mean 1.5 (over ALL pixels, not just the hole); / 0.25 -> 6
    assert hole_normalized_l1(out, tgt, mask).item() == pytest.approx(6.0)


def test_hole_normalized_l1_is_plain_l1_over_hole_fraction():
    rng = np.random.default_rng(0)
    out, tgt = rng.random((2, 3, 5, 4)), rng.random((2, 3, 5, 4))
    mask = (rng.random((2, 1, 5, 4)) > 0.6).astype(np.float64)
    expected = np.abs(out - tgt).sum() / out.size / (mask.sum() / mask.size)
    got = hole_normalized_l1(*(torch.tensor(a, dtype=torch.float32) for a in (out, tgt, mask)))
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # no hole in the batch: the plain L1 (nothing to normalise by), not a blow-up
    assert hole_normalized_l1(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 1.0


# ----------------------------------------------------------------------------- adversarial


def test_hinge_by_hand():
    loss = AdversarialLoss("hinge")
    assert loss.generator_loss(LOGITS).item() == pytest.approx(-1.0 / 3.0)
    # real: relu(1 - [-2, 0, 3]) = [3, 1, 0] -> 4/3; fake: relu(1 + [-2, 0, 3]) = [0, 1, 4] -> 5/3
    assert loss.discriminator_loss(LOGITS, LOGITS).item() == pytest.approx((4 / 3 + 5 / 3) / 2)
    assert loss.discriminator_loss(torch.tensor([5.0]), torch.tensor([-5.0])).item() == 0.0


def test_nsgan_is_sigmoid_plus_bce():
    loss = AdversarialLoss("nsgan")
    p = [_sig(v) for v in LOGITS.tolist()]
    g = sum(-math.log(x) for x in p) / 3
    d_real = sum(-math.log(x) for x in p) / 3
    d_fake = sum(-math.log(1 - x) for x in p) / 3
    assert loss.generator_loss(LOGITS).item() == pytest.approx(g, rel=1e-6)
    assert loss.discriminator_loss(LOGITS, LOGITS).item() == pytest.approx((d_real + d_fake) / 2, rel=1e-6)
    # the authors' module chain: sigmoid in D, then nn.BCELoss
    bce = torch.nn.BCELoss()
    real, fake = torch.tensor([[0.3, -1.2], [2.5, 0.1]]), torch.tensor([[-0.7, 1.9], [0.0, -3.0]])
    ref = (bce(torch.sigmoid(real), torch.ones(2, 2)) + bce(torch.sigmoid(fake), torch.zeros(2, 2))) / 2
    assert loss.discriminator_loss(real, fake).item() == pytest.approx(ref.item(), rel=1e-6)
    # stable for extreme logits, where sigmoid + BCE saturates
    assert torch.isfinite(loss.generator_loss(torch.tensor([-200.0])))


def test_lsgan_by_hand():
    loss = AdversarialLoss("lsgan")
    p = [_sig(v) for v in LOGITS.tolist()]
    g = sum((x - 1) ** 2 for x in p) / 3
    d = (sum((x - 1) ** 2 for x in p) / 3 + sum(x**2 for x in p) / 3) / 2
    assert loss.generator_loss(LOGITS).item() == pytest.approx(g, rel=1e-6)
    assert loss.discriminator_loss(LOGITS, LOGITS).item() == pytest.approx(d, rel=1e-6)


def test_adversarial_unknown_kind():
    with pytest.raises(ValueError, match="hinge"):
        AdversarialLoss("ragan")


def test_adversarial_gradients_reach_logits():
    for kind in ("hinge", "nsgan", "lsgan"):
        d = LOGITS.clone().requires_grad_(True)
        AdversarialLoss(kind).generator_loss(d).backward()
        assert d.grad is not None and (d.grad != 0).any()


def test_wgan_by_hand_with_and_without_drift():
    real, fake = torch.tensor([1.0, -2.0, 4.0]), LOGITS
    plain = AdversarialLoss("wgan")
    assert plain.generator_loss(fake).item() == pytest.approx(-1.0 / 3.0)
    assert plain.discriminator_loss(real, fake).item() == pytest.approx(1.0 / 3.0 - 1.0)
    # Karras et al.'s drift: + drift * mean(D(real)^2) = 0.5 * (1 + 4 + 16) / 3; G's term is unchanged
    drifting = AdversarialLoss("wgan", drift=0.5)
    assert drifting.discriminator_loss(real, fake).item() == pytest.approx(1.0 / 3.0 - 1.0 + 0.5 * 7.0)
    assert drifting.generator_loss(fake).item() == pytest.approx(-1.0 / 3.0)
    assert drifting.drift_term(real).item() == pytest.approx(7.0)
    r = real.clone().requires_grad_(True)
    drifting.discriminator_loss(r, fake).backward()  # d/dr_i = -1/3 + 0.5 * 2 r_i / 3
    torch.testing.assert_close(r.grad, -1.0 / 3.0 + real / 3.0)
    with pytest.raises(ValueError, match="WGAN critic"):
        AdversarialLoss("hinge", drift=1e-3)
    with pytest.raises(ValueError, match=">= 0"):
        AdversarialLoss("wgan", drift=-1.0)


def test_gradient_penalty_against_autograd_by_hand():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 1, bias=False)
    critic = torch.nn.Sequential(torch.nn.Flatten(), lin)
    real, fake = torch.rand(4, 3, 2, 2), torch.rand(4, 3, 2, 2)
    # a linear critic: the input gradient is the weight vector at every interpolate
    torch.testing.assert_close(gradient_penalty(critic, real, fake), ((lin.weight.norm() - 1) ** 2).detach(),
                               rtol=1e-5, atol=1e-6)
    # a non-linear critic, per sample: x_hat = e * real + (1 - e) * fake with e ~ U(0, 1) from the torch RNG
    square = lambda x: (x**2).flatten(1).sum(1)  # noqa: E731 - grad = 2 x_hat
    torch.manual_seed(5)
    got = gradient_penalty(square, real, fake)
    torch.manual_seed(5)
    e = torch.rand(4, 1, 1, 1)
    x_hat = e * real + (1 - e) * fake
    want = ((2 * x_hat).flatten(1).norm(dim=1) - 1).square().mean()
    torch.testing.assert_close(got, want)
    # its gradient reaches the critic's parameters (create_graph), not the detached inputs
    r, f = real.clone().requires_grad_(True), fake.clone().requires_grad_(True)
    gradient_penalty(critic, r, f).backward()
    assert lin.weight.grad is not None and (lin.weight.grad != 0).any() and r.grad is None and f.grad is None


# ----------------------------------------------------------------------------- feature matching, Gram


def test_feature_matching_sum_of_means_and_no_grad_to_real():
    torch.manual_seed(0)
    shapes = [(2, 4, 8, 8), (2, 8, 4, 4), (2, 16, 3, 3), (2, 32, 2, 2), (2, 1, 1, 1)]
    fake = [torch.randn(s, requires_grad=True) for s in shapes]
    real = [torch.randn(s, requires_grad=True) for s in shapes]
    loss = feature_matching_loss(fake, real)
    expected = sum(float(np.abs(f.detach().numpy() - r.detach().numpy()).mean()) for f, r in zip(fake, real, strict=True))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert all(f.grad is not None for f in fake)
    assert all(r.grad is None for r in real)
    with pytest.raises(ValueError):
        feature_matching_loss(fake, real[:4])


def test_gram_matrix_against_loops():
    torch.manual_seed(1)
    b, c, h, w = 2, 3, 4, 5
    x = torch.randn(b, c, h, w)
    g = gram_matrix(x)
    assert g.shape == (b, c, c)
    ref = torch.zeros(b, c, c)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                ref[n, i, j] = sum(x[n, i, y, z] * x[n, j, y, z] for y in range(h) for z in range(w)) / (c * h * w)
    torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g, torch.einsum("bchw,bdhw->bcd", x, x) / (c * h * w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gram_matrix(x.bfloat16()).dtype == torch.float32


# ----------------------------------------------------------------------------- VGG19 features


@pytest.fixture(scope="module")
def full_vgg():
    torch.manual_seed(0)
    return VGG19Features(weights="random", outputs=("pool5",))


@pytest.fixture(scope="module")
def torchvision_like_file(tmp_path_factory, full_vgg):
    """A file laid out like torchvision's vgg19-dcbb9e9d.pth: ``features.N.*`` and ``classifier.*`` keys."""
    g = torch.Generator().manual_seed(123)
    sd = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in full_vgg.state_dict().items()}
    sd["classifier.0.weight"] = torch.randn(4, 8, generator=g)
    sd["classifier.0.bias"] = torch.zeros(4)
    sd["classifier.6.weight"] = torch.randn(2, 4, generator=g)
    path = tmp_path_factory.mktemp("weights") / "vgg19-test.pth"
    torch.save(sd, path)
    return path, sd


def test_layer_names():
    assert len(VGG19_LAYERS) == 37
    assert VGG19_LAYERS[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert VGG19_LAYERS[-3:] == ("conv5_4", "relu5_4", "pool5")
    assert [i for i, n in enumerate(VGG19_LAYERS) if n.startswith("conv")] == CONV_INDICES
    # the spec's slicing: features[0:2] -> relu1_1, [16:18] -> relu3_4, [25:27] -> relu4_4, [30:32] -> relu5_2
    for end, name in [(2, "relu1_1"), (4, "relu1_2"), (7, "relu2_1"), (9, "relu2_2"), (12, "relu3_1"),
                      (18, "relu3_4"), (21, "relu4_1"), (27, "relu4_4"), (30, "relu5_1"), (32, "relu5_2")]:
        assert VGG19_LAYERS[end - 1] == name


def test_keys_match_torchvision(full_vgg):
    sd = full_vgg.state_dict()
    expected = [f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")]
    assert list(sd) == expected
    assert sd["features.0.weight"].shape == (64, 3, 3, 3)
    assert sd["features.5.weight"].shape == (128, 64, 3, 3)
    assert sd["features.34.weight"].shape == (512, 512, 3, 3)
    assert sd["features.34.bias"].shape == (512,)
    assert len(full_vgg.features) == 37
    assert isinstance(full_vgg.features[36], torch.nn.MaxPool2d)
    assert not any(m.inplace for m in full_vgg.features if isinstance(m, torch.nn.ReLU))


def test_only_needed_layers_built():
    vgg = VGG19Features(weights="random", outputs=("relu1_1", "relu5_2"))
    assert len(vgg.features) == 32  # relu5_2 is features[31]; indices (and keys) as in torchvision
    assert list(vgg.state_dict())[-1] == "features.30.bias"
    with pytest.raises(ValueError, match="relu1_1"):
        VGG19Features(weights="random", outputs=("relu6_1",))


def test_frozen_and_always_eval(full_vgg):
    assert all(not p.requires_grad for p in full_vgg.parameters())
    parent = torch.nn.Sequential(full_vgg)
    parent.train()
    assert not full_vgg.training and parent.training
    assert full_vgg.train(True) is full_vgg and not full_vgg.training


def test_output_shapes(full_vgg):
    vgg = VGG19Features(weights="random", outputs=("relu5_1", "relu1_1", "relu3_4", "pool5"))
    out = vgg(torch.rand(2, 3, 32, 32))
    assert list(out) == ["relu5_1", "relu1_1", "relu3_4", "pool5"]
    assert out["relu1_1"].shape == (2, 64, 32, 32)
    assert out["relu3_4"].shape == (2, 256, 8, 8)
    assert out["relu5_1"].shape == (2, 512, 2, 2)
    assert out["pool5"].shape == (2, 512, 1, 1)
    assert (out["relu5_1"] >= 0).all()


def test_random_logs_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="inpaint.nets.vgg"):
        VGG19Features(weights="random", outputs=("relu1_1",))
    assert any("untrained" in r.getMessage().lower() for r in caplog.records)


def test_imagenet_offline_names_the_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as exc:
        VGG19Features(weights="imagenet", outputs=("relu1_1",))
    assert "model.loss.vgg=random" in str(exc.value) and "vgg19-dcbb9e9d.pth" in str(exc.value)
    with pytest.raises(WeightsUnavailableError, match="model.loss.vgg=random"):
        VGGLoss(weights="imagenet")


def test_load_torchvision_layout_file(torchvision_like_file, tmp_path):
    path, sd = torchvision_like_file
    x = torch.rand(1, 3, 16, 16)
    torch.manual_seed(5)
    random = VGG19Features(weights="random", outputs=("relu1_1", "relu2_1"))
    loaded = VGG19Features(weights=str(path), outputs=("relu1_1", "relu2_1"))
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, sd[k])
    out_r, out_l = random(x), loaded(x)
    assert not torch.allclose(out_r["relu2_1"], out_l["relu2_1"])
    # independent reference for the first layer: a plain conv + relu with the file's tensors
    ref = F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    torch.testing.assert_close(out_l["relu1_1"], ref)
    # the same tensors without the "features." prefix load too
    stripped = tmp_path / "stripped.pth"
    torch.save({k.removeprefix("features."): v for k, v in sd.items() if k.startswith("features.")}, stripped)
    torch.testing.assert_close(VGG19Features(weights=str(stripped), outputs=("relu2_1",))(x)["relu2_1"],
                               out_l["relu2_1"])


def test_wrong_file_is_clear_error(tmp_path):
    # a VGG16-like file: its indices differ after block 3, so VGG19 keys are missing
    vgg16ish = {f"features.{i}.weight": torch.zeros(1) for i in (0, 2, 5, 7, 10, 12, 14, 17)}
    p = tmp_path / "vgg16ish.pth"
    torch.save(vgg16ish, p)
    with pytest.raises(ValueError, match="missing"):
        VGG19Features(weights=str(p), outputs=("relu1_1",))
    with pytest.raises(WeightsUnavailableError):
        VGG19Features(weights=str(tmp_path / "nope.pth"))


def test_normalize_input():
    torch.manual_seed(0)
    a = VGG19Features(weights="random", outputs=("conv1_1",), normalize_input=True)
    b = VGG19Features(weights="random", outputs=("conv1_1",))
    b.load_state_dict(a.state_dict())
    assert list(a.state_dict()) == ["features.0.weight", "features.0.bias"]  # mean/std are not saved
    x = torch.rand(1, 3, 8, 8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(a(x)["conv1_1"], b((x - mean) / std)["conv1_1"])


# ----------------------------------------------------------------------------- VGGLoss


@pytest.fixture(scope="module")
def shared_vgg():
    torch.manual_seed(3)
    return VGG19Features(weights="random", outputs=VGGLoss.PERCEPTUAL_LAYERS + VGGLoss.STYLE_LAYERS)


def test_vgg_loss_zero_for_identical(shared_vgg):
    x = torch.rand(2, 3, 16, 16)
    res = VGGLoss(vgg=shared_vgg)(x, x.clone())
    assert set(res) == {"perceptual", "style"}
    assert res["perceptual"].item() == 0.0 and res["style"].item() == 0.0


def test_vgg_loss_matches_reference(shared_vgg):
    torch.manual_seed(4)
    out, tgt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    res = VGGLoss(vgg=shared_vgg)(out, tgt)
    fo, ft = shared_vgg(out), shared_vgg(tgt)
    perc = sum(float(np.abs(fo[k].numpy() - ft[k].numpy()).mean()) for k in VGGLoss.PERCEPTUAL_LAYERS)
    style = 0.0
    for k in VGGLoss.STYLE_LAYERS:
        grams = []
        for f in (fo[k].double(), ft[k].double()):
            b, c, h, w = f.shape
            grams.append(torch.einsum("bchw,bdhw->bcd", f, f) / (c * h * w))
        style += float((grams[0] - grams[1]).abs().mean())
    assert res["perceptual"].item() == pytest.approx(perc, rel=1e-5)
    assert res["style"].item() == pytest.approx(style, rel=1e-4)


def test_vgg_loss_gradient_to_output_only(shared_vgg):
    out = torch.rand(1, 3, 16, 16, requires_grad=True)
    tgt = torch.rand(1, 3, 16, 16, requires_grad=True)
    res = VGGLoss(vgg=shared_vgg)(out, tgt)
    (res["perceptual"] + res["style"]).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0
    assert tgt.grad is None
    assert all(p.grad is None for p in shared_vgg.parameters())


def test_vgg_loss_flags_skip_work():
    style_only = VGGLoss(weights="random", perceptual=False)
    assert style_only.vgg.outputs == VGGLoss.STYLE_LAYERS
    assert set(style_only(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))) == {"style"}
    perc_only = VGGLoss(weights="random", style=False)
    assert perc_only.vgg.outputs == VGGLoss.PERCEPTUAL_LAYERS
    assert len(perc_only.vgg.features) == 30  # up to relu5_1, relu5_2 not computed
    assert set(perc_only(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))) == {"perceptual"}
    with pytest.raises(ValueError):
        VGGLoss(weights="random", perceptual=False, style=False)
    with pytest.raises(ValueError, match="does not output"):
        VGGLoss(vgg=VGG19Features(weights="random", outputs=("relu1_1",)))


def test_vgg_loss_kept_out_of_state_dict_by_a_list(shared_vgg):
    """The documented pattern: the model holds its VGGLoss in a plain list, so checkpoints carry no VGG."""

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Conv2d(3, 3, 1)
            self._vgg_loss = [VGGLoss(vgg=shared_vgg)]

    m = Model()
    assert list(m.state_dict()) == ["net.weight", "net.bias"]
    assert len(list(m.parameters())) == 2
    loss = m._vgg_loss[0]
    assert loss.vgg is shared_vgg
    assert all(k.startswith("vgg.features.") for k in loss.state_dict())
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.vgg.training


def test_vgg_loss_under_autocast(shared_vgg):
    torch.manual_seed(6)
    out, tgt = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    ref = VGGLoss(vgg=shared_vgg)(out, tgt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        res = VGGLoss(vgg=shared_vgg)(out, tgt)
    for k in ref:
        assert res[k].dtype == torch.float32
        assert res[k].item() == pytest.approx(ref[k].item(), rel=0.1)

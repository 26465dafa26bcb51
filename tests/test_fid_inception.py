"""The FID InceptionV3 (spec field-metrics sections 1.1-1.3): torchvision/pytorch-fid key names and shapes,
strict loading, the TF1 legacy bilinear resize against a naive re-implementation, the TF-specific pooling
of the A/C/E blocks, and the [0, 1] -> pool3 pipeline. Random weights only: no weight file is downloaded."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inpaint import weights
from inpaint.nets import inception
from inpaint.nets.inception import (
    FEATURE_DIM,
    FIDInceptionV3,
    InceptionA,
    InceptionC,
    InceptionE,
    inception_state_dict_shapes,
    tf1_resize_bilinear,
)
from inpaint.weights import REGISTRY, WeightsUnavailableError

PF_FILE = "pt_inception-2015-12-05-6726825d.pth"

# ------------------------------------------------------------------ the expected layout, written from the spec
# (name, c_out, kh, kw) per BasicConv2d of each block type; c_in of a branch's first conv is the block input,
# later convs take the previous conv's output (the E split convs 2a/2b and 3a/3b both read the same input).
TOP = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3", "Mixed_5b", "Mixed_5c",
       "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c",
       "fc"]


def _block_a(c_in, pool):
    return [("branch1x1", c_in, 64, 1, 1), ("branch5x5_1", c_in, 48, 1, 1), ("branch5x5_2", 48, 64, 5, 5),
            ("branch3x3dbl_1", c_in, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3), ("branch3x3dbl_3", 96, 96, 3, 3),
            ("branch_pool", c_in, pool, 1, 1)]


def _block_b(c_in):
    return [("branch3x3", c_in, 384, 3, 3), ("branch3x3dbl_1", c_in, 64, 1, 1), ("branch3x3dbl_2", 64, 96, 3, 3),
            ("branch3x3dbl_3", 96, 96, 3, 3)]


def _block_c(c_in, c7):
    return [("branch1x1", c_in, 192, 1, 1), ("branch7x7_1", c_in, c7, 1, 1), ("branch7x7_2", c7, c7, 1, 7),
            ("branch7x7_3", c7, 192, 7, 1), ("branch7x7dbl_1", c_in, c7, 1, 1), ("branch7x7dbl_2", c7, c7, 7, 1),
            ("branch7x7dbl_3", c7, c7, 1, 7), ("branch7x7dbl_4", c7, c7, 7, 1), ("branch7x7dbl_5", c7, 192, 1, 7),
            ("branch_pool", c_in, 192, 1, 1)]


def _block_d(c_in):
    return [("branch3x3_1", c_in, 192, 1, 1), ("branch3x3_2", 192, 320, 3, 3), ("branch7x7x3_1", c_in, 192, 1, 1),
            ("branch7x7x3_2", 192, 192, 1, 7), ("branch7x7x3_3", 192, 192, 7, 1), ("branch7x7x3_4", 192, 192, 3, 3)]


def _block_e(c_in):
    return [("branch1x1", c_in, 320, 1, 1), ("branch3x3_1", c_in, 384, 1, 1), ("branch3x3_2a", 384, 384, 1, 3),
            ("branch3x3_2b", 384, 384, 3, 1), ("branch3x3dbl_1", c_in, 448, 1, 1), ("branch3x3dbl_2", 448, 384, 3, 3),
            ("branch3x3dbl_3a", 384, 384, 1, 3), ("branch3x3dbl_3b", 384, 384, 3, 1), ("branch_pool", c_in, 192, 1, 1)]


def expected_shapes() -> dict[str, tuple[int, ...]]:
    convs = [("Conv2d_1a_3x3", 3, 32, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3), ("Conv2d_2b_3x3", 32, 64, 3, 3),
             ("Conv2d_3b_1x1", 64, 80, 1, 1), ("Conv2d_4a_3x3", 80, 192, 3, 3)]
    blocks = [("Mixed_5b", _block_a(192, 32)), ("Mixed_5c", _block_a(256, 64)), ("Mixed_5d", _block_a(288, 64)),
              ("Mixed_6a", _block_b(288)), ("Mixed_6b", _block_c(768, 128)), ("Mixed_6c", _block_c(768, 160)),
              ("Mixed_6d", _block_c(768, 160)), ("Mixed_6e", _block_c(768, 192)), ("Mixed_7a", _block_d(768)),
              ("Mixed_7b", _block_e(1280)), ("Mixed_7c", _block_e(2048))]
    for block, branches in blocks:
        convs += [(f"{block}.{name}", *rest) for name, *rest in branches]
    out: dict[str, tuple[int, ...]] = {}
    for name, c_in, c_out, kh, kw in convs:
        out[f"{name}.conv.weight"] = (c_out, c_in, kh, kw)
        for p in ("weight", "bias", "running_mean", "running_var"):
            out[f"{name}.bn.{p}"] = (c_out,)
    out["fc.weight"], out["fc.bias"] = (1008, 2048), (1008,)
    return out


@pytest.fixture(scope="module")
def net() -> FIDInceptionV3:
    """Random weights rescaled (He init, varied BN statistics) so features are O(1), not ~1e-8."""
    torch.manual_seed(0)
    m = FIDInceptionV3(weights="random")
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.normal_(0.0, math.sqrt(2.0 / fan_in))
            elif isinstance(mod, inception.FrozenBatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.8, 1.2)
                mod.weight.uniform_(0.8, 1.2)
                mod.bias.uniform_(-0.1, 0.1)
    return m


def _fake_checkpoint(m: FIDInceptionV3, *, tracked: bool = True) -> dict[str, torch.Tensor]:
    """``m``'s tensors laid out like a torchvision Inception3 file: with ``*.bn.num_batches_tracked``."""
    sd: dict[str, torch.Tensor] = {}
    for k, v in m.state_dict().items():
        sd[k] = v.clone()
        if tracked and k.endswith(".bn.running_var"):
            sd[k.replace("running_var", "num_batches_tracked")] = torch.tensor(0, dtype=torch.long)
    return sd


# ------------------------------------------------------------------------------------------- layout
def test_state_dict_keys_shapes_and_counts(net):
    sd = net.state_dict()
    exp = expected_shapes()
    assert list(sd) == list(exp)
    assert {k: tuple(v.shape) for k, v in sd.items()} == exp
    assert inception_state_dict_shapes() == exp
    assert len(sd) == 472 and sum(v.numel() for v in sd.values()) == 23_885_392
    assert list(dict.fromkeys(k.split(".")[0] for k in sd)) == TOP
    assert not any("AuxLogits" in k or "num_batches_tracked" in k for k in sd)
    # the shapes the spec lists (section 1.3)
    assert sd["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert sd["Conv2d_1a_3x3.bn.running_var"].shape == (32,)
    assert sd["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert sd["Mixed_6e.branch7x7_2.conv.weight"].shape == (192, 192, 1, 7)
    assert sd["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert sd["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert sd["fc.weight"].shape == (1008, 2048) and sd["fc.bias"].shape == (1008,)


def test_basic_conv_is_biasless_conv_bn_eps_1e3_relu(net):
    block = net.Mixed_6b.branch7x7_2
    assert block.conv.bias is None and block.bn.eps == 0.001
    assert block.conv.padding == (0, 3) and block.conv.kernel_size == (1, 7)
    x = torch.randn(1, 128, 5, 5)
    bn = block.bn
    ref = F.conv2d(x, block.conv.weight, padding=(0, 3))
    ref = (ref - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + 0.001)
    ref = torch.relu(ref * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(block(x), ref)


def test_frozen_and_always_eval(net):
    assert all(not p.requires_grad for p in net.parameters())
    assert not net.train(True).training and not any(m.training for m in net.modules())


def test_random_weights_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="inpaint.nets.inception"):
        m = FIDInceptionV3(weights="random")
    assert m.random_weights
    assert any("NOT FIDs" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------- loading
def test_checkpoint_with_num_batches_tracked_loads_from_a_path(net, tmp_path):
    sd = _fake_checkpoint(net)
    assert len(sd) == 472 + 94
    path = tmp_path / "inception.pth"
    torch.save(sd, path)
    m = FIDInceptionV3(weights=str(path))
    assert not m.random_weights
    got = m.state_dict()
    assert all(torch.equal(got[k], v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    x = torch.rand(1, 3, 80, 80) * 2 - 1
    torch.testing.assert_close(m.trunk(x), net.trunk(x), rtol=0, atol=0)


def test_default_weights_come_from_the_registry(net, monkeypatch):
    asked = []

    def fake_load(name, **kw):
        asked.append((name, kw.get("offline_hint")))
        return _fake_checkpoint(net, tracked=False)

    monkeypatch.setattr(inception.weights_mod, "load_state_dict", fake_load)
    m = FIDInceptionV3(offline_hint="eval.metrics=[lpips]")
    assert asked == [("fid_inception", "eval.metrics=[lpips]")] and not m.random_weights
    assert torch.equal(m.fc.weight, net.fc.weight)


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda sd: sd.pop("Mixed_6c.branch7x7dbl_4.bn.running_mean"), "Mixed_6c.branch7x7dbl_4.bn.running_mean"),
        (lambda sd: sd.update({"AuxLogits.fc.weight": torch.zeros(1000, 768)}), "AuxLogits.fc.weight"),
        (lambda sd: sd.update({"fc.weight": torch.zeros(1000, 2048)}), "fc.weight"),
        (lambda sd: sd.update({"Mixed_7c.branch_pool.conv.weight": torch.zeros(192, 2048, 3, 3)}),
         "Mixed_7c.branch_pool.conv.weight"),
    ],
    ids=["missing", "unexpected", "fc-1000-classes", "wrong-kernel"],
)
def test_bad_checkpoints_are_refused_naming_the_key(net, monkeypatch, edit, named):
    sd = _fake_checkpoint(net)
    edit(sd)
    monkeypatch.setattr(inception.weights_mod, "load_state_dict", lambda name, **kw: sd)
    with pytest.raises(ValueError, match="FID InceptionV3") as exc:
        FIDInceptionV3(weights="some.pth")
    assert named in str(exc.value)


def test_missing_weight_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as exc:
        FIDInceptionV3(offline_hint="eval.metrics=[lpips]")
    msg = str(exc.value)
    assert PF_FILE in msg and "eval.metrics=[lpips]" in msg and REGISTRY["fid_inception"].url in msg
    with pytest.raises(WeightsUnavailableError, match="nowhere.pth"):
        FIDInceptionV3(weights=str(tmp_path / "nowhere.pth"))


def test_registry_entry():
    spec = REGISTRY["fid_inception"]
    assert spec.filename == PF_FILE and spec.sha256 is None
    assert spec.url == (
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
    )
    assert "pytorch-fid" in spec.source and "pytorch-fid" in spec.description
    assert weights.weight_path("fid_inception").name == PF_FILE


# ------------------------------------------------------------------------------------------- TF1 resize
def naive_tf1_resize(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ``resize_bilinear(align_corners=False)`` per output pixel: src = dst * (in / out) in float32,
    lo = floor(src), hi = min(lo + 1, in - 1), rows interpolated first."""
    c, in_h, in_w = img.shape
    sy, sx = np.float32(in_h) / np.float32(out_h), np.float32(in_w) / np.float32(out_w)
    out = np.zeros((c, out_h, out_w), np.float64)
    for i in range(out_h):
        fy = np.float32(i) * sy
        y0 = int(math.floor(fy))
        y1, dy = min(y0 + 1, in_h - 1), float(fy) - y0
        for j in range(out_w):
            fx = np.float32(j) * sx
            x0 = int(math.floor(fx))
            x1, dx = min(x0 + 1, in_w - 1), float(fx) - x0
            top = img[:, y0, x0] + (img[:, y0, x1] - img[:, y0, x0]) * dx
            bottom = img[:, y1, x0] + (img[:, y1, x1] - img[:, y1, x0]) * dx
            out[:, i, j] = top + (bottom - top) * dy
    return out


@pytest.mark.parametrize(
    "in_hw, out_hw",
    [((5, 5), (7, 7)), ((7, 7), (5, 5)), ((8, 8), (3, 3)), ((3, 3), (8, 8)), ((4, 6), (9, 5)), ((13, 11), (13, 4)),
     ((1, 5), (3, 2)), ((24, 20), (299, 299)), ((300, 310), (29, 31))],
)
def test_tf1_resize_matches_naive_formula(in_hw, out_hw):
    g = torch.Generator().manual_seed(1)
    x = torch.round(torch.rand(2, 3, *in_hw, generator=g) * 255)
    got = tf1_resize_bilinear(x, out_hw)
    assert got.shape == (2, 3, *out_hw) and got.dtype == torch.float32
    for b in range(2):
        ref = naive_tf1_resize(x[b].double().numpy(), *out_hw)
        np.testing.assert_allclose(got[b].double().numpy(), ref, rtol=0, atol=1e-3)


def test_tf1_resize_identity_at_299_and_not_half_pixel():
    x = torch.rand(1, 3, 299, 299) * 255
    assert torch.equal(tf1_resize_bilinear(x, 299), x)
    assert torch.equal(tf1_resize_bilinear(x, (299, 299)), x)
    # 2x upscaling of [0, 10]: TF1 reads source 0, 0.5, 1, 1.5 (the edge repeats); half-pixel centres do not
    row = torch.tensor([[[[0.0, 10.0]]]])
    up = tf1_resize_bilinear(row, (1, 4))
    assert up.flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    assert not torch.equal(F.interpolate(row, size=(1, 4), mode="bilinear", align_corners=False), up)


# ------------------------------------------------------------------------------------------- pooling
def _hand_pool(x: np.ndarray, kind: str) -> np.ndarray:
    """3x3 / stride 1 / pad 1 pool over the pixels inside the image only."""
    c, h, w = x.shape
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            win = x[:, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2].reshape(c, -1)
            out[:, i, j] = win.max(1) if kind == "max" else win.sum(1) / win.shape[1]
    return out


@pytest.mark.parametrize(
    "make, kind",
    [(lambda: InceptionA(3, pool_features=3), "avg"), (lambda: InceptionC(3, channels_7x7=4), "avg"),
     (lambda: InceptionE(3, pool="avg"), "avg"), (lambda: InceptionE(3, pool="max"), "max")],
    ids=["A", "C", "E_1", "E_2"],
)
def test_pool_branch_excludes_padding_or_is_max(make, kind):
    torch.manual_seed(0)
    block = make()
    # the pool branch's 1x1 conv passes the 3 input channels through (to its first 3 outputs), so its
    # output is the pool itself up to BN's 1/sqrt(1 + eps)
    conv = block.branch_pool.conv
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:3, :, 0, 0] = torch.eye(3)
    x = torch.rand(1, 3, 4, 5) + 0.5  # positive, so the ReLU after the BN keeps everything
    with torch.no_grad():
        out = block(x)
    pool_width = block.branch_pool.conv.out_channels
    got = out[0, out.shape[1] - pool_width:][:3].double().numpy()
    ref = _hand_pool(x[0].double().numpy(), kind) / math.sqrt(1.001)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    # the corners differ from torchvision's stock pool (zeros counted, or averaged instead of max)
    stock = F.avg_pool2d(x, 3, 1, 1)[0].double().numpy() / math.sqrt(1.001)
    assert not np.allclose(got[:, 0, 0], stock[:, 0, 0], rtol=1e-3)


def test_network_wiring_of_the_pools(net):
    assert [net.Mixed_7b.pool, net.Mixed_7c.pool] == ["avg", "max"]


# ------------------------------------------------------------------------------------------- forward
def test_forward_shape_dtype_and_pipeline(net):
    x = torch.rand(2, 3, 40, 36)
    feats = net(x)
    assert feats.shape == (2, FEATURE_DIM) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and feats.abs().mean() > 1e-3
    # the documented pipeline, written out: 8-bit levels, TF1 resize to 299, (x - 128) / 128, trunk
    levels = torch.round(x.clamp(0, 1) * 255)
    ref = net.trunk((tf1_resize_bilinear(levels, 299) - 128) / 128)
    torch.testing.assert_close(feats, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net(torch.rand(2, 1, 40, 36))


def test_same_8bit_levels_give_identical_features_and_uint8_input(net):
    g = torch.Generator().manual_seed(3)
    levels = torch.randint(0, 256, (2, 3, 30, 30), generator=g)
    x = levels.float() / 255
    jitter = (torch.rand(x.shape, generator=g) - 0.5) * (0.8 / 255)  # stays within +-0.4 of a level
    out = net(x)
    assert torch.equal(out, net((x + jitter).clamp(0, 1)))
    assert torch.equal(out, net(levels.to(torch.uint8)))
    # values outside [0, 1] are clamped like a PNG writer would
    assert torch.equal(net(x * 0 + 1.7), net(torch.ones_like(x)))


def test_batch_order_invariance(net):
    x = torch.rand(3, 3, 75, 75) * 2 - 1  # the trunk's smallest input: 75 -> ... -> 1x1 after Mixed_7c
    full = net.trunk(x)
    perm = torch.tensor([2, 0, 1])
    # equal up to float32 rounding (CPU kernels may block a batch of 1 differently from one of 3)
    torch.testing.assert_close(net.trunk(x[perm]), full[perm], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(net.trunk(x[1:2]), full[1:2], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(full[0], full[1])

"""LPIPS v0.1 (spec field-metrics section 3): the distance against a plain re-computation of the formula,
its metric-like properties, the torchvision AlexNet layout, and loading the package's lin-weight files
(legacy torch pickles with CUDA-tagged storages) on a CPU-only machine. Random or test-written weights only."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from inpaint import weights
from inpaint.nets.lpips import LPIPS, AlexNetFeatures
from inpaint.weights import REGISTRY, WeightsUnavailableError

# spec section 3: ScalingLayer constants and tap widths
SHIFT = np.array([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1)
SCALE = np.array([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1)
WIDTHS = {"vgg": [64, 128, 256, 512, 512], "alex": [64, 192, 384, 256, 256]}
# spec section 3.2: torchvision alexnet().features conv keys and shapes
ALEX_SHAPES = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}


def write_legacy_lin_file(path: Path, net: str, seed: int = 0) -> collections.OrderedDict:
    """A lin-weight file like the package's v0.1 files: a legacy (non-zip) pickle of an OrderedDict
    ``lin{k}.model.1.weight`` -> ``[1, C, 1, 1]`` (non-negative), storages tagged ``cuda:0``."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict(
        (f"lin{k}.model.1.weight", torch.rand(1, c, 1, 1, generator=g) * 0.1) for k, c in enumerate(WIDTHS[net])
    )
    # the legacy writer asks location_tag() where each storage lives: answer as the CUDA-saved originals do
    with mock.patch("torch.serialization.location_tag", lambda storage: "cuda:0"):
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    return sd


def reference_lpips(model: LPIPS, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """The LPIPS formula in float64 numpy, tap by tap, on the model's own backbone activations."""
    def scaled(img):
        return torch.from_numpy(((2 * img.double().numpy() - 1) - SHIFT) / SCALE).float()

    with torch.no_grad():
        fx, fy = model.net(scaled(x)), model.net(scaled(y))
    if isinstance(fx, dict):
        fx, fy = list(fx.values()), list(fy.values())
    lins = [model.state_dict()[f"lin{k}.model.1.weight"].double().numpy().reshape(-1) for k in range(5)]
    total = np.zeros(x.shape[0])
    for a, b, w in zip(fx, fy, lins, strict=True):
        a, b = a.double().numpy(), b.double().numpy()
        a = a / (np.sqrt((a ** 2).sum(axis=1, keepdims=True)) + 1e-10)
        b = b / (np.sqrt((b ** 2).sum(axis=1, keepdims=True)) + 1e-10)
        weighted = np.einsum("bchw,c->bhw", (a - b) ** 2, w)
        total += weighted.mean(axis=(1, 2))
    return total


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, LPIPS]:
    tmp = tmp_path_factory.mktemp("lins")
    torch.manual_seed(0)
    out = {}
    for net in ("vgg", "alex"):
        path = tmp / f"{net}.pth"
        write_legacy_lin_file(path, net)
        out[net] = LPIPS(net=net, backbone="random", lin=str(path))
    return out


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(5)
    return torch.rand(3, 3, 48, 40, generator=g), torch.rand(3, 3, 48, 40, generator=g)


# ------------------------------------------------------------------------------------------- the distance
@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_matches_plain_recomputation(models, images, net):
    x, y = images
    d = models[net](x, y)
    assert d.shape == (3,) and d.dtype == torch.float32
    np.testing.assert_allclose(d.double().numpy(), reference_lpips(models[net], x, y), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_identity_symmetry_nonnegative_and_batch_independence(models, images, net):
    m = models[net]
    x, y = images
    assert torch.equal(m(x, x), torch.zeros(3))
    d = m(x, y)
    assert (d > 0).all()
    torch.testing.assert_close(m(y, x), d, rtol=1e-5, atol=1e-7)
    # each image's distance does not depend on what else is in the batch
    torch.testing.assert_close(m(x[1:2], y[1:2]), d[1:2], rtol=1e-5, atol=1e-7)
    mixed = torch.stack([x[2], torch.rand(3, 48, 40)]), torch.stack([y[2], torch.rand(3, 48, 40)])
    torch.testing.assert_close(m(*mixed)[0], d[2], rtol=1e-5, atol=1e-7)


def test_random_lin_is_nonnegative_and_flagged(caplog):
    with caplog.at_level(logging.WARNING):
        m = LPIPS(net="alex", backbone="random", lin="random")
    assert m.random_weights and m.net.random_weights
    assert any("lin='random'" in r.getMessage() for r in caplog.records)
    assert any("UNTRAINED AlexNet" in r.getMessage() for r in caplog.records)
    assert all((m.state_dict()[f"lin{k}.model.1.weight"] >= 0).all() for k in range(5))
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert (m(x, y) >= 0).all()


def test_frozen_eval_and_input_gradients(models):
    m = models["vgg"]
    assert all(not p.requires_grad for p in m.parameters())
    assert not m.train(True).training and not any(mod.training for mod in m.modules())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    m(x, torch.rand(1, 3, 32, 32)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_vgg_backbone_is_vgg16_relu_taps(models):
    net = models["vgg"].net
    assert net.depth == 16 and net.outputs == ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    taps = list(net(torch.rand(1, 3, 32, 32)).values())
    assert [t.shape[1] for t in taps] == WIDTHS["vgg"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="'vgg' or 'alex'"):
        LPIPS(net="squeeze", backbone="random", lin="random")
    m = LPIPS(net="alex", backbone="random", lin="random")
    with pytest.raises(ValueError, match="one shape"):
        m(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 40))


# ------------------------------------------------------------------------------------------- lin weights
def test_legacy_lin_file_loads_weights_only_on_cpu(tmp_path):
    path = tmp_path / "vgg.pth"
    sd = write_legacy_lin_file(path, "vgg", seed=3)
    raw = path.read_bytes()
    assert not zipfile.is_zipfile(path) and b"cuda:0" in raw  # really the legacy format, CUDA-tagged
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert list(loaded) == [f"lin{k}.model.1.weight" for k in range(5)]
    m = LPIPS(net="vgg", backbone="random", lin=str(path))
    assert m.lin == str(path) and m.random_weights  # random only through the backbone
    for k, (key, w) in enumerate(sd.items()):
        assert m.state_dict()[key].shape == (1, WIDTHS["vgg"][k], 1, 1)
        assert torch.equal(m.state_dict()[key], w)


def test_v01_lin_comes_from_the_registry_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    monkeypatch.setattr(weights, "_DIGESTS", {})
    dest = weights.weight_path("lpips_alex_v0.1")
    dest.parent.mkdir(parents=True)
    sd = write_legacy_lin_file(dest, "alex", seed=4)
    # the real entry carries the real file's digest; let this test-written file stand in for it
    digest = hashlib.sha256(dest.read_bytes()).hexdigest()
    monkeypatch.setitem(REGISTRY, "lpips_alex_v0.1", dataclasses.replace(REGISTRY["lpips_alex_v0.1"], sha256=digest))
    m = LPIPS(net="alex", backbone="random", lin="v0.1")
    assert torch.equal(m.lin2.model[1].weight, sd["lin2.model.1.weight"])
    assert m.random_weights  # the backbone is still random


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda sd: sd.pop("lin3.model.1.weight"), "lin3.model.1.weight"),
        (lambda sd: sd.update({"lin1.model.1.weight": torch.zeros(1, 64, 1, 1)}), "lin1.model.1.weight"),
        (lambda sd: sd.update({"net.slice1.0.weight": torch.zeros(1)}), "net.slice1.0.weight"),
    ],
    ids=["missing", "wrong-width", "unexpected"],
)
def test_bad_lin_files_are_refused_naming_the_key(tmp_path, edit, named):
    path = tmp_path / "lin.pth"
    sd = write_legacy_lin_file(path, "vgg")
    edit(sd)
    torch.save(sd, path)
    with pytest.raises(ValueError, match="lin weights") as exc:
        LPIPS(net="vgg", backbone="random", lin=str(path))
    assert named in str(exc.value)


def test_alex_lin_file_does_not_fit_vgg(tmp_path):
    path = tmp_path / "alex.pth"
    write_legacy_lin_file(path, "alex")
    with pytest.raises(ValueError, match="lin1.model.1.weight"):
        LPIPS(net="vgg", backbone="random", lin=str(path))


# ------------------------------------------------------------------------------------------- AlexNet
def test_alexnet_keys_shapes_and_taps():
    a = AlexNetFeatures(weights="random")
    sd = a.state_dict()
    expected = {}
    for i, shape in ALEX_SHAPES.items():
        expected[f"features.{i}.weight"], expected[f"features.{i}.bias"] = shape, (shape[0],)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected and list(sd) == list(expected)
    assert len(a.features) == 12  # up to the fifth ReLU (index 11); the last pool is not needed
    taps = a(torch.rand(2, 3, 64, 64))
    assert [t.shape[1] for t in taps] == WIDTHS["alex"]
    assert [tuple(t.shape[2:]) for t in taps] == [(15, 15), (7, 7), (3, 3), (3, 3), (3, 3)]
    assert all((t >= 0).all() for t in taps)
    assert all(not p.requires_grad for p in a.parameters()) and not a.train(True).training


def test_alexnet_loads_torchvision_file_and_matches_plain_forward(tmp_path):
    g = torch.Generator().manual_seed(7)
    sd = {}
    for i, shape in ALEX_SHAPES.items():
        sd[f"features.{i}.weight"] = torch.randn(*shape, generator=g) * 0.05
        sd[f"features.{i}.bias"] = torch.randn(shape[0], generator=g) * 0.05
    sd["classifier.1.weight"] = torch.zeros(4096, 9216)[:8, :8].clone()  # ignored, whatever its shape
    sd["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path / "alexnet-test.pth"
    torch.save(sd, path)
    a = AlexNetFeatures(weights=str(path))
    assert not a.random_weights
    x = torch.rand(1, 3, 67, 67)
    h1 = F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], stride=4, padding=2))
    h2 = F.relu(F.conv2d(F.max_pool2d(h1, 3, 2), sd["features.3.weight"], sd["features.3.bias"], padding=2))
    h3 = F.relu(F.conv2d(F.max_pool2d(h2, 3, 2), sd["features.6.weight"], sd["features.6.bias"], padding=1))
    h4 = F.relu(F.conv2d(h3, sd["features.8.weight"], sd["features.8.bias"], padding=1))
    h5 = F.relu(F.conv2d(h4, sd["features.10.weight"], sd["features.10.bias"], padding=1))
    for got, ref in zip(a(x), [h1, h2, h3, h4, h5], strict=True):
        torch.testing.assert_close(got, ref)
    sd.pop("features.8.bias")
    torch.save(sd, path)
    with pytest.raises(ValueError, match="features.8.bias"):
        AlexNetFeatures(weights=str(path))
    sd["features.8.bias"] = torch.zeros(384)
    torch.save(sd, path)
    with pytest.raises(ValueError, match="features.8.bias"):
        AlexNetFeatures(weights=str(path))


# ------------------------------------------------------------------------------------------- registry / offline
def test_registry_entries():
    alex = REGISTRY["alexnet"]
    assert alex.filename == "alexnet-owt-7be5be79.pth" and alex.sha256 == "7be5be79"
    assert alex.url == "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
    base = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/"
    vgg, alx = REGISTRY["lpips_vgg_v0.1"], REGISTRY["lpips_alex_v0.1"]
    assert vgg.url == base + "vgg.pth" and alx.url == base + "alex.pth"
    assert vgg.sha256 == "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868"
    assert alx.sha256 == "df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0"
    assert vgg.filename != alx.filename


@pytest.mark.parametrize(
    "kwargs, filename",
    [
        ({"net": "alex", "backbone": "imagenet", "lin": "random"}, "alexnet-owt-7be5be79.pth"),
        ({"net": "vgg", "backbone": "imagenet", "lin": "random"}, "vgg16-397923af.pth"),
        ({"net": "vgg", "backbone": "random", "lin": "v0.1"}, "lpips-v0.1-vgg.pth"),
        ({"net": "alex", "backbone": "random", "lin": "v0.1"}, "lpips-v0.1-alex.pth"),
    ],
    ids=["alexnet", "vgg16", "lin-vgg", "lin-alex"],
)
def test_missing_weight_files_are_named(tmp_path, monkeypatch, kwargs, filename):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as exc:
        LPIPS(**kwargs, offline_hint="eval.metrics=[fid]")
    assert filename in str(exc.value) and "eval.metrics=[fid]" in str(exc.value)
    assert str(tmp_path) in str(exc.value)

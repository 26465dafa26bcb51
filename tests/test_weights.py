"""The pretrained-weight registry: cache lookup, checksum, download (always faked), and the one clear error."""

from __future__ import annotations

import hashlib
import shutil
import urllib.error
from pathlib import Path

import pytest
import torch

from inpaint import weights
from inpaint.weights import (
    REGISTRY,
    WeightsChecksumError,
    WeightSpec,
    WeightsUnavailableError,
    cache_dir,
    fetch,
    load_state_dict,
    sha256sum,
    weight_path,
)

HINT = "model.loss.vgg=random"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private torch hub cache, downloads allowed by default, and no real download ever."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("INPAINT_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "_DIGESTS", {})

    def no_network(url, dest, md5=None, timeout=60.0):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(weights, "download_url", no_network)


def _fake_weights(path: Path) -> dict[str, torch.Tensor]:
    sd = {"layer.weight": torch.arange(6.0).view(2, 3), "layer.bias": torch.tensor([0.5, -1.0])}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd


def _register(monkeypatch, source: Path, *, prefix: int = 64, url: str | None = "https://example.invalid/tiny.pth"):
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    spec = WeightSpec(
        name="tiny",
        filename="tiny-weights.pth",
        url=url,
        sha256=digest[:prefix],
        description="tiny test weights (2 tensors)",
        source="made by the test",
    )
    monkeypatch.setitem(REGISTRY, "tiny", spec)
    return spec


def test_registry_entries():
    vgg19, vgg16 = REGISTRY["vgg19"], REGISTRY["vgg16"]
    assert vgg19.filename == "vgg19-dcbb9e9d.pth"
    assert vgg19.url == "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
    assert vgg19.sha256.startswith("dcbb9e9d")
    assert vgg16.filename == "vgg16-397923af.pth"
    assert vgg16.sha256 == "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
    for spec in REGISTRY.values():
        assert spec.name in REGISTRY and spec.description and spec.source


def test_spec_validation():
    with pytest.raises(ValueError, match="hex"):
        WeightSpec("x", "x.pth", None, "XYZ", "d", "s")
    with pytest.raises(ValueError, match="bare file name"):
        WeightSpec("x", "dir/x.pth", None, "abcdef01", "d", "s")


def test_cache_dir_follows_torch_home(tmp_path):
    assert cache_dir() == tmp_path / "torch_home" / "hub" / "checkpoints"
    assert weight_path("vgg19") == cache_dir() / "vgg19-dcbb9e9d.pth"
    with pytest.raises(ValueError, match="vgg16, vgg19"):
        weight_path("resnet")


def test_sha256sum(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc" * 1000)
    assert sha256sum(p, chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_missing_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as exc:
        fetch("vgg19", offline_hint=HINT)
    msg = str(exc.value)
    assert isinstance(exc.value, FileNotFoundError)
    assert "vgg19-dcbb9e9d.pth" in msg and "VGG19 ImageNet weights" in msg
    assert str(weight_path("vgg19")) in msg
    assert REGISTRY["vgg19"].url in msg
    assert HINT in msg and "INPAINT_OFFLINE" in msg
    assert not weight_path("vgg19").exists()


def test_download_false_and_no_url(tmp_path, monkeypatch):
    with pytest.raises(WeightsUnavailableError, match="not allowed"):
        fetch("vgg19", download=False)
    src = tmp_path / "src" / "w.pth"
    _fake_weights(src)
    _register(monkeypatch, src, url=None)
    with pytest.raises(WeightsUnavailableError, match="no download URL") as exc:
        fetch("tiny", offline_hint=HINT)
    assert "made by the test" in str(exc.value) and HINT in str(exc.value)


@pytest.mark.parametrize(
    "error", [urllib.error.URLError("Name or service not known"), TimeoutError("timed out"), OSError("refused")]
)
def test_missing_and_download_fails(monkeypatch, error):
    calls = []

    def failing(url, dest, md5=None, timeout=60.0):
        calls.append((url, Path(dest), timeout))
        raise error

    monkeypatch.setattr(weights, "download_url", failing)
    with pytest.raises(WeightsUnavailableError) as exc:
        fetch("vgg19", offline_hint=HINT)
    msg = str(exc.value)
    assert calls and calls[0][0] == REGISTRY["vgg19"].url and calls[0][2] <= 30
    assert "download failed" in msg and "vgg19-dcbb9e9d.pth" in msg
    assert str(weight_path("vgg19")) in msg and HINT in msg
    assert list(cache_dir().glob("*")) == []  # no partial file left behind


@pytest.mark.parametrize("prefix", [8, 64])
def test_present_with_right_checksum_loads(tmp_path, monkeypatch, prefix):
    src = tmp_path / "src" / "w.pth"
    sd = _fake_weights(src)
    _register(monkeypatch, src, prefix=prefix)
    dest = weight_path("tiny")
    dest.parent.mkdir(parents=True)
    shutil.copy(src, dest)
    monkeypatch.setenv("INPAINT_OFFLINE", "1")  # present: no download needed
    assert fetch("tiny") == dest
    loaded = load_state_dict("tiny")
    assert loaded.keys() == sd.keys()
    for k in sd:
        assert torch.equal(loaded[k], sd[k])


def test_present_with_wrong_checksum(tmp_path, monkeypatch):
    src = tmp_path / "src" / "w.pth"
    _fake_weights(src)
    _register(monkeypatch, src)
    dest = weight_path("tiny")
    dest.parent.mkdir(parents=True)
    dest.write_bytes(src.read_bytes()[:-10])  # truncated copy
    with pytest.raises(WeightsChecksumError) as exc:
        fetch("tiny")
    msg = str(exc.value)
    assert str(dest) in msg and REGISTRY["tiny"].sha256 in msg and sha256sum(dest) in msg
    assert "delete it and retry" in msg
    # the cache file given by path is verified too
    with pytest.raises(WeightsChecksumError):
        load_state_dict(str(dest))


def test_download_lands_in_cache_verified(tmp_path, monkeypatch):
    src = tmp_path / "src" / "w.pth"
    sd = _fake_weights(src)
    spec = _register(monkeypatch, src, prefix=8)
    calls = []

    def copy_download(url, dest, md5=None, timeout=60.0):
        calls.append(url)
        shutil.copy(src, dest)
        return Path(dest)

    monkeypatch.setattr(weights, "download_url", copy_download)
    path = fetch("tiny")
    assert path == cache_dir() / spec.filename and path.read_bytes() == src.read_bytes()
    assert calls == [spec.url]
    assert sorted(p.name for p in cache_dir().iterdir()) == [spec.filename]  # no temporary file left
    # second call: served from the cache, no download
    assert torch.equal(load_state_dict("tiny")["layer.weight"], sd["layer.weight"])
    assert calls == [spec.url]


def test_download_with_wrong_checksum_is_discarded(tmp_path, monkeypatch):
    src = tmp_path / "src" / "w.pth"
    _fake_weights(src)
    _register(monkeypatch, src)

    def corrupt_download(url, dest, md5=None, timeout=60.0):
        Path(dest).write_bytes(b"not the weights")
        return Path(dest)

    monkeypatch.setattr(weights, "download_url", corrupt_download)
    with pytest.raises(WeightsChecksumError, match="downloaded copy"):
        fetch("tiny")
    assert list(cache_dir().iterdir()) == []


def test_offline_env_overridden_by_explicit_download(tmp_path, monkeypatch):
    src = tmp_path / "src" / "w.pth"
    _fake_weights(src)
    _register(monkeypatch, src)
    monkeypatch.setenv("INPAINT_OFFLINE", "1")
    monkeypatch.setattr(weights, "download_url", lambda url, dest, **kw: shutil.copy(src, dest))
    assert fetch("tiny", download=True).is_file()


def test_load_from_path(tmp_path):
    p = tmp_path / "mine.pth"
    sd = _fake_weights(p)
    loaded = load_state_dict(str(p))
    assert torch.equal(loaded["layer.bias"], sd["layer.bias"])
    with pytest.raises(WeightsUnavailableError, match="neither a known name") as exc:
        load_state_dict(str(tmp_path / "absent.pth"), offline_hint=HINT)
    assert HINT in str(exc.value)


def test_unreadable_file_is_value_error(tmp_path):
    p = tmp_path / "garbage.pth"
    p.write_bytes(b"\x00 this is not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_state_dict(p)
    q = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), q)
    with pytest.raises(ValueError, match="not a state dict"):
        load_state_dict(q)

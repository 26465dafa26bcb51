"""LSUN (per-category LMDB): decoding, the key cache, corrupt entries, processes, download, a training run."""

from __future__ import annotations

import logging
import math
import os
import pickle
import zipfile
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from conftest import one_skip_report, photo_like, tiny
from fixtures_datasets import lsun_key, write_lsun
from torch.utils.data import DataLoader, Dataset

from inpaint.data.cache import CACHE_DIRNAME
from inpaint.data.datasets import lsun
from inpaint.data.datasets.base import DatasetNotReadyError
from inpaint.data.datasets.lsun import (
    LSUN_CATEGORIES,
    LMDBSource,
    LSUNLayout,
)
from inpaint.data.io import ImageReadError
from inpaint.data.masks import CenterMask
from inpaint.run import build_datamodule, run

H, W = 40, 56  # non-square, like LSUN's (short side 256, long side varies)


def _photos(n: int, seed: int = 0) -> list[np.ndarray]:
    return photo_like(n, seed, H, W)


def _by_key(images: list[np.ndarray], seed: int = 0) -> dict[str, np.ndarray]:
    return {lsun_key(i, seed): img for i, img in enumerate(images)}


def _put(folder: Path, key: str, value: bytes | None) -> None:
    """Overwrite (or with None delete) one entry of an LMDB environment."""
    env = lmdb.open(str(folder), map_size=(folder / "data.mdb").stat().st_size + (1 << 20))
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key.encode())
        else:
            txn.put(key.encode(), value)
    env.close()


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "lsun"
    write_lsun(root, _photos(8, seed=1), split="train", fmt="webp")
    write_lsun(root, _photos(3, seed=2), split="val", fmt="jpeg", seed=1)
    return root


# ------------------------------------------------------------------------------------ decoding


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_round_trip_decodes_close_to_the_written_images(tmp_path, fmt):
    images = _photos(5, seed=3)
    folder = write_lsun(tmp_path, images, fmt=fmt)
    assert folder == tmp_path / "bedroom_train_lmdb" and (folder / "data.mdb").is_file()
    src = LMDBSource(folder)
    expected = _by_key(images)
    assert len(src) == 5 and [src.name(i) for i in range(5)] == sorted(expected)
    for i in range(len(src)):
        out = src.load(i)
        assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.writeable
        err = np.abs(out.astype(int) - expected[src.name(i)].astype(int)).mean()
        assert err < 4, (fmt, err)
    # the values really are in the requested format
    value = src.value(0)
    assert value[8:12] == b"WEBP" if fmt == "webp" else value[:3] == b"\xff\xd8\xff"


def test_keys_are_40_hex(tmp_path):
    src = LMDBSource(write_lsun(tmp_path, _photos(3)))
    for i in range(3):
        key = src.name(i)
        assert len(key) == 40 and int(key, 16) >= 0


# ----------------------------------------------------------------------------------- key cache


def test_key_cache_lives_beside_the_data_never_in_the_cwd(root, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    src = LMDBSource(root / "bedroom_train_lmdb")
    cache = root / CACHE_DIRNAME / "lsun-keys-bedroom_train_lmdb.json"
    assert src.cache_path == cache and cache.is_file()
    src.load(0)
    assert list(cwd.iterdir()) == []
    lines = LSUNLayout(root).build_indexes()
    assert lines[0] == f"  bedroom_train_lmdb: 8 keys cached in {cache}"
    assert lines[1].startswith("  bedroom_val_lmdb: 3 keys cached in")
    assert list(cwd.iterdir()) == []


def test_key_cache_is_used_then_rebuilt_when_the_lmdb_changes(root, monkeypatch):
    folder = root / "bedroom_train_lmdb"
    assert len(LMDBSource(folder)) == 8
    scans = []
    original = LMDBSource._scan_keys
    monkeypatch.setattr(LMDBSource, "_scan_keys", lambda self: scans.append(1) or original(self))
    assert len(LMDBSource(folder)) == 8 and scans == []  # served from the cache
    write_lsun(root, _photos(1, seed=9), seed=5)  # add an entry
    src = LMDBSource(folder)
    assert len(src) == 9 and scans == [1]
    assert lsun_key(0, seed=5) in {src.name(i) for i in range(9)}


# ------------------------------------------------------------------------------ corrupt entries


def test_corrupt_value_raises_naming_the_key(root):
    folder = root / "bedroom_train_lmdb"
    key = sorted(_by_key(_photos(8, seed=1)))[3]
    _put(folder, key, b"this is not an image")
    src = LMDBSource(folder)
    assert src.name(3) == key
    with pytest.raises(ImageReadError) as e:
        src.load(3)
    assert key in str(e.value) and str(folder) in str(e.value)


def test_skip_mode_warns_naming_the_key_and_returns_the_next_image(root, caplog):
    folder = root / "bedroom_train_lmdb"
    images = _by_key(_photos(8, seed=1))
    keys = sorted(images)
    _put(folder, keys[3], b"\xff\xd8\xff truncated jpeg")
    src = LMDBSource(folder, on_corrupt="skip")
    with one_skip_report(caplog, keys[3]):
        out = src.load(3)
    assert np.abs(out.astype(int) - images[keys[4]].astype(int)).mean() < 4  # the next entry
    with caplog.at_level(logging.WARNING, logger="inpaint.data"):
        np.testing.assert_array_equal(src.load(3), out)  # remembered: no second warning
    assert sum(keys[3] in r.getMessage() for r in caplog.records) == 1


def test_key_missing_from_the_lmdb_raises_naming_it(root):
    folder = root / "bedroom_train_lmdb"
    src = LMDBSource(folder)
    key = src.name(5)
    _put(folder, key, None)
    with pytest.raises(ImageReadError, match=f"'{key}'.*not in the LMDB"):
        src.load(5)


def test_on_corrupt_value_is_checked(root):
    with pytest.raises(ValueError, match="on_corrupt"):
        LMDBSource(root / "bedroom_train_lmdb", on_corrupt="ignore")


# --------------------------------------------------------------------------------------- layout


def test_unknown_category_lists_the_categories(tmp_path):
    with pytest.raises(ValueError, match="data.category=cat") as e:
        LSUNLayout(tmp_path, category="cat")
    assert all(c in str(e.value) for c in LSUN_CATEGORIES) and len(LSUN_CATEGORIES) == 10


def test_splits_test_is_official_val_and_val_is_carved(root):
    dm = lsun.LSUNDataModule(root=str(root), category="bedroom", val_size=2, mask=CenterMask(), image_size=32)
    assert dm.split_sizes == {"train": 6, "val": 2, "test": 3}
    assert dm.sources["test"].path == root / "bedroom_val_lmdb"
    train = {dm.sources["train"].name(i) for i in range(6)}
    val = {dm.sources["val"].name(i) for i in range(2)}
    assert not train & val and len(train | val) == 8


def test_missing_lmdb_is_named(root):
    layout = LSUNLayout(root, category="tower")
    with pytest.raises(DatasetNotReadyError) as e:
        layout.ensure_ready()
    msg = str(e.value)
    assert f"missing file '{root / 'tower_train_lmdb' / 'data.mdb'}'" in msg
    assert "tower_val_lmdb.zip" in msg and "data.category=tower" in msg
    LSUNLayout(root, category="bedroom").ensure_ready()


# ------------------------------------------------------------------------------------ processes


def test_source_works_after_pickling(root):
    src = LMDBSource(root / "bedroom_train_lmdb")
    first = src.load(0)  # the parent has an open environment ...
    clone = pickle.loads(pickle.dumps(src))  # ... which is not pickled
    assert clone._env is None
    np.testing.assert_array_equal(clone.load(0), first)
    assert len(clone) == 8


class _Images(Dataset):
    def __init__(self, src: LMDBSource) -> None:
        self.src = src

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int):
        image = torch.from_numpy(self.src.load(i))
        return image, os.getpid(), self.src._pid  # the process that opened the environment used


def test_source_in_a_dataloader_with_two_workers(root):
    src = LMDBSource(root / "bedroom_train_lmdb")
    expected = [src.load(i) for i in range(len(src))]  # opened in the parent before the workers fork
    loader = DataLoader(_Images(src), batch_size=2, num_workers=2)
    got, pids = [], set()
    for images, pid, env_pid in loader:
        got += list(images.numpy())
        pids.update(pid.tolist())
        assert pid.tolist() == env_pid.tolist()  # each worker opened its own environment
    assert len(got) == 8 and os.getpid() not in pids
    assert src._pid == os.getpid()
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------- download


def _zip_dir(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, f"{folder.name}/{p.name}")
    return dest


def test_prepare_downloads_extracts_and_indexes(tmp_path, monkeypatch):
    src = tmp_path / "src"
    write_lsun(src, _photos(4, seed=7), category="church_outdoor", split="train")
    write_lsun(src, _photos(2, seed=8), category="church_outdoor", split="val", fmt="jpeg")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for split in ("train", "val"):
        _zip_dir(src / f"church_outdoor_{split}_lmdb", mirror / f"church_outdoor_{split}_lmdb.zip")
    monkeypatch.setattr(lsun, "LSUN_URL", mirror.as_uri() + "/{category}_{split}_lmdb.zip")
    root = tmp_path / "data"
    layout = LSUNLayout(root, category="church_outdoor")
    assert layout.archives()[1].url == (mirror / "church_outdoor_val_lmdb.zip").as_uri()
    report = layout.prepare(download=True, val_size=2)
    text = str(report)
    assert report.ready, text
    assert (
        "extracted church_outdoor_train_lmdb.zip" in text and "extracted church_outdoor_val_lmdb.zip" in text
    )
    assert "church_outdoor_train_lmdb: 4 keys cached in" in text
    assert "train: 2 images" in text and "val: 2 images" in text and "test: 2 images" in text
    assert (root / CACHE_DIRNAME / "lsun-keys-church_outdoor_val_lmdb.json").is_file()


def test_default_url_is_the_owners_download_server():
    urls = [a.url for a in LSUNLayout("/data", category="kitchen").archives()]
    assert urls == [
        "http://dl.yf.io/lsun/scenes/kitchen_train_lmdb.zip",
        "http://dl.yf.io/lsun/scenes/kitchen_val_lmdb.zip",
    ]


# ------------------------------------------------------------------------------------- training


def test_training_run_through_the_real_config(make_cfg, root):
    over = [
        "data=lsun",
        f"data.root={root}",
        "data.category=bedroom",
        "data.val_size=2",
        *tiny(),
        "data.image_size=32",
        "data.resize_short=32",
        "trainer.max_steps=2",
        "logger=none",
    ]
    cfg = make_cfg(*over)
    assert build_datamodule(cfg).split_sizes == {"train": 6, "val": 2, "test": 3}
    results = run(cfg)
    assert results["test/count"] == 3 * 2  # 3 official-val images x eval_crops_per_image=2 (tiny)
    assert math.isfinite(results["test/psnr"]) and math.isfinite(results["val/psnr"])

"""LSDIR: training PNG folders (three extraction layouts) and val1/HR/val, read through the real config."""

from __future__ import annotations

import json
import math
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import one_skip_report, tiny
from fixtures_datasets import write_lsdir
from PIL import Image

from inpaint.data.cache import CACHE_DIRNAME
from inpaint.data.datasets import lsdir
from inpaint.data.datasets.base import DatasetNotReadyError
from inpaint.data.datasets.lsdir import LSDIRDataModule, LSDIRLayout, canonical_name
from inpaint.data.io import ImageReadError
from inpaint.data.masks import CenterMask
from inpaint.run import build_datamodule, run

H, W = 80, 96  # the real photos are about 2K; small keeps the tests fast


def photos(n: int, seed: int = 0, size: tuple[int, int] = (H, W)) -> list[np.ndarray]:
    """Smooth photo-like RGB images, each different."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        base = np.stack(
            [np.sin(5 * xx - 2 * yy + rng.uniform(0, 6)) * 0.3 + rng.uniform(0.2, 0.7) for _ in range(3)], -1
        )
        out.append((np.clip(base, 0, 1) * 255).astype(np.uint8))
    return out


@pytest.fixture
def root(tmp_path) -> Path:
    write_lsdir(tmp_path / "lsdir", photos(6), photos(3, seed=1))
    return tmp_path / "lsdir"


def _names(source) -> list[str]:
    return [source.name(i) for i in range(len(source))]


def test_write_example_names_folders_by_the_upper_index(tmp_path):
    tiny_imgs = [np.full((2, 2, 3), i % 256, np.uint8) for i in range(1001)]
    written = write_lsdir(tmp_path, tiny_imgs, tiny_imgs[:1], layout="shards")
    rel = [p.relative_to(tmp_path).as_posix() for p in written["train"]]
    assert rel[0] == "shard-00/0001000/0000001.png" and rel[999] == "shard-00/0001000/0001000.png"
    assert rel[1000] == "shard-00/0002000/0001001.png"
    assert [p.relative_to(tmp_path).as_posix() for p in written["test"]] == ["val1/HR/val/0000001.png"]
    train = LSDIRLayout(tmp_path).splits()["train"]
    assert len(train) == 1001 and train.name(1000) == "0002000/0001001.png"


def test_all_three_layouts_give_the_same_train_set(tmp_path):
    train_imgs, val_imgs = photos(6), photos(3, seed=1)
    seen = {}
    for layout in ("flat", "hr", "shards"):
        write_lsdir(tmp_path / layout, train_imgs, val_imgs, layout=layout)
        splits = LSDIRLayout(tmp_path / layout).splits()
        assert set(splits) == {"train", "test"}  # no val: the DataModule carves one
        seen[layout] = (_names(splits["train"]), splits["train"].load(4), _names(splits["test"]))
    assert (tmp_path / "hr" / "HR" / "train" / "0001000" / "0000001.png").is_file()
    assert (tmp_path / "shards" / "shard-00" / "0001000" / "0000001.png").is_file()
    names, image, test = seen["flat"]
    assert names == [f"0001000/{i:07d}.png" for i in range(1, 7)] and test == [
        "0000001.png",
        "0000002.png",
        "0000003.png",
    ]
    assert np.array_equal(image, train_imgs[4])
    for other in ("hr", "shards"):
        assert seen[other][0] == names and seen[other][2] == test and np.array_equal(seen[other][1], image)
    assert canonical_name("HR/train/0001000/0000001.png") == canonical_name("0001000/0000001.png")


def test_val1_is_never_train_and_is_the_test_split(root):
    for scale in ("X2", "X4"):  # downscaled copies of val, as in the real val1.tar.gz
        (root / "val1" / scale).mkdir(parents=True)
        Image.fromarray(photos(1)[0][::2, ::2]).save(root / "val1" / scale / f"0000001x{scale[1]}.png")
    splits = LSDIRLayout(root).splits()
    assert _names(splits["train"]) == [f"0001000/{i:07d}.png" for i in range(1, 7)]
    assert (
        len(splits["test"]) == 3 and splits["test"].paths[0] == root / "val1" / "HR" / "val" / "0000001.png"
    )


def test_datamodule_carves_validation_from_train(root):
    dm = LSDIRDataModule(str(root), mask=CenterMask(), image_size=32, val_size=2)
    assert dm.split_sizes == {"train": 4, "val": 2, "test": 3}
    assert not set(_names(dm.sources["val"])) & set(_names(dm.sources["train"]))
    assert LSDIRLayout.default_val_size == 500


def test_train_list_is_cached_beside_the_data(root, monkeypatch):
    layout = LSDIRLayout(root)
    first = layout.train_files()
    cache = root / CACHE_DIRNAME / "lsdir-train-files.json"
    assert cache.is_file() and json.loads(cache.read_text())["value"] == first
    assert layout.build_indexes() == [f"  train file list: 6 PNGs (cached in '{cache.resolve()}')"]

    def no_walk(*_args, **_kwargs):
        raise AssertionError("the cached list should have been used")

    monkeypatch.setattr(lsdir.os, "walk", no_walk)
    assert layout.train_files() == first  # served from the cache: the 1,000-image folders are not walked


def test_cache_is_rebuilt_when_files_are_added(root):
    layout = LSDIRLayout(root)
    assert len(layout.train_files()) == 6
    (root / "0002000").mkdir()  # a new folder
    Image.fromarray(photos(1)[0]).save(root / "0002000" / "0001001.png")
    assert layout.train_files()[-1] == "0002000/0001001.png"
    folder = root / "0001000"  # a new file in a known folder moves that folder's mtime
    Image.fromarray(photos(1)[0]).save(folder / "0000007.png")
    st = folder.stat()  # (moved explicitly too: a coarse clock may not tick between the two writes)
    os.utime(folder, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert len(layout.train_files()) == 8 and "0001000/0000007.png" in layout.train_files()


def test_the_same_image_in_two_layouts_is_an_error(root):
    shutil.copytree(root / "0001000", root / "HR" / "train" / "0001000")
    with pytest.raises(
        ValueError, match=r"'0001000/0000001\.png' is present twice.*HR/train/0001000/0000001\.png"
    ):
        LSDIRLayout(root).splits()


def test_wrong_root_and_missing_parts_are_named(tmp_path, root):
    with pytest.raises(DatasetNotReadyError, match="does not exist"):
        LSDIRLayout(tmp_path / "nope").ensure_ready()
    shutil.rmtree(root / "val1")
    with pytest.raises(DatasetNotReadyError) as err:
        LSDIRLayout(root).ensure_ready()
    msg = str(err.value)
    assert "val1/HR/val" in msg and "ofsoundof/LSDIR" in msg and "val1.tar.gz" in msg
    shutil.rmtree(root / "0001000")
    (root / "val1" / "HR" / "val").mkdir(parents=True)
    problems = LSDIRLayout(root).problems()
    assert any("holds no PNG" in p for p in problems)
    assert any("no training PNG found" in p and "0001000/0000001.png" in p for p in problems)


def test_corrupt_image_error_or_skip(root, caplog):
    bad = root / "0001000" / "0000001.png"
    bad.write_bytes(bad.read_bytes()[:100])  # truncated PNG
    with pytest.raises(ImageReadError, match=r"0001000/0000001\.png"):
        LSDIRLayout(root).splits()["train"].load(0)
    train = LSDIRLayout(root, on_corrupt="skip").splits()["train"]
    with one_skip_report(caplog, r"0001000/0000001\.png"):
        img = train.load(0)
    assert np.array_equal(img, photos(6)[1])


def test_prepare_extracts_the_shards_and_val1(root):
    with tarfile.open(root / "shard-00.tar.gz", "w:gz") as tf:
        tf.add(root / "0001000", arcname="0001000")
    with tarfile.open(root / "val1.tar.gz", "w:gz") as tf:
        tf.add(root / "val1", arcname="val1")
    shutil.rmtree(root / "0001000")
    shutil.rmtree(root / "val1")
    report = LSDIRLayout(root).prepare(download=False, val_size=2)
    assert report.ready, str(report)
    text = str(report)
    assert "extracted shard-00.tar.gz" in text and "extracted val1.tar.gz" in text
    assert "train file list: 6 PNGs" in text and "test: 3 images" in text


def test_evaluation_takes_the_centre_crop(root, make_cfg):
    dm = build_datamodule(
        make_cfg(
            "data=lsdir", f"data.root={root}", "data.image_size=32", "data.val_size=2", "data.num_workers=0"
        )
    )
    assert dm.resize_short is None and dm.eval_crops_per_image == 1
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    expected = np.asarray(Image.open(root / "val1" / "HR" / "val" / "0000001.png"))[24:56, 32:64]
    got = (batch["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, expected)


def test_training_run_on_the_real_config(root, make_cfg):
    results = run(
        make_cfg(
            "data=lsdir",
            f"data.root={root}",
            *tiny(),
            "trainer.max_steps=2",
            "logger=none",
            "data.image_size=32",
            "data.resize_short=null",
            "data.val_size=2",
        )
    )
    assert results["test/count"] == 6  # 3 official val1 images (the test split) x 2 crops (tiny)
    assert results["val/count"] == 4  # 2 images carved from train x 2 crops
    assert math.isfinite(results["test/psnr"]) and math.isfinite(results["test/ssim"])

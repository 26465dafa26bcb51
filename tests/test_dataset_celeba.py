"""CelebA: img_align_celeba/ + list_eval_partition.txt in the real format, read through the real config."""

from __future__ import annotations

import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import one_skip_report, tiny
from fixtures_datasets import write_celeba
from PIL import Image

from inpaint.data.datasets.base import DatasetNotReadyError
from inpaint.data.datasets.celeba import (
    CELEBA_PARTITION_MD5,
    CelebADataModule,
    CelebALayout,
    read_partition,
)
from inpaint.data.download import ChecksumError
from inpaint.data.io import ImageReadError
from inpaint.data.masks import CenterMask
from inpaint.run import build_datamodule, run

W, H = 178, 218  # aligned CelebA images are 178 wide x 218 high
NO_MD5 = "data.verify_checksums=false"  # a fixture partition file cannot match the published md5


def faces(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth photo-like 218x178 RGB images (gradients + a bright blob), each different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W] / H
    out = []
    for _ in range(n):
        base = np.stack(
            [np.sin(4 * xx + rng.uniform(0, 6)) * 0.3 + rng.uniform(0.2, 0.7) for _ in range(3)], -1
        )
        cy, cx = rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.6)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) * 30)[..., None] * rng.uniform(0, 0.5, 3)
        out.append((np.clip(base + blob, 0, 1) * 255).astype(np.uint8))
    return out


@pytest.fixture
def root(tmp_path) -> Path:
    write_celeba(tmp_path / "celeba", faces(10))  # default contiguous partition: 8 / 1 / 1
    return tmp_path / "celeba"


def test_write_example_is_the_real_format(root):
    lines = (root / "list_eval_partition.txt").read_text().splitlines()
    assert lines[0] == "000001.jpg 0" and lines[-2] == "000009.jpg 1" and lines[-1] == "000010.jpg 2"
    with Image.open(root / "img_align_celeba" / "000001.jpg") as img:
        assert img.format == "JPEG" and img.size == (W, H)


def test_splits_follow_the_partition_file(tmp_path):
    codes = [0, 0, 1, 0, 2, 0, 1, 2, 0, 0]
    written = write_celeba(tmp_path, faces(10), partition=codes)
    splits = CelebALayout(tmp_path, verify_checksums=False).splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "val": 2, "test": 2}
    assert [splits["val"].name(i) for i in range(2)] == ["000003.jpg", "000007.jpg"]
    assert [splits["test"].name(i) for i in range(2)] == ["000005.jpg", "000008.jpg"]
    assert np.array_equal(splits["test"].load(1), np.asarray(Image.open(written["test"][1])))
    assert read_partition(tmp_path / "list_eval_partition.txt")["val"] == [
        (3, "000003.jpg"),
        (7, "000007.jpg"),
    ]


def test_datamodule_uses_the_official_splits(root):
    dm = CelebADataModule(str(root), mask=CenterMask(), image_size=32, verify_checksums=False)
    assert dm.split_sizes == {"train": 8, "val": 1, "test": 1}


def test_config_crops_the_centre_square_then_resizes(root, make_cfg):
    cfg = make_cfg("data=celeba", f"data.root={root}", NO_MD5)
    assert (cfg.data.center_crop, cfg.data.resize_short, cfg.data.image_size) == (178, 256, 256)
    dm = build_datamodule(
        make_cfg(
            "data=celeba",
            f"data.root={root}",
            NO_MD5,
            "data.image_size=32",
            "data.resize_short=32",
            "data.num_workers=0",
        )
    )
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    # independent computation: rows 20..197 (the centre 178x178 square), bicubic to 32x32
    with Image.open(root / "img_align_celeba" / "000010.jpg") as img:
        expected = np.asarray(
            img.convert("RGB").crop((0, 20, 178, 198)).resize((32, 32), Image.Resampling.BICUBIC)
        )
    got = (batch["image"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert got.shape == (32, 32, 3)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    # not the uncropped image squeezed to a square
    with Image.open(root / "img_align_celeba" / "000010.jpg") as img:
        squeezed = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    assert np.abs(got.astype(int) - squeezed.astype(int)).max() > 5


def test_checksum_mismatch_names_the_file_and_the_override(root):
    with pytest.raises(DatasetNotReadyError) as err:
        CelebADataModule(str(root), mask=CenterMask())
    msg = str(err.value)
    assert "list_eval_partition.txt" in msg and CELEBA_PARTITION_MD5 in msg and NO_MD5 in msg
    CelebADataModule(str(root), mask=CenterMask(), verify_checksums=False)  # the override works


def test_wrong_root_lists_what_is_missing_and_where_to_get_it(tmp_path):
    layout = CelebALayout(tmp_path / "nope")
    with pytest.raises(DatasetNotReadyError, match="does not exist"):
        layout.ensure_ready()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotReadyError) as err:
        CelebALayout(tmp_path / "empty").ensure_ready()
    msg = str(err.value)
    assert "missing folder" in msg and "img_align_celeba" in msg
    assert "missing file" in msg and "list_eval_partition.txt" in msg
    assert "mmlab.ie.cuhk.edu.hk" in msg and "img_align_celeba.zip" in msg


def test_missing_partition_file_is_named(root):
    (root / "list_eval_partition.txt").unlink()
    problems = CelebALayout(root).problems()
    assert len(problems) == 1 and "list_eval_partition.txt" in problems[0]


def test_listed_image_missing_is_named_with_its_line(root):
    (root / "img_align_celeba" / "000004.jpg").unlink()
    (root / "img_align_celeba" / "000009.jpg").unlink()
    with pytest.raises(DatasetNotReadyError) as err:
        CelebALayout(root, verify_checksums=False).splits()
    msg = str(err.value)
    assert "2 of the 10 images" in msg and "line 4:" in msg and "000004.jpg" in msg and "line 9:" in msg


@pytest.mark.parametrize(
    ("bad_line", "match"),
    [
        ("000003.jpg", "malformed"),
        ("000003.jpg 3", "malformed"),
        ("000003.jpg 0 x", "malformed"),
        ("000001.jpg 1", "already listed on line 1"),
    ],
)
def test_malformed_partition_line_names_file_and_line(root, bad_line, match):
    lines = (root / "list_eval_partition.txt").read_text().splitlines()
    lines[2] = bad_line
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"list_eval_partition\.txt', line 3: .*{match}"):
        CelebALayout(root, verify_checksums=False).splits()


def test_a_split_with_no_image_is_an_error(tmp_path):
    write_celeba(tmp_path, faces(4), partition=[0, 0, 1, 1])
    with pytest.raises(ValueError, match="no image for the test split"):
        CelebALayout(tmp_path, verify_checksums=False).splits()


def test_corrupt_image_error_or_skip(root, caplog):
    bad = root / "img_align_celeba" / "000001.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    train = CelebALayout(root, verify_checksums=False).splits()["train"]
    with pytest.raises(ImageReadError, match="000001.jpg"):
        train.load(0)
    train = CelebALayout(root, verify_checksums=False, on_corrupt="skip").splits()["train"]
    with one_skip_report(caplog, "000001.jpg"):
        img = train.load(0)
    assert np.array_equal(img, np.asarray(Image.open(root / "img_align_celeba" / "000002.jpg")))


def test_prepare_extracts_the_image_archive(root):
    with zipfile.ZipFile(root / "img_align_celeba.zip", "w") as zf:
        for f in sorted((root / "img_align_celeba").iterdir()):
            zf.write(f, f"img_align_celeba/{f.name}")
    shutil.rmtree(root / "img_align_celeba")
    with pytest.raises(ChecksumError, match=r"img_align_celeba\.zip"):  # not the published zip
        CelebALayout(root).prepare(download=False)
    report = CelebALayout(root, verify_checksums=False).prepare(download=False)
    assert report.ready, str(report)
    text = str(report)
    assert "extracted img_align_celeba.zip" in text and "train: 8 images" in text and "test: 1 images" in text
    assert len(list((root / "img_align_celeba").glob("*.jpg"))) == 10


def test_training_run_on_the_real_config(root, make_cfg):
    results = run(
        make_cfg(
            "data=celeba",
            f"data.root={root}",
            *tiny(),
            "trainer.max_steps=2",
            "logger=none",
            "data.image_size=32",
            "data.resize_short=32",
            NO_MD5,
        )
    )
    assert results["test/count"] == 2 and results["val/count"] == 2  # 1 image each x 2 crops (tiny)
    assert math.isfinite(results["test/psnr"]) and math.isfinite(results["test/ssim"])

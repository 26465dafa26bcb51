"""Places2 / Places365: image folders and devkit lists in the real format, read through the real config."""

from __future__ import annotations

import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import one_skip_report, tiny
from fixtures_datasets import write_places2
from PIL import Image

from inpaint.data.datasets import places2
from inpaint.data.datasets.base import DatasetNotReadyError
from inpaint.data.datasets.places2 import Places2DataModule, Places2Layout, read_list
from inpaint.data.download import ChecksumError
from inpaint.data.io import ImageReadError
from inpaint.data.masks import CenterMask
from inpaint.run import run

SIZE = 64  # the real *_256 images are 256x256; smaller keeps the tests fast


def scenes(n: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth photo-like SIZE x SIZE RGB images, each different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    out = []
    for _ in range(n):
        base = np.stack(
            [np.cos(3 * yy + 2 * xx + rng.uniform(0, 6)) * 0.3 + rng.uniform(0.2, 0.7) for _ in range(3)], -1
        )
        out.append((np.clip(base, 0, 1) * 255).astype(np.uint8))
    return out


@pytest.fixture
def root(tmp_path) -> Path:
    imgs = scenes(15)
    write_places2(tmp_path / "places", imgs[:8], imgs[8:12], imgs[12:])
    return tmp_path / "places"


def test_write_example_is_the_real_format(root):
    train = (root / "places365_train_standard.txt").read_text().splitlines()
    assert train[:3] == ["/a/abbey/00000001.jpg 0", "/a/abbey/00000002.jpg 0", "/a/abbey/00000003.jpg 0"]
    assert "/s/swimming_pool/indoor/00000002.jpg 2" in train and len(train) == 8
    assert (root / "places365_val.txt").read_text().splitlines()[1] == "Places365_val_00000002.jpg 1"
    assert (root / "places365_test.txt").read_text().splitlines()[0] == "Places365_test_00000001.jpg"
    assert (root / "categories_places365.txt").read_text().splitlines()[0] == "/a/abbey 0"
    assert (root / "data_256" / "s" / "swimming_pool" / "indoor" / "00000001.jpg").is_file()
    assert (root / "test_256" / "Places365_test_00000003.jpg").is_file()


def test_official_splits_and_leading_slash(root):
    splits = Places2Layout(root).splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 8, "val": 4, "test": 3}
    train = splits["train"]
    assert train.name(0) == "a/abbey/00000001.jpg"  # '/a/abbey/...' is relative to data_256, not absolute
    assert train.paths[0] == root / "data_256" / "a" / "abbey" / "00000001.jpg"
    assert np.array_equal(train.load(0), np.asarray(Image.open(train.paths[0])))
    assert splits["val"].name(3) == "Places365_val_00000004.jpg"
    assert splits["test"].name(2) == "Places365_test_00000003.jpg"
    # a list written without the leading '/' reads the same
    text = (root / "places365_train_standard.txt").read_text().replace("\n/", "\n").lstrip("/")
    (root / "places365_train_standard.txt").write_text(text)
    again = Places2Layout(root).splits()["train"]
    assert [again.name(i) for i in range(8)] == [train.name(i) for i in range(8)]


def test_datamodule_uses_the_official_splits(root):
    dm = Places2DataModule(str(root), mask=CenterMask(), image_size=32)
    assert dm.split_sizes == {"train": 8, "val": 4, "test": 3}


def test_variant_picks_the_train_list(tmp_path):
    imgs = scenes(9)
    write_places2(tmp_path, imgs, imgs[:2], imgs[:1], variant="challenge")
    # the Standard list is the first images of each class of Challenge
    challenge = (tmp_path / "places365_train_challenge.txt").read_text().splitlines()
    standard = [line for line in challenge if line.split()[0].endswith("00000001.jpg")]
    assert not (tmp_path / "places365_train_standard.txt").exists()
    assert "places365_train_standard.txt" in " ".join(Places2Layout(tmp_path).problems())
    (tmp_path / "places365_train_standard.txt").write_text("\n".join(standard) + "\n")
    std = Places2Layout(tmp_path, variant="standard").splits()["train"]
    chal = Places2Layout(tmp_path, variant="challenge").splits()["train"]
    assert len(std) == 3 and len(chal) == 9
    assert {std.name(i) for i in range(3)} < {chal.name(i) for i in range(9)}


def test_torchvision_renamed_train_folder(root):
    (root / "data_256").rename(root / "data_256_standard")
    layout = Places2Layout(root)
    assert layout.problems() == []
    assert layout.train_dirname() == "data_256_standard"
    train = layout.splits()["train"]
    assert len(train) == 8 and train.paths[0].parent.parent.parent.name == "data_256_standard"
    assert Places2Layout(root, variant="challenge").train_dirname() == "data_256"  # only its own variant


def test_large_resolution_folders(tmp_path):
    imgs = scenes(6)
    write_places2(tmp_path, imgs[:3], imgs[3:5], imgs[5:], resolution="large")
    assert (tmp_path / "data_large" / "a" / "abbey" / "00000001.jpg").is_file()
    assert "data_256" in " ".join(Places2Layout(tmp_path).problems())
    splits = Places2Layout(tmp_path, resolution="large").splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "val": 2, "test": 1}


def test_test_split_val_tests_on_val_and_carves_validation_from_train(root):
    shutil.rmtree(root / "test_256")
    (root / "places365_test.txt").unlink()
    with pytest.raises(DatasetNotReadyError, match=r"(?s)test_256.*data\.test_split=val"):
        Places2DataModule(str(root), mask=CenterMask())
    official = Places2Layout(root, test_split="val").splits()
    assert set(official) == {"train", "test"}  # no val: the DataModule carves one
    dm = Places2DataModule(str(root), mask=CenterMask(), test_split="val", val_size=2)
    assert dm.split_sizes == {"train": 6, "val": 2, "test": 4}
    assert dm.sources["test"].name(0) == "Places365_val_00000001.jpg"
    names = {split: {dm.sources[split].name(i) for i in range(n)} for split, n in dm.split_sizes.items()}
    assert names["val"] | names["train"] == {official["train"].name(i) for i in range(8)}
    assert not names["val"] & names["train"]


def test_unknown_options_name_the_option_and_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"data\.variant='full' is not one of standard, challenge"):
        Places2Layout(tmp_path, variant="full")
    with pytest.raises(ValueError, match=r"data\.resolution=512 is not one of 256, large"):
        Places2Layout(tmp_path, resolution=512)
    with pytest.raises(ValueError, match=r"data\.test_split='train' is not one of test, val"):
        Places2Layout(tmp_path, test_split="train")
    assert (
        Places2Layout(tmp_path, resolution=256).resolution == "256"
    )  # Hydra gives data.resolution=256 as int


def test_wrong_root_lists_the_layout_and_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotReadyError) as err:
        Places2Layout(tmp_path).ensure_ready()
    msg = str(err.value)
    for item in (
        "data_256",
        "places365_train_standard.txt",
        "val_256",
        "places365_val.txt",
        "test_256",
        "places365_test.txt",
        "places2.csail.mit.edu",
        "filelist_places365-standard.tar",
    ):
        assert item in msg


def test_missing_list_file_is_named(root):
    (root / "places365_val.txt").unlink()
    problems = Places2Layout(root).problems()
    assert len(problems) == 1 and "places365_val.txt" in problems[0]


def test_listed_image_missing_is_named_with_its_line(root):
    (root / "data_256" / "b" / "bedroom" / "00000002.jpg").unlink()
    (root / "val_256" / "Places365_val_00000003.jpg").unlink()
    with pytest.raises(DatasetNotReadyError) as err:
        Places2Layout(root).splits()
    msg = str(err.value)
    assert "1 of the 8 images" in msg and "line 5:" in msg and "b/bedroom/00000002.jpg" in msg
    (root / "data_256" / "b" / "bedroom" / "00000002.jpg").write_bytes(
        b""
    )  # present (corrupt) is not missing
    with pytest.raises(
        DatasetNotReadyError, match=r"1 of the 4 images.*line 3: .*Places365_val_00000003\.jpg"
    ):
        Places2Layout(root).splits()


def test_start_up_checks_a_sample_and_prepare_checks_everything(root, monkeypatch):
    monkeypatch.setattr(
        places2, "_SAMPLE", 2
    )  # only the first and last train entries are checked at start up
    gone = root / "data_256" / "b" / "bedroom" / "00000001.jpg"
    gone.unlink()
    layout = Places2Layout(root)
    train = layout.splits()["train"]
    index = [train.name(i) for i in range(len(train))].index("b/bedroom/00000001.jpg")
    with pytest.raises(ImageReadError, match=r"b/bedroom/00000001\.jpg.*does not exist"):
        train.load(index)  # never dropped silently
    with pytest.raises(DatasetNotReadyError, match=r"1 of the 8 images.*line 4: .*b/bedroom/00000001\.jpg"):
        layout.build_indexes()


@pytest.mark.parametrize(
    ("file", "line", "match"),
    [
        ("places365_train_standard.txt", "/a/abbey/00000009.jpg", "PATH LABEL"),
        ("places365_train_standard.txt", "/a/abbey/00000009.jpg x", "PATH LABEL"),
        ("places365_train_standard.txt", "/a/abbey/00000009.jpg 0 1", "PATH LABEL"),
        ("places365_val.txt", " 3", "PATH LABEL"),
        ("places365_test.txt", "Places365_test_00000009.jpg 4", "one file name per line"),
    ],
)
def test_malformed_list_line_names_file_and_line(root, file, line, match):
    lines = (root / file).read_text().splitlines()
    lines.insert(1, line)
    (root / file).write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=rf"{file}', line 2: malformed line .*{match}"):
        Places2Layout(root).splits()


def test_read_list_tolerates_crlf_blank_lines_and_no_final_newline(tmp_path):
    f = tmp_path / "list.txt"
    f.write_bytes(b"/a/abbey/00000001.jpg 0\r\n\r\n/b/bedroom/00000001.jpg 12\r\n/c/x/00000001.jpg 364")
    entries = read_list(f, labelled=True)
    assert [entries.rel(i) for i in range(len(entries))] == [
        "a/abbey/00000001.jpg",
        "b/bedroom/00000001.jpg",
        "c/x/00000001.jpg",
    ]
    assert entries.linenos.tolist() == [1, 3, 4]
    f.write_text("")
    with pytest.raises(ValueError, match="lists no images"):
        read_list(f, labelled=True)


def test_read_list_handles_long_lists(tmp_path):
    n = 300_000
    f = tmp_path / "big.txt"
    f.write_text("".join(f"/a/abbey/{i:08d}.jpg {i % 365}\n" for i in range(n)))
    entries = read_list(f, labelled=True)
    assert len(entries) == n and entries.rel(n - 1) == f"a/abbey/{n - 1:08d}.jpg"
    assert places2.sample_indices(n).size == places2._SAMPLE


def test_corrupt_image_error_or_skip(root, caplog):
    bad = root / "data_256" / "a" / "abbey" / "00000001.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError, match=r"a/abbey/00000001\.jpg"):
        Places2Layout(root).splits()["train"].load(0)
    train = Places2Layout(root, on_corrupt="skip").splits()["train"]
    with one_skip_report(caplog, r"a/abbey/00000001\.jpg"):
        img = train.load(0)
    assert np.array_equal(img, np.asarray(Image.open(root / "data_256" / "a" / "abbey" / "00000002.jpg")))


def test_prepare_extracts_the_val_archive(root):
    with tarfile.open(root / "val_256.tar", "w") as tf:
        tf.add(root / "val_256", arcname="val_256")
    shutil.rmtree(root / "val_256")
    with pytest.raises(ChecksumError, match=r"val_256\.tar"):  # not the published archive
        Places2Layout(root).prepare(download=False)
    report = Places2Layout(root, verify_checksums=False).prepare(download=False)
    assert report.ready, str(report)
    text = str(report)
    assert (
        "extracted val_256.tar" in text and "all 8 listed images present" in text and "val: 4 images" in text
    )
    assert len(list((root / "val_256").glob("*.jpg"))) == 4


def test_training_run_on_the_real_config(root, make_cfg):
    results = run(
        make_cfg(
            "data=places2",
            f"data.root={root}",
            *tiny(),
            "trainer.max_steps=2",
            "logger=none",
            "data.image_size=32",
            "data.resize_short=null",
        )
    )
    assert results["test/count"] == 6  # 3 official test images x 2 crops (tiny)
    assert results["val/count"] == 8  # 4 official val images x 2 crops
    assert math.isfinite(results["test/psnr"]) and math.isfinite(results["test/ssim"])

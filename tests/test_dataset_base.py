"""The machinery every dataset shares: layouts, readiness messages, carving, archives, caches, prepare."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import write_photos

from inpaint.data.cache import CACHE_DIRNAME, cache_dir, cached_json, fingerprint
from inpaint.data.datasets.base import (
    Archive,
    DatasetDataModule,
    DatasetLayout,
    DatasetNotReadyError,
    Requirement,
    SubsetSource,
    carve_split,
)
from inpaint.data.download import ChecksumError, check_md5, download_url, extract, md5sum
from inpaint.data.masks import CenterMask
from inpaint.data.sources import FolderSource, SampleSource


class ToyLayout(DatasetLayout):
    """A dataset of two folders, ``train/`` and ``test/``, distributed as ``toy.tar.gz``."""

    name = "toy"
    title = "the toy set"
    homepage = "https://example.org/toy"
    how_to_get = "fill in the form"
    default_val_size = 2
    archive_md5: str | None = None
    archive_url: str | None = None

    def __init__(self, root, flavour: str = "plain", on_corrupt: str = "error", verify_checksums: bool = True):
        super().__init__(root, on_corrupt=on_corrupt, verify_checksums=verify_checksums)
        self.flavour = flavour

    def requirements(self):
        return [
            Requirement("train", "training photos", kind="dir", splits=("train",)),
            Requirement("test", "test photos", kind="dir", splits=("test",)),
        ]

    def archives(self):
        return [Archive("toy.tar.gz", provides=("train", "test"), md5=self.archive_md5, url=self.archive_url)]

    def splits(self):
        return {k: FolderSource(self.root / k, on_corrupt=self.on_corrupt) for k in ("train", "test")}


class ToyDataModule(DatasetDataModule):
    layout_class = ToyLayout


def _toy_tree(root: Path) -> Path:
    write_photos(root / "train", 8, seed=1)
    write_photos(root / "test", 3, seed=2)
    return root


def _tar(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        for sub in ("train", "test"):
            tf.add(src / sub, arcname=sub)
    return dest


# ----------------------------------------------------------------------------------- carving, subsets


def test_carve_split_is_deterministic_disjoint_and_stable_when_images_are_added(tmp_path):
    write_photos(tmp_path / "a", 12, seed=3)
    rest, val = carve_split(FolderSource(tmp_path / "a"), 4)
    names_val = {val.name(i) for i in range(len(val))}
    names_rest = {rest.name(i) for i in range(len(rest))}
    assert len(names_val) == 4 and len(names_rest) == 8 and not names_val & names_rest
    # independent reference: the 4 names with the smallest md5
    ref = sorted(names_val | names_rest, key=lambda n: hashlib.md5(n.encode()).hexdigest())[:4]
    assert names_val == set(ref)
    # adding images never moves an image from val to train unless a new one has a smaller hash
    write_photos(tmp_path / "a", 14, seed=3)  # img_012, img_013 added
    _, val2 = carve_split(FolderSource(tmp_path / "a"), 4)
    names_val2 = {val2.name(i) for i in range(len(val2))}
    assert len(names_val2 & names_val) >= 2
    with pytest.raises(ValueError, match="data.val_size=14 must be between 1 and 13"):
        carve_split(FolderSource(tmp_path / "a"), 14)
    with pytest.raises(ValueError, match="data.val_size=0"):
        carve_split(FolderSource(tmp_path / "a"), 0)


def test_subset_source_delegates_and_keeps_in_memory_flag():
    src = SampleSource("train")
    sub = SubsetSource(src, [3, 1])
    assert len(sub) == 2 and sub.name(0) == src.name(3) and sub.name(-1) == src.name(1)
    assert np.array_equal(sub.load(1), src.load(1)) and sub.in_memory
    with pytest.raises(IndexError):
        sub.load(2)


# ----------------------------------------------------------------------------------------- layouts


def test_not_ready_message_names_missing_items_layout_and_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotReadyError) as e:
        ToyDataModule(root=str(tmp_path / "nowhere"), mask=CenterMask())
    msg = str(e.value)
    assert "does not exist" in msg and "Expected layout" in msg and "https://example.org/toy" in msg
    (tmp_path / "half" / "train").mkdir(parents=True)
    with pytest.raises(DatasetNotReadyError) as e:
        ToyDataModule(root=str(tmp_path / "half"), mask=CenterMask(), flavour="spicy")
    msg = str(e.value)
    assert f"missing folder '{tmp_path / 'half' / 'test'}'" in msg and "training photos" not in msg.split("Expected")[0]
    assert "toy.tar.gz" in msg and "data.flavour=spicy" in msg  # the copy-paste prepare command keeps options
    with pytest.raises(ValueError, match="data.root is not set"):
        ToyLayout("???")


def test_datamodule_carves_val_and_rejects_unknown_options(tmp_path, caplog):
    root = _toy_tree(tmp_path / "toy")
    with caplog.at_level("INFO", logger="inpaint.data"):
        dm = ToyDataModule(root=str(root), mask=CenterMask(), val_size=3, image_size=16, batch_size=2)
    assert dm.split_sizes == {"train": 5, "val": 3, "test": 3}
    assert "publishes no validation split; carved 3" in caplog.text
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"data.colour is not an option of data=toy; its options are: .*flavour"):
        ToyDataModule(root=str(root), mask=CenterMask(), colour="red")


def test_prepare_extracts_a_verified_archive_and_reports_splits(tmp_path, monkeypatch):
    archive = _tar(_toy_tree(tmp_path / "src"), tmp_path / "toy.tar.gz")
    root = tmp_path / "root"
    root.mkdir()
    (root / "toy.tar.gz").write_bytes(archive.read_bytes())
    monkeypatch.setattr(ToyLayout, "archive_md5", "0" * 32)
    with pytest.raises(ChecksumError, match="toy.tar.gz.*data.verify_checksums=false"):
        ToyLayout(root).prepare(download=False)
    report = ToyLayout(root, verify_checksums=False).prepare(download=False, val_size=3)
    assert report.ready and "extracted toy.tar.gz" in str(report) and "train: 5 images" in str(report)
    # the carved validation split is written out, and is the one a run uses
    listed = (root / CACHE_DIRNAME / "toy-carved-val-3.txt").read_text().split()
    dm = ToyDataModule(root=str(root), mask=CenterMask(), val_size=3)
    assert listed == [dm.sources["val"].name(i) for i in range(3)]
    monkeypatch.setattr(ToyLayout, "archive_md5", md5sum(archive))
    (root / "train").rename(root / "old")
    report = ToyLayout(root).prepare(download=False)
    assert report.ready and "md5 ok" in str(report)


def test_prepare_downloads_from_the_owner_url_only_when_allowed(tmp_path, monkeypatch):
    archive = _tar(_toy_tree(tmp_path / "src"), tmp_path / "toy.tar.gz")
    monkeypatch.setattr(ToyLayout, "archive_url", archive.as_uri())
    monkeypatch.setattr(ToyLayout, "archive_md5", md5sum(archive))
    root = tmp_path / "root"
    root.mkdir()
    report = ToyLayout(root).prepare(download=False)
    assert not report.ready and "python -m inpaint.prepare data=toy" in str(report)
    report = ToyLayout(root).prepare(download=True)
    assert report.ready and f"downloaded {archive.as_uri()}" in str(report)
    assert (root / "toy.tar.gz").is_file() and not (root / "toy.tar.gz.part").exists()


# ------------------------------------------------------------------------------- downloads, archives


def test_check_md5_and_download_reject_wrong_files(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"hello")
    check_md5(f, hashlib.md5(b"hello").hexdigest())
    with pytest.raises(ChecksumError, match=r"f.bin.*published md5 is 0{32}.*data.verify_checksums=false"):
        check_md5(f, "0" * 32)
    with pytest.raises(ChecksumError):
        download_url(f.as_uri(), tmp_path / "g.bin", md5="0" * 32)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()
    with pytest.raises(OSError, match="could not download"):
        download_url((tmp_path / "absent").as_uri(), tmp_path / "h.bin")


def test_extract_unpacks_tar_and_zip_and_refuses_escaping_members(tmp_path):
    z = tmp_path / "a.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("d/x.txt", "x")
    extract(z, tmp_path / "out")
    assert (tmp_path / "out" / "d" / "x.txt").read_text() == "x"
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"e"))
    with pytest.raises(ValueError, match="outside"):
        extract(evil, tmp_path / "out2")
    assert not (tmp_path / "escaped.txt").exists()
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a tar nor a zip"):
        extract(tmp_path / "plain.txt", tmp_path / "out3")


# ---------------------------------------------------------------------------------------------- cache


def test_cache_lives_beside_the_data_and_rebuilds_when_the_data_changes(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "x.bin").write_bytes(b"1")
    monkeypatch.chdir(tmp_path / "data")
    calls = []

    def build():
        calls.append(1)
        return {"n": len(calls)}

    assert cached_json(data, "idx", fingerprint(data / "x.bin"), build) == {"n": 1}
    assert cached_json(data, "idx", fingerprint(data / "x.bin"), build) == {"n": 1} and len(calls) == 1
    stored = json.loads((data / CACHE_DIRNAME / "idx.json").read_text())
    assert stored["value"] == {"n": 1}
    (data / "x.bin").write_bytes(b"22")
    assert cached_json(data, "idx", fingerprint(data / "x.bin"), build) == {"n": 2}
    (data / CACHE_DIRNAME / "idx.json").write_text("{broken")
    assert cached_json(data, "idx", fingerprint(data / "x.bin"), build) == {"n": 3}


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permissions")
def test_cache_falls_back_to_the_user_cache_for_read_only_data(tmp_path, monkeypatch):
    data = tmp_path / "ro"
    data.mkdir()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    data.chmod(0o555)
    try:
        folder = cache_dir(data)
    finally:
        data.chmod(0o755)
    assert folder.is_relative_to(tmp_path / "xdg" / "inpaint") and not (data / CACHE_DIRNAME).exists()

"""CIFAR-10 (python pickles): format round trip, splits, checks and errors, download, a training run."""

from __future__ import annotations

import math
import pickle
import pickletools
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import photo_like, run_cli, tiny
from fixtures_datasets import write_cifar10, write_cifar10_tarball

from inpaint.data.datasets import cifar10
from inpaint.data.datasets.base import DatasetNotReadyError
from inpaint.data.datasets.cifar10 import (
    CIFAR10_DIRNAME,
    LABEL_NAMES,
    CIFAR10DataModule,
    CIFAR10Layout,
    CIFAR10Source,
)
from inpaint.data.download import md5sum
from inpaint.data.io import ImageReadError
from inpaint.data.masks import CenterMask
from inpaint.run import build_datamodule, run

N_TRAIN, N_TEST = 23, 7


@pytest.fixture(params=["bytes", "str"])
def dataset(request, tmp_path) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    train, test = photo_like(N_TRAIN, seed=1), photo_like(N_TEST, seed=2)
    root = tmp_path / "cifar10"
    write_cifar10(root, train, test, key_type=request.param)
    return root, train, test


def _dm(root: Path, **kw) -> CIFAR10DataModule:
    return CIFAR10DataModule(root=str(root), mask=CenterMask(), verify_checksums=False, num_workers=0, **kw)


# --------------------------------------------------------------------------------------- format


def test_pixel_exact_round_trip_with_both_key_types(dataset):
    root, train, test = dataset
    folder = root / CIFAR10_DIRNAME
    src = CIFAR10Source([folder / f"data_batch_{i}" for i in range(1, 6)], meta=folder / "batches.meta")
    assert len(src) == N_TRAIN and src.in_memory
    for i, img in enumerate(train):
        out = src.load(i)
        assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
        np.testing.assert_array_equal(out, img)
    out[0, 0] = 0  # load hands out copies
    np.testing.assert_array_equal(src.load(N_TRAIN - 1), train[-1])
    assert src.labels.tolist() == [i % 10 for i in range(N_TRAIN)]
    assert src.label_names == list(LABEL_NAMES)
    assert src.filenames[3] == "cat_s_000003.png"
    # names: batch file / index in batch, unique; 23 images over 5 batches -> 5,5,5,4,4
    assert [src.name(i) for i in (0, 4, 5, 22)] == [
        "data_batch_1/0",
        "data_batch_1/4",
        "data_batch_2/0",
        "data_batch_5/3",
    ]
    assert len({src.name(i) for i in range(len(src))}) == N_TRAIN
    test_src = CIFAR10Source([folder / "test_batch"])
    assert [test_src.name(i) for i in range(2)] == ["test_batch/0", "test_batch/1"]
    np.testing.assert_array_equal(test_src.load(6), test[6])
    assert test_src.label_names is None


def test_batch_layout_is_planar_rgb(tmp_path):
    """The on-disk row is 1024 R, 1024 G, 1024 B, each row-major: check against a hand-made batch."""
    img = np.zeros((32, 32, 3), np.uint8)
    img[0, 1] = (10, 20, 30)  # row 0, column 1
    img[2, 0] = (40, 50, 60)  # row 2, column 0
    folder = write_cifar10(tmp_path, [img], [img], key_type="str")
    with open(folder / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="bytes")["data"][0]
    assert (row[1], row[1024 + 1], row[2048 + 1]) == (10, 20, 30)
    assert (row[64], row[1024 + 64], row[2048 + 64]) == (40, 50, 60)
    with open(folder / "data_batch_1", "rb") as f:
        assert set(pickle.load(f, encoding="bytes")) == {"batch_label", "labels", "data", "filenames"}


def _python2_pickle(obj) -> bytes:
    """Protocol-2 opcodes as Python 2's cPickle writes them for a CIFAR batch: ``str`` as 8-bit strings
    (BINSTRING), the array through ``numpy.core.multiarray._reconstruct`` with its bytes in the state."""

    def enc(v) -> bytes:
        if isinstance(v, str):
            v = v.encode()
        if isinstance(v, bytes):
            return b"U" + bytes([len(v)]) + v if len(v) < 256 else b"T" + struct.pack("<i", len(v)) + v
        if isinstance(v, int):
            return b"J" + struct.pack("<i", v)
        if isinstance(v, list):
            return b"]" + (b"(" + b"".join(map(enc, v)) + b"e" if v else b"")
        if isinstance(v, dict):
            return b"}(" + b"".join(enc(k) + enc(x) for k, x in v.items()) + b"u"
        assert isinstance(v, np.ndarray) and v.dtype == np.uint8 and v.ndim == 2
        new = (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + enc(0)
            + b"\x85"
            + enc("b")
            + b"\x87R"
        )
        dtype = b"cnumpy\ndtype\n" + enc("u1") + enc(0) + enc(1) + b"\x87R(" + enc(3) + enc("|") + b"NNN"
        dtype += enc(-1) + enc(-1) + enc(0) + b"tb"
        state = (
            b"(" + enc(1) + enc(v.shape[0]) + enc(v.shape[1]) + b"\x86" + dtype + b"\x89" + enc(v.tobytes())
        )
        return new + state + b"tb"

    return b"\x80\x02" + enc(obj) + b"."


def test_reads_a_python2_pickle_like_the_published_files(tmp_path):
    images = photo_like(3, seed=7)
    data = np.stack(images).transpose(0, 3, 1, 2).reshape(3, 3072)
    batch = {
        "batch_label": "training batch 1 of 5",
        "labels": [6, 9, 9],
        "data": data,
        "filenames": ["a.png"] * 3,
    }
    raw = _python2_pickle(batch)
    assert "numpy.core.multiarray _reconstruct" in "".join(str(op[1]) for op in pickletools.genops(raw))
    path = tmp_path / "data_batch_1"
    path.write_bytes(raw)
    src = CIFAR10Source([path])
    for i, img in enumerate(images):
        np.testing.assert_array_equal(src.load(i), img)
    assert src.labels.tolist() == [6, 9, 9] and src.filenames == ["a.png"] * 3


def test_write_example_rejects_non_32x32(tmp_path):
    with pytest.raises(ValueError, match=r"train_images\[0\] must be a 32x32x3"):
        write_cifar10(tmp_path, [np.zeros((32, 31, 3), np.uint8)], [])


# --------------------------------------------------------------------------------------- splits


def test_splits_with_carved_val_are_disjoint_and_stable(dataset):
    root, _, _ = dataset
    dm = _dm(root, val_size=4)
    assert dm.split_sizes == {"train": N_TRAIN - 4, "val": 4, "test": N_TEST}
    train, val = dm.sources["train"], dm.sources["val"]
    train_names = {train.name(i) for i in range(len(train))}
    val_names = [val.name(i) for i in range(len(val))]
    assert not train_names & set(val_names)
    assert len(train_names | set(val_names)) == N_TRAIN
    again = _dm(root, val_size=4).sources["val"]
    assert [again.name(i) for i in range(len(again))] == val_names
    assert dm.sources["test"].name(0) == "test_batch/0"


def test_root_may_be_the_batches_folder_itself(dataset):
    root, train, _ = dataset
    layout = CIFAR10Layout(root / CIFAR10_DIRNAME, verify_checksums=False)
    layout.ensure_ready()
    splits = layout.splits()
    assert set(splits) == {"train", "test"}
    np.testing.assert_array_equal(splits["train"].load(2), train[2])
    assert layout.archives()[0].extract_to == ".."
    assert CIFAR10Layout(root).archives()[0].extract_to == "."


def test_default_val_size_is_5000():
    assert CIFAR10Layout.default_val_size == 5000


# ------------------------------------------------------------------------------ checks and errors


def test_checksum_mismatch_names_file_and_override(dataset):
    root, _, _ = dataset
    with pytest.raises(DatasetNotReadyError) as e:
        CIFAR10Layout(root).ensure_ready()
    msg = str(e.value)
    assert f"'{root / CIFAR10_DIRNAME / 'data_batch_1'}'" in msg
    assert "c99cafc152244af753f735de768cd75f" in msg and "data.verify_checksums=false" in msg
    assert "test_batch" in msg and "batches.meta" in msg
    CIFAR10Layout(root, verify_checksums=False).ensure_ready()  # the override works


def test_missing_batch_is_named(dataset):
    root, _, _ = dataset
    (root / CIFAR10_DIRNAME / "data_batch_3").unlink()
    layout = CIFAR10Layout(root, verify_checksums=False)
    assert layout.problems() == [
        f"missing file '{root / CIFAR10_DIRNAME / 'data_batch_3'}' (training batch 3 of 5)"
    ]
    with pytest.raises(DatasetNotReadyError, match="data_batch_3") as e:
        _dm(root, val_size=4)
    msg = str(e.value)
    assert "Expected layout:" in msg and "python -m inpaint.prepare data=cifar10" in msg


def test_missing_root_lists_expected_layout(tmp_path):
    layout = CIFAR10Layout(tmp_path / "nowhere")
    with pytest.raises(DatasetNotReadyError) as e:
        layout.ensure_ready()
    msg = str(e.value)
    assert "does not exist" in msg and f"{tmp_path / 'nowhere'}/cifar-10-batches-py/data_batch_1" in msg


def test_truncated_pickle_raises_naming_the_file(dataset):
    root, _, _ = dataset
    path = root / CIFAR10_DIRNAME / "data_batch_2"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="data_batch_2") as e:
        CIFAR10Layout(root, verify_checksums=False).splits()
    assert "damaged or truncated" in str(e.value) and e.value.path == str(path)
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="data_batch_2"):
        CIFAR10Source([path])


def _dump(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ({b"labels": [1]}, "no 'data' entry"),
        (
            {b"data": np.zeros((2, 3071), np.uint8)},
            r"shape \(N, 3072\), found uint8 array of shape \(2, 3071\)",
        ),
        ({b"data": np.zeros((2, 3072), np.float32)}, "found float32"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "2 images but 1 labels"),
        ([1, 2, 3], "expected a pickled dict, found list"),
    ],
)
def test_malformed_batch_is_named(tmp_path, content, why):
    path = _dump(tmp_path / "data_batch_1", content)
    with pytest.raises(ImageReadError, match=why) as e:
        CIFAR10Source([path])
    assert str(path) in str(e.value)


class _Evil:
    def __reduce__(self):
        import os

        return (os.getpid, ())


def test_pickle_with_foreign_globals_is_refused(tmp_path):
    path = _dump(tmp_path / "data_batch_1", {b"data": _Evil()})
    with pytest.raises(ImageReadError, match="refusing to load global"):
        CIFAR10Source([path])


# --------------------------------------------------------------------------------------- download


def test_prepare_downloads_extracts_and_reports_ready(tmp_path, monkeypatch):
    folder = write_cifar10(tmp_path / "src", photo_like(12, seed=3), photo_like(3, seed=4))
    tarball = write_cifar10_tarball(folder, tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setattr(
        cifar10,
        "CIFAR10_ARCHIVE",
        replace(cifar10.CIFAR10_ARCHIVE, url=tarball.as_uri(), md5=md5sum(tarball)),
    )
    root = tmp_path / "data"
    layout = CIFAR10Layout(root, verify_checksums=False)
    assert "python -m inpaint.prepare data=cifar10" in layout.not_ready_message(layout.problems())
    report = layout.prepare(download=True, val_size=2)
    assert report.ready, str(report)
    text = str(report)
    assert f"downloaded {tarball.as_uri()}" in text and "extracted cifar-10-python.tar.gz" in text
    assert "train: 10 images" in text and "test: 3 images" in text and text.endswith("ready")
    assert (root / "cifar-10-python.tar.gz").is_file() and (root / CIFAR10_DIRNAME / "test_batch").is_file()
    # a second prepare finds everything in place and downloads nothing
    tarball.unlink()
    assert "downloaded" not in str(
        CIFAR10Layout(root, verify_checksums=False).prepare(download=True, val_size=2)
    )


def test_prepare_rejects_a_download_with_the_wrong_md5(tmp_path, monkeypatch):
    folder = write_cifar10(tmp_path / "src", photo_like(5), photo_like(1))
    tarball = write_cifar10_tarball(folder, tmp_path / "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar10, "CIFAR10_ARCHIVE", replace(cifar10.CIFAR10_ARCHIVE, url=tarball.as_uri()))
    with pytest.raises(ValueError, match="checksum mismatch"):
        CIFAR10Layout(tmp_path / "data").prepare(download=True)
    assert not (tmp_path / "data" / "cifar-10-python.tar.gz").exists()


# ------------------------------------------------------------------------------------- training


def test_training_run_through_the_real_config(make_cfg, tmp_path):
    root = tmp_path / "cifar10"
    write_cifar10(root, photo_like(20, seed=5), photo_like(6, seed=6))
    over = [
        "data=cifar10",
        f"data.root={root}",
        "data.verify_checksums=false",
        "data.val_size=4",
        *tiny(),
        "data.resize_short=null",
        "data.image_size=32",
        "trainer.max_steps=2",
        "logger=none",
    ]
    cfg = make_cfg(*over)
    assert build_datamodule(cfg).split_sizes == {"train": 16, "val": 4, "test": 6}
    results = run(cfg)
    assert results["test/count"] == 6 * 2  # 6 test images x eval_crops_per_image=2 (tiny)
    assert math.isfinite(results["test/psnr"]) and math.isfinite(results["val/psnr"])


@pytest.mark.slow
def test_cli_with_missing_root_exits_1_with_the_not_ready_message(tmp_path):
    proc = run_cli(
        "inpaint.run", "data=cifar10", f"data.root={tmp_path / 'missing'}", "logger=none", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    assert "is not ready" in proc.stderr and "cifar-10-batches-py/data_batch_1" in proc.stderr
    assert "Traceback" not in proc.stderr

"""Tests for inpaint.data.io and inpaint.data.sources."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import one_skip_report
from PIL import Image

from inpaint.data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    list_images,
    load_image,
    resize_to_cover,
    to_rgb_uint8,
)
from inpaint.data.sources import (
    SAMPLE_SPLITS,
    FolderSource,
    ImageSource,
    SampleSource,
)


def _rgb(h: int = 8, w: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_rgb() if arr is None else arr).save(path, **kw)
    return path


def _check_rgb(arr: np.ndarray, h: int, w: int) -> None:
    assert arr.shape == (h, w, 3)
    assert arr.dtype == np.uint8
    assert arr.flags.c_contiguous and arr.flags.writeable


# --------------------------------------------------------------------------- conversion


def test_grayscale_replicated(tmp_path: Path) -> None:
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = load_image(_save(tmp_path / "g.png", gray))
    _check_rgb(out, 6, 8)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], gray)
    np.testing.assert_array_equal(to_rgb_uint8(gray[..., None]), out)


def test_rgba_alpha_dropped(tmp_path: Path) -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: colour must be kept as stored, not composited
    out = load_image(_save(tmp_path / "a.png", rgba))
    _check_rgb(out, 5, 7)
    np.testing.assert_array_equal(out, rgba[..., :3])
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgba[..., :3])
    la = Image.new("LA", (3, 2), (77, 10))
    np.testing.assert_array_equal(to_rgb_uint8(la), np.full((2, 3, 3), 77, np.uint8))


def test_palette_images(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    p = Image.fromarray(idx, mode="P")
    p.putpalette(palette)
    expected = np.array(palette, np.uint8).reshape(3, 3)[idx]
    p.save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, expected)
    p.save(tmp_path / "pt.png", transparency=0)  # palette with a transparent index
    with Image.open(tmp_path / "pt.png") as reread:
        assert reread.mode == "P" and reread.info.get("transparency") == 0
    np.testing.assert_array_equal(load_image(tmp_path / "pt.png"), expected)
    np.testing.assert_array_equal(to_rgb_uint8(p.convert("PA")), expected)


def test_16bit_png_scaled(tmp_path: Path) -> None:
    k = np.arange(0, 256, dtype=np.uint16)
    arr = np.concatenate([k * 257, [65535, 128, 129, 257 * 7 + 128]]).astype(np.uint16).reshape(1, -1)
    img = Image.fromarray(arr)
    assert img.mode == "I;16"
    img.save(tmp_path / "d.png")
    with Image.open(tmp_path / "d.png") as reread:
        assert reread.mode in ("I;16", "I")
    out = load_image(tmp_path / "d.png")
    _check_rgb(out, 1, arr.shape[1])
    np.testing.assert_array_equal(out[0, :256, 0], np.arange(256))  # 257*k -> k
    assert out[0, 256:, 1].tolist() == [255, 0, 1, 7]  # 65535 -> 255; rounding
    # same result for big-endian, 'I' mode and a raw uint16 array
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(arr.astype(">u2"))), out)
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(arr.astype(np.int32), mode="I")), out)
    np.testing.assert_array_equal(to_rgb_uint8(arr), out)


def test_one_bit_and_bool(tmp_path: Path) -> None:
    bits = np.array([[True, False, True], [False, False, True]])
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    out = load_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[..., 0], bits * 255)
    np.testing.assert_array_equal(to_rgb_uint8(bits), out)


def test_float_images() -> None:
    f = np.array([[0.0, 0.5, 1.0], [0.25, 1 / 255, 0.999]], dtype=np.float32)
    expected = np.rint(f * 255).astype(np.uint8)
    out = to_rgb_uint8(Image.fromarray(f))  # mode 'F'
    _check_rgb(out, 2, 3)
    np.testing.assert_array_equal(out[..., 2], expected)
    np.testing.assert_array_equal(to_rgb_uint8(np.stack([f] * 3, -1).astype(np.float64)), out)
    with pytest.raises(ImageReadError, match=r"\[0, 1\]"):
        to_rgb_uint8(f * 255, name="scaled.tif")
    with pytest.raises(ImageReadError, match="NaN"):
        to_rgb_uint8(np.full((2, 2), np.nan, np.float32))


def test_other_colour_modes() -> None:
    rgb = Image.new("RGB", (4, 3), (10, 200, 30))
    for mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        out = to_rgb_uint8(rgb.convert(mode))
        _check_rgb(out, 3, 4)
        assert np.abs(out.astype(int) - [10, 200, 30]).max() <= 12, mode


def test_unsupported_arrays_named() -> None:
    with pytest.raises(ImageReadError, match=r"weird\.npy.*\(2, 2, 5\)"):
        to_rgb_uint8(np.zeros((2, 2, 5), np.uint8), name="weird.npy")
    with pytest.raises(ImageReadError, match="int64"):
        to_rgb_uint8(np.zeros((2, 2), np.int64), name="x")
    with pytest.raises(ImageReadError, match="shape"):
        to_rgb_uint8(np.zeros((2, 2, 3, 1), np.uint8))


def test_exif_orientation(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), np.uint8)  # H=20, W=40; left half red, right half blue
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    img.save(tmp_path / "o.jpg", exif=exif, quality=95)
    out = load_image(tmp_path / "o.jpg")
    _check_rgb(out, 40, 20)
    top, bottom = out[:15].reshape(-1, 3).mean(0), out[-15:].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 50  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 50


def test_corrupt_files_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError, match=r"junk\.png.*cannot identify image file") as info:
        load_image(junk)
    assert info.value.path == str(junk)

    good = _save(tmp_path / "full.png", _rgb(64, 64, seed=3), compress_level=0)
    data = good.read_bytes()
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"trunc\.png.*truncated"):
        load_image(trunc)

    with pytest.raises(ImageReadError, match=r"nothere\.png.*does not exist"):
        load_image(tmp_path / "nothere.png")


# --------------------------------------------------------------------------- listing


def test_list_images_recursive_sorted_case_insensitive(tmp_path: Path) -> None:
    for rel in ("b.png", "a.JPG", "sub/c.Jpeg", "sub/deeper/d.webp", "z/e.TIFF", "notes.txt", ".hidden.png"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    rels = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rels == ["a.JPG", "b.png", "sub/c.Jpeg", "sub/deeper/d.webp", "z/e.TIFF"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["a.JPG", "b.png"]


def test_list_images_file_list(tmp_path: Path) -> None:
    for rel in ("x/1.png", "x/2.png", "y/3.jpg"):
        _save(tmp_path / rel)
    lst = tmp_path / "train.txt"
    lst.write_text("# comment\n\n/x/2.png 17\ny/3.jpg   4 extra\n   x/1.png\n# x/9.png\n")
    paths = list_images(tmp_path, file_list=lst)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["x/2.png", "y/3.jpg", "x/1.png"]
    assert list_images(tmp_path, file_list="train.txt") == paths  # relative to root

    bad = tmp_path / "bad.txt"
    bad.write_text("x/1.png\n# c\nmissing_a.png 0\nx/2.png\nmissing_b.jpg\n")
    with pytest.raises(FileNotFoundError) as info:
        list_images(tmp_path, file_list=bad)
    msg = str(info.value)
    assert "bad.txt" in msg and "2 of 4 entries" in msg
    assert "line 3" in msg and "missing_a.png" in msg and "line 5" in msg and "missing_b.jpg" in msg

    with pytest.raises(FileNotFoundError, match=r"file list .*nolist\.txt"):
        list_images(tmp_path, file_list=tmp_path / "nolist.txt")


def test_list_images_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=r"data root '.*nope' does not exist.*data\.root=.*\.png"):
        list_images(missing)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("hi")
    with pytest.raises(ValueError) as info:
        list_images(empty)
    msg = str(info.value)
    assert all(ext in msg for ext in IMAGE_EXTENSIONS)
    assert "readme.txt" in msg

    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a directory"):
        list_images(a_file)


def test_resize_to_cover() -> None:
    img = _rgb(10, 40)
    assert resize_to_cover(img, 8, 8) is img
    out = resize_to_cover(img, 32, 32)
    assert out.shape == (32, 128, 3) and out.dtype == np.uint8
    out = resize_to_cover(_rgb(30, 20), 25, 50)
    assert out.shape[0] >= 25 and out.shape[1] == 50 and out.shape[0] == 75
    out = resize_to_cover(_rgb(7, 5), 9, 9)
    assert min(out.shape[:2]) == 9 and out.shape[0] >= 12


# --------------------------------------------------------------------------- sources


def test_folder_source(tmp_path: Path) -> None:
    imgs = [_rgb(6, 9, seed=i) for i in range(3)]
    for i, a in enumerate(imgs):
        _save(tmp_path / f"{i}.png", a)
    src = FolderSource(tmp_path)
    assert isinstance(src, ImageSource) and len(src) == 3
    assert [src.name(i) for i in range(3)] == ["0.png", "1.png", "2.png"]
    np.testing.assert_array_equal(src.load(2), imgs[2])
    np.testing.assert_array_equal(src.load(-1), imgs[2])
    with pytest.raises(IndexError):
        src.load(3)
    with pytest.raises(ValueError, match="on_corrupt"):
        FolderSource(tmp_path, on_corrupt="ignore")


def test_folder_source_corrupt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    imgs = [_rgb(6, 9, seed=i) for i in range(3)]
    for i, a in enumerate(imgs):
        _save(tmp_path / f"{i}.png", a)
    (tmp_path / "1.png").write_bytes(b"not a png at all")

    with pytest.raises(ImageReadError, match=r"1\.png"):
        FolderSource(tmp_path).load(1)

    src = FolderSource(tmp_path, on_corrupt="skip")
    with one_skip_report(caplog, r"1\.png"):
        out = src.load(1)
    np.testing.assert_array_equal(out, imgs[2])  # next good image
    np.testing.assert_array_equal(src.load(0), imgs[0])

    for i in (0, 2):
        (tmp_path / f"{i}.png").write_bytes(b"junk")
    src = FolderSource(tmp_path, on_corrupt="skip")
    with caplog.at_level(logging.WARNING), pytest.raises(ImageReadError, match="none of the 3 images"):
        src.load(0)


def test_sample_source_splits() -> None:
    assert set(SAMPLE_SPLITS) == {"train", "val", "test"}
    names = [set(v) for v in SAMPLE_SPLITS.values()]
    assert all(names)
    assert sum(len(s) for s in names) == len(set().union(*names))  # disjoint
    everything = set().union(*names)
    assert not {"motorcycle_left.png", "motorcycle_right.png"} <= everything
    for split in SAMPLE_SPLITS:
        src = SampleSource(split)
        assert len(src) == len(SAMPLE_SPLITS[split]) > 0
        for i in range(len(src)):
            img = src.load(i)
            assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, src.name(i)
            assert min(img.shape[:2]) >= 256, (src.name(i), img.shape)
    img = SampleSource("val").load(0)
    img[:] = 0  # a copy: must not corrupt the cache
    assert SampleSource("val").load(0).any()
    with pytest.raises(ValueError, match="split"):
        SampleSource("training")

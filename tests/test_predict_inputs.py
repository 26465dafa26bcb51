"""predict on unusual inputs: all-hole masks, RGBA images (mask=alpha), 16-bit files, one mask reader."""

from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, write_photos
from PIL import Image

from inpaint.data.io import read_image
from inpaint.data.mask_files import read_mask_file
from inpaint.models.biharmonic import BiharmonicModule
from inpaint.predict import mask_level, predict, read_mask

H, W = 24, 20


def _cfg(make_cfg, tmp_path, inp: Path, mask: str, *extra: str):
    return make_cfg("model=biharmonic", f"input={inp}", f"mask={mask}", f"output={tmp_path / 'out'}", *extra,
                    config="predict")


def _png16(path: Path, arr: np.ndarray) -> Path:
    """Write a 16-bit (gray, RGB or RGBA) PNG by hand: PIL writes 16-bit gray only."""
    arr = arr[..., None] if arr.ndim == 2 else arr
    h, w, c = arr.shape
    rows = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def _hole_mask(path: Path, value: int = 255) -> Path:
    m = np.zeros((H, W), np.uint8)
    m[6:14, 5:12] = value
    Image.fromarray(m).save(path)
    return path


# ---------------------------------------------------------------------------------- all-hole masks


def test_biharmonic_refuses_a_mask_without_known_pixels():
    model = BiharmonicModule()
    image = torch.rand(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[1] = 1.0
    with pytest.raises(ValueError, match=r"mask of image 1 of the batch .* is hole everywhere"):
        model.inpaint(image, mask)
    mask[1, 0, 0, 0] = 0.0  # one known pixel is enough
    assert torch.isfinite(model.inpaint(image, mask)).all()


def test_predict_warns_about_an_all_hole_mask_and_biharmonic_errors(make_cfg, tmp_path, caplog):
    img = write_photos(tmp_path / "in", 1, size=(H, W))[0]
    full = tmp_path / "full.png"
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(full)
    with caplog.at_level(logging.WARNING, logger="inpaint.predict"):
        with pytest.raises(ValueError, match=rf"image {img} with mask {full}: .*hole everywhere"):
            predict(_cfg(make_cfg, tmp_path, img, str(full)))
    warned = [r.getMessage() for r in caplog.records if "no known pixel" in r.getMessage()]
    assert warned == [f"mask {full} leaves no known pixel of image {img} (all of it is hole): the model has "
                      "nothing to fill from"]


@pytest.mark.slow
def test_predict_cli_all_hole_mask_is_one_message(tmp_path):
    img = write_photos(tmp_path / "in", 1, size=(H, W))[0]
    full = tmp_path / "full.png"
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(full)
    proc = run_cli("inpaint.predict", "model=biharmonic", f"input={img}", f"mask={full}",
                   f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert "hole everywhere" in proc.stderr and "zero-size array" not in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------- alpha channels


def _rgba(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rgb = np.asarray(Image.open(write_photos(tmp_path / "src", 1, size=(H, W))[0]).convert("RGB"))
    alpha = np.full((H, W), 255, np.uint8)
    alpha[3:10, 4:15] = 0  # fully transparent: a hole
    alpha[12:16, 4:15] = 100  # below half opacity: a hole at the default mask_threshold=0.5
    alpha[17:20, 4:15] = 200  # mostly opaque: known
    (tmp_path / "rgba").mkdir()
    path = tmp_path / "rgba" / "cutout.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    return path, alpha


def test_mask_alpha_takes_the_holes_from_transparency(make_cfg, tmp_path, caplog):
    path, alpha = _rgba(tmp_path)
    with caplog.at_level(logging.WARNING, logger="inpaint.predict"):
        written = predict(_cfg(make_cfg, tmp_path, path.parent, "alpha", "save_masked=true"))
    assert not [r for r in caplog.records if "alpha channel" in r.getMessage()]  # used, not ignored
    src = read_image(path).rgb
    out = np.asarray(Image.open(written[0]))
    known = alpha >= 128
    assert np.array_equal(out[known], src[known])
    assert not np.array_equal(out[3:10, 4:15], src[3:10, 4:15])
    masked = np.asarray(Image.open(written[0].with_name("cutout_masked.png")))
    assert (masked[~known] == 0).all() and np.array_equal(masked[known], src[known])


def test_rgba_with_a_mask_file_warns_that_alpha_is_ignored(make_cfg, tmp_path, caplog):
    path, _ = _rgba(tmp_path)
    with caplog.at_level(logging.WARNING, logger="inpaint.predict"):
        predict(_cfg(make_cfg, tmp_path, path, str(_hole_mask(tmp_path / "m.png"))))
    msgs = [r.getMessage() for r in caplog.records if "alpha channel" in r.getMessage()]
    assert len(msgs) == 1 and str(path) in msgs[0] and "is ignored" in msgs[0] and "mask=alpha" in msgs[0]


def test_mask_alpha_on_an_image_without_alpha_is_an_error(make_cfg, tmp_path):
    img = write_photos(tmp_path / "in", 1, size=(H, W))[0]
    with pytest.raises(ValueError, match=rf"mask=alpha: image {img} has no alpha channel"):
        predict(_cfg(make_cfg, tmp_path, img, "alpha"))


# ---------------------------------------------------------------------------------------- 16-bit


@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_input_is_warned_and_written_as_8_bit(make_cfg, tmp_path, caplog, channels):
    rng = np.random.default_rng(channels)
    shape = (H, W) if channels == 1 else (H, W, 3)
    deep = rng.integers(0, 65536, shape).astype(np.uint16)
    path = _png16(tmp_path / "deep.png", deep)
    info = read_image(path)
    assert info.bit_depth == 16 and info.alpha is None
    expected = (deep.astype(np.float64) / 257).reshape(H, W, -1)[..., 0]
    assert np.abs(info.rgb[..., 0] - expected).max() <= 1.0  # PIL truncates 16-bit RGB, gray is rounded
    with caplog.at_level(logging.WARNING, logger="inpaint.predict"):
        written = predict(_cfg(make_cfg, tmp_path, path, str(_hole_mask(tmp_path / "m.png"))))
    msgs = [r.getMessage() for r in caplog.records if "16-bit" in r.getMessage()]
    assert len(msgs) == 1 and str(path) in msgs[0] and "8-bit" in msgs[0]
    out = Image.open(written[0])
    assert out.mode == "RGB"


def test_16_bit_tiff_and_8_bit_files_report_their_depth(tmp_path):
    gray = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 100
    Image.fromarray(gray).save(tmp_path / "g.tif")
    assert read_image(tmp_path / "g.tif").bit_depth == 16
    plain = write_photos(tmp_path / "p", 1, size=(H, W))[0]
    assert read_image(plain).bit_depth == 8 and read_image(plain).alpha is None


# ------------------------------------------------------------------------------ one mask reader


def test_predict_reads_masks_with_the_data_reader(tmp_path):
    m = np.zeros((H, W), np.uint8)
    m[:, :5], m[:, 5:10], m[:, 10:15], m[:, 15:] = 127, 128, 200, 255
    path = tmp_path / "m.png"
    Image.fromarray(m).save(path)
    assert mask_level(0.5) == 128 and mask_level(1.0) == 255 and mask_level(0.01) == 3
    for hole in ("white", "black"):
        for threshold in (0.5, 0.6, 1.0):
            got = read_mask(path, hole, threshold)
            assert got.dtype == np.float32
            assert np.array_equal(got, read_mask_file(path, hole, mask_level(threshold)).astype(np.float32))
    assert read_mask(path, "white", 0.5)[0].tolist() == [0.0] * 5 + [1.0] * 15  # 128 is a hole, 127 is not
    rgba = tmp_path / "m_rgba.png"  # a mask saved as RGBA reads the same
    Image.fromarray(np.dstack([m, m, m, np.full_like(m, 255)])).save(rgba)
    assert np.array_equal(read_mask(rgba), read_mask(path))
    deep = _png16(tmp_path / "m16.png", m.astype(np.uint16) * 257)
    assert np.array_equal(read_mask(deep), read_mask(path))


@pytest.mark.parametrize("bad", [0, 1.5, 128])
def test_mask_threshold_outside_its_scale_names_the_fix(tmp_path, bad):
    with pytest.raises(ValueError, match=rf"mask_threshold={bad}: .*fraction of full white.*N/255"):
        read_mask(_hole_mask(tmp_path / "m.png"), "white", bad)


def test_mask_hole_must_be_white_or_black(tmp_path):
    with pytest.raises(ValueError, match=r"mask_hole='grey'"):
        read_mask(_hole_mask(tmp_path / "m.png"), "grey")

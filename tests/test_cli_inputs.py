"""The bad inputs of the no-surprises issue sent through the real command lines: exit status, one line, nothing
lost (each starts its own process, so these are in the slow lane)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, run_cli, tiny, write_photos
from PIL import Image

pytestmark = pytest.mark.slow


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-2000:]
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


def test_images_too_small_for_the_crop_are_refused_by_name(tmp_path: Path) -> None:
    write_photos(tmp_path / "tiny", 6, size=(8, 8))
    proc = run_cli("inpaint.run", "data=folder", f"data.root={tmp_path / 'tiny'}", *TINY, "data.image_size=32",
                   "data.resize_short=null", "logger=none", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert ".png is 8x8" in line and "4.0x" in line and "data.upscale=2" in line


def test_predict_says_what_a_soft_or_empty_mask_does(tmp_path: Path) -> None:
    photo = write_photos(tmp_path / "in", 1, size=(48, 40))[0]
    grey = np.zeros((24, 20), np.uint8)  # half the image's size: resize_mask=true scales it
    grey[4:10, 4:10], grey[12:16, 12:16] = 100, 255
    Image.fromarray(grey).save(tmp_path / "grey.png")
    proc = run_cli("inpaint.predict", "model=biharmonic", f"input={photo}", f"mask={tmp_path / 'grey.png'}",
                   "resize_mask=true", "dilate=2", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "36 pixel(s) of intermediate gray" in text and "non-writable" not in text
    hole = float(text.split("(hole ")[1].split(" %")[0])
    assert hole == pytest.approx(100 * 12 * 12 / (48 * 40), abs=0.1)  # the 8x8 white hole grown by 2 on each side
    Image.fromarray(np.zeros((48, 40), np.uint8)).save(tmp_path / "none.png")
    empty = run_cli("inpaint.predict", "model=biharmonic", f"input={photo}", f"mask={tmp_path / 'none.png'}",
                    f"output={tmp_path / 'out2'}", cwd=tmp_path)
    assert empty.returncode == 0 and "has no hole pixel" in empty.stdout + empty.stderr


def test_paths_and_files_that_cannot_be_used_are_one_line(tmp_path: Path) -> None:
    photo = write_photos(tmp_path / "in", 1, size=(48, 40))[0]
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), ((10, 30), (10, 22)))).save(mask)
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"not a folder")
    proc = run_cli("inpaint.predict", "model=biharmonic", f"input={photo}", f"mask={mask}", f"output={taken}",
                   cwd=tmp_path)
    assert proc.returncode == 1 and "is an existing file" in one_error_line(proc.stderr)
    assert taken.read_bytes() == b"not a folder"  # nothing lost
    junk = tmp_path / "junk.pth"
    junk.write_text("these are notes")
    proc = run_cli("inpaint.predict", "model=isnet", f"weights={junk}", f"input={photo}", f"mask={mask}",
                   f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 1
    line = one_error_line(proc.stderr)
    assert "junk.pth" in line and "weights_only" not in line


def test_a_run_directory_is_a_checkpoint_for_test_and_predict(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trained = run_cli("inpaint.run", *tiny(), "logger=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-2000:]
    tested = run_cli("inpaint.run", "task=test", f"ckpt_path={run_dir}", *tiny(), "logger=none",
                     f"hydra.run.dir={tmp_path / 'test'}", cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-2000:]
    assert f"ckpt_path={run_dir} is a directory: using {run_dir}/checkpoints/best.ckpt" in (
        tmp_path / "test" / "run.log").read_text()
    card = json.loads((tmp_path / "test" / "card.json").read_text())
    assert card["checkpoint"].endswith("checkpoints/best.ckpt")
    empty = tmp_path / "empty_run"
    empty.mkdir()
    refused = run_cli("inpaint.run", "task=test", f"ckpt_path={empty}", *tiny(), "logger=none", cwd=tmp_path)
    assert refused.returncode == 1 and "is a directory without best.ckpt or last.ckpt" in one_error_line(
        refused.stderr)

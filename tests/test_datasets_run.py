"""Every dataset format trains end to end through the real configs, with masks from files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import DATASETS, run_cli, tiny, write_dataset
from PIL import Image

from inpaint.run import run


def write_masks(root: Path, n: int = 12, size: int = 64) -> Path:
    """NVIDIA-style mask files: mode-L PNGs, 255 = hole, one rectangle each, hole ratios 5-55 %."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ratio = 0.05 + 0.5 * i / (n - 1)
        side = round(size * ratio**0.5)
        m = np.zeros((size, size), np.uint8)
        m[(i * 3) % (size - side + 1) :][:side, 5 % (size - side + 1) :][:, :side] = 255
        Image.fromarray(m, mode="L").save(root / f"{i:05d}.png")
    return root


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_trains_with_nvidia_masks(name, make_cfg, tmp_path):
    over = write_dataset(name, tmp_path / name)
    masks = write_masks(tmp_path / "masks")
    cfg = make_cfg(*over, *tiny(), "data.image_size=32", "mask=nvidia", f"mask.root={masks}", "logger=none")
    results = run(cfg)
    assert results["test/count"] > 0 and math.isfinite(results["test/psnr"])


@pytest.mark.slow
def test_cli_lmdb_workers_nvidia_masks_per_bucket(tmp_path):
    """The user's way: LMDB read by 2 loader workers, masks from files, one test per hole-ratio bucket."""
    over = write_dataset("lsun", tmp_path / "lsun")
    masks = write_masks(tmp_path / "masks")
    proc = run_cli(
        "inpaint.run", *over, *tiny(), "data.image_size=32", "data.num_workers=2", "mask=nvidia",
        f"mask.root={masks}", "eval.per_bucket=true", "eval.buckets=[[0.05,0.3],[0.3,0.6]]", "logger=none",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("outputs/fit/runs/*/metrics.json")).read_text())
    test = report["test"]
    # the official val LMDB (3 images x 2 crops) is the test split: each bucket run scores all of it
    assert test["test/count@5-30"] == 6 and test["test/count@30-60"] == 6 and test["test/count"] == 12
    assert test["test/psnr@5-30"] > test["test/psnr@30-60"]
    assert not any(p.name.startswith("_cache") for p in tmp_path.iterdir())  # no key cache in the cwd

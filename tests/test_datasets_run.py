"""Every dataset format trains end to end through the real configs, with masks from files."""

from __future__ import annotations

import json
import math

import pytest
from conftest import DATASETS, run_cli, tiny, write_dataset, write_masks

from inpaint.run import run


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.slow
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


@pytest.mark.parametrize("name", DATASETS)
def test_missing_dataset_is_the_prepare_message(name, make_cfg, tmp_path):
    """``run`` on an absent dataset raises the not-ready message ``prepare`` prints (the CLI turns it into
    one line without a traceback: tests/test_dataset_cifar10.py runs that through a subprocess)."""
    from inpaint.data.datasets.base import DatasetNotReadyError
    from inpaint.prepare import main as prepare_main

    over = [f"data={name}", f"data.root={tmp_path / 'absent'}"]
    with pytest.raises(DatasetNotReadyError) as e:
        run(make_cfg(*over, *tiny(), "logger=none"))
    msg = str(e.value)
    assert f"data={name}:" in msg and "is not ready" in msg and "Expected layout" in msg
    assert prepare_main([*over, "--no-download"]) == 1

"""The per-bucket evaluation protocol, ``python -m inpaint.prepare``, and the DataModule's crop/region options."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, tiny, write_masks, write_photos
from PIL import Image

from inpaint.data.datamodule import InpaintDataModule
from inpaint.data.masks import CenterMask, FreeFormMask, mask_ratio
from inpaint.data.sources import FolderSource
from inpaint.prepare import main as prepare_main
from inpaint.run import build_datamodule, run

BIHARMONIC = ["model=biharmonic", "task=test", *tiny("biharmonic"), "logger=none"]


def test_per_bucket_runs_one_test_per_bucket_and_merges_them(make_cfg, tmp_path, capsys):
    cfg = make_cfg(*BIHARMONIC, "eval.per_bucket=true", "eval.buckets=[[0.1,0.2],[0.3,0.4]]")
    results = run(cfg)
    # one table on the console, ours: not Lightning's table of the last bucket's run under plain test/ keys
    console = capsys.readouterr().out
    assert console.count("| all |") == 1 and "test/psnr" not in console
    n = results["test/count@10-20"]
    assert n > 0 and results["test/count@30-40"] == n and results["test/count"] == 2 * n
    # each bucket run is a full test set restricted to that ratio; the plain keys are their weighted mean
    assert results["test/psnr@10-20"] > results["test/psnr@30-40"]
    expected = (results["test/psnr@10-20"] + results["test/psnr@30-40"]) / 2
    assert math.isclose(results["test/psnr"], expected, rel_tol=1e-9)
    report = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert report["protocol"] == "per_bucket" and report["test"]["test/count@30-40"] == n
    table = (Path(cfg.paths.output_dir) / "metrics.md").read_text()
    assert "one test run per bucket" in table and "| 30-40 |" in table and "| 20-30 |" not in table
    # the bucket run's masks really are in its range: the datamodule is rebuilt with mask.ratio set
    dm = build_datamodule(cfg, mask_ratio=(0.3, 0.4))
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    ratios = batch["mask"].flatten(1).mean(1)
    assert bool(((ratios >= 0.3) & (ratios <= 0.4)).all())


def test_per_bucket_pooled_equivalence_for_a_single_full_bucket(make_cfg, tmp_path):
    """With one bucket covering the mask's whole range, per-bucket and pooled evaluation agree exactly."""
    over = [*BIHARMONIC, "mask.ratio=[0.1,0.5]", "eval.buckets=[[0.1,0.5]]"]
    pooled = run(make_cfg(*over, out=tmp_path / "a"))
    per = run(make_cfg(*over, "eval.per_bucket=true", out=tmp_path / "b"))
    assert per["test/psnr"] == pytest.approx(pooled["test/psnr"], rel=1e-12)
    assert per["test/psnr@10-50"] == pytest.approx(pooled["test/psnr"], rel=1e-12)


def test_per_bucket_needs_a_mask_with_a_ratio(make_cfg):
    with pytest.raises(ValueError, match="eval.per_bucket=true needs a mask generator with a hole-ratio option"):
        run(make_cfg(*BIHARMONIC, "mask=center", "eval.per_bucket=true"))


def test_center_crop_then_resize_matches_an_independent_computation(tmp_path):
    write_photos(tmp_path / "p", 3, size=(60, 40))
    src = FolderSource(tmp_path / "p")
    dm = InpaintDataModule(
        train=src, val=src, mask=CenterMask(4), image_size=20, center_crop=30, resize_short=20,
        eval_crops_per_image=1,
    )
    dm.setup("test")
    got = dm.datasets["test"][1]["image"]
    img = np.asarray(Image.open(src.paths[1]).convert("RGB"))
    ref = Image.fromarray(img[15:45, 5:35]).resize((20, 20), Image.Resampling.BICUBIC)
    want = torch.from_numpy(np.asarray(ref).copy()).permute(2, 0, 1).float() / 255
    assert torch.equal(got, want)


def test_region_is_in_the_batch_when_the_mask_has_one(tmp_path):
    write_photos(tmp_path / "p", 3, size=(32, 32))
    src = FolderSource(tmp_path / "p")
    mask = CenterMask(8)
    if not hasattr(mask, "region"):
        pytest.skip("CenterMask.region not available")
    dm = InpaintDataModule(train=src, val=src, mask=CenterMask(8, overlap=4), image_size=32, batch_size=2)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    region, hole = batch["region"][0, 0], batch["mask"][0, 0]
    assert region[8:24, 8:24].all() and region.sum() == 256 and hole[12:20, 12:20].all() and hole.sum() == 64
    dm2 = InpaintDataModule(train=src, val=src, mask=FreeFormMask(), image_size=32, batch_size=2)
    dm2.setup("fit")
    assert "region" not in next(iter(dm2.val_dataloader()))


def test_mask_ratio_bucket_run_keeps_exact_ratios():
    rng = np.random.default_rng(0)
    gen = FreeFormMask(ratio=(0.2, 0.3))
    assert all(0.2 <= mask_ratio(gen(32, 32, rng)) <= 0.3 for _ in range(20))


# ------------------------------------------------------------------------------------------ prepare


def test_prepare_reports_sample_and_folder_data(tmp_path, capsys):
    assert prepare_main([]) == 0
    assert "nothing to prepare" in capsys.readouterr().out
    write_photos(tmp_path / "photos", 10)
    assert prepare_main(["data=folder", f"data.root={tmp_path / 'photos'}"]) == 0
    assert "train 8, val 1, test 1" in capsys.readouterr().out
    assert prepare_main(["--frobnicate"]) == 2
    assert prepare_main(["--help"]) == 0 and "python -m inpaint.prepare" in capsys.readouterr().out


@pytest.mark.slow
def test_prepare_cli_errors_are_one_message(tmp_path):
    proc = run_cli("inpaint.prepare", f"data.root={tmp_path}", "data=folder", cwd=tmp_path)
    assert proc.returncode == 1 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr


def test_protocols_and_the_leaderboard_experiment_compose(make_cfg, tmp_path):
    """experiment=leaderboard_cifar brings the CIFAR centre-hole protocol; protocol=nvidia_buckets swaps in the
    NVIDIA masks scored one test per bucket; a method and a data folder chosen on the command line win."""
    cfg = make_cfg("experiment=leaderboard_cifar", "data.root=/data/cifar10")
    assert cfg.data._target_.endswith("CIFAR10DataModule") and cfg.data.image_size == 32
    assert cfg.mask._target_.endswith("CenterMask") and cfg.mask.size == 8
    assert cfg.eval.hole_metrics and not cfg.eval.per_bucket and list(cfg.eval.buckets) == [[0.05, 0.1]]
    assert cfg.trainer.val_check_interval == cfg.trainer.max_steps  # one validation, at the end
    cfg = make_cfg("experiment=leaderboard_cifar", "protocol=nvidia_buckets", "mask.root=/masks", "data=folder",
                   "data.root=/images", "model=isnet", "trainer.max_steps=7")
    assert cfg.mask._target_.endswith("NvidiaMask") and cfg.mask.root == "/masks"
    assert cfg.eval.per_bucket and [list(b) for b in cfg.eval.buckets] == [[0.1, 0.2], [0.2, 0.3], [0.3, 0.4],
                                                                            [0.4, 0.5]]
    assert cfg.data._target_.endswith("from_folder") and cfg.model._target_.endswith("ISNetModule")
    assert cfg.trainer.val_check_interval == 7


def test_nvidia_bucket_protocol_runs_a_real_test(make_cfg, tmp_path):
    masks = write_masks(tmp_path / "masks", n=24)
    cfg = make_cfg(*BIHARMONIC, "protocol=nvidia_buckets", f"mask.root={masks}", "eval.hole_metrics=false")
    results = run(cfg)
    for bucket in ("10-20", "20-30", "30-40", "40-50"):
        assert results[f"test/count@{bucket}"] > 0 and math.isfinite(results[f"test/psnr@{bucket}"])
    assert results["test/psnr@10-20"] > results["test/psnr@40-50"]
    card = json.loads((Path(cfg.paths.output_dir) / "card.json").read_text())
    assert card["protocol"]["mask"]["config"]["_target_"].endswith("NvidiaMask")
    assert "root" not in card["protocol"]["mask"]["config"]  # paths differ between machines, masks do not
    assert card["protocol"]["metric_options"]["per_bucket"]

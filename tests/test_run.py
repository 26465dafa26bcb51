"""Integration: the real configs composed with tiny overrides, real training steps on real photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import DATASETS, run_cli, tiny, write_dataset, write_photos
from hydra.errors import ConfigCompositionException

from inpaint.checkpoints import CheckpointMismatchError, load_weights
from inpaint.models.scnn import SCNNModule
from inpaint.run import build_model, run

MODELS = ["scnn", "biharmonic"]
MASKS = ["center", "blocks", "freeform", "mixed"]


def _task(model: str) -> list[str]:
    return ["task=test"] if model == "biharmonic" else []


def test_default_run_writes_everything(make_cfg, tmp_path):
    cfg = make_cfg(*tiny(), "trainer.max_steps=4")
    results = run(cfg)
    out = tmp_path / "run"
    assert (out / "checkpoints" / "best.ckpt").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    grids = sorted((out / "grids").glob("*.png"))
    assert [g.name for g in grids] == ["step=000002.png", "step=000004.png"]
    report = json.loads((out / "metrics.json").read_text())
    assert report["checkpoint"].endswith("best.ckpt")
    assert set(report["test"]) >= {"test/psnr", "test/ssim", "test/mae", "test/l2", "test/maem", "test/count"}
    assert report["test"]["test/count"] == 4  # 2 test photos x 2 crops
    assert math.isfinite(results["test/psnr"]) and results["test/psnr"] > 5
    md = (out / "metrics.md").read_text()
    assert "| all |" in md and "PSNR" in md
    csv = (out / "csv" / "metrics.csv").read_text()
    assert "train/loss" in csv and "val/psnr" in csv and "train/spike_rate" in csv


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("data", ["sample", "folder"])
@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.slow
def test_every_model_data_mask_combination(make_cfg, photos, model, data, mask):
    over = [f"model={model}", f"data={data}", f"mask={mask}", *tiny(model), "trainer.max_steps=1", "logger=none"]
    if data == "folder":
        over += [f"data.root={photos}"]
    results = run(make_cfg(*over, *_task(model)))
    assert results["test/count"] > 0 and math.isfinite(results["test/psnr"])


@pytest.mark.slow
def test_every_config_file_composes_and_builds(make_cfg, photos, tmp_path):
    from inpaint.run import CONF_DIR, build_datamodule

    groups = ["model", "data", "mask", "trainer", "logger", "callbacks", "experiment", "hparams_search", "debug"]
    for group in groups:
        for f in sorted((CONF_DIR / group).glob("*.yaml")):
            if group == "trainer" and f.stem == "default":
                continue
            needs_root = (group, f.stem) == ("data", "folder") or group == "experiment"
            extra = [f"data.root={photos}"] if needs_root else []
            if group == "data" and f.stem in DATASETS:
                extra = write_dataset(f.stem, tmp_path / f.stem)[1:]
            if group == "experiment":
                probe = make_cfg(f"experiment={f.stem}", *extra)
                dataset = probe.data._target_.split(".")[-2]
                if dataset in DATASETS:  # the experiment's dataset, written in its true format
                    extra = write_dataset(dataset, tmp_path / f"exp-{f.stem}")[1:]
                if probe.mask._target_.endswith("NvidiaMask"):
                    extra.append(f"mask.root={photos}")
            if (group, f.stem) == ("mask", "nvidia"):
                extra.append(f"mask.root={photos}")  # any images read as masks
            if group == "model" and f.stem in ("context_encoder", "ce_gan", "ce_wgan"):
                extra += ["data.image_size=32", "mask=cifar_center"]  # their only geometry at this size
            cfg = make_cfg(f"{group}={f.stem}", *extra)
            build_model(cfg)
            build_datamodule(cfg)


def test_bf16_mixed_precision_on_cpu(make_cfg):
    results = run(make_cfg(*tiny(), "trainer.precision=bf16-mixed", "logger=none"))
    assert math.isfinite(results["test/psnr"])


def test_channels_last_gives_the_same_numbers(make_cfg, tmp_path):
    eager = run(make_cfg(*tiny(), "logger=none", out=tmp_path / "a"))
    nhwc = run(make_cfg(*tiny(), "logger=none", "channels_last=true", out=tmp_path / "b"))
    assert nhwc["test/psnr"] == pytest.approx(eager["test/psnr"], abs=1e-3)


@pytest.mark.slow
def test_compile_switch_keeps_checkpoints_interchangeable(make_cfg, tmp_path):
    results = run(make_cfg(*tiny(), "logger=none", "compile=true", out=tmp_path / "c"))
    assert math.isfinite(results["test/psnr"])
    state = torch.load(tmp_path / "c" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    again = run(make_cfg(*tiny(), "logger=none", "task=test", f"ckpt_path={tmp_path / 'c/checkpoints/best.ckpt'}",
                         out=tmp_path / "d"))
    assert again["test/psnr"] == pytest.approx(results["test/psnr"], abs=1e-3)


def test_resume_continues_the_step_count(make_cfg, tmp_path):
    run(make_cfg(*tiny(), "trainer.max_steps=2", "logger=none", out=tmp_path / "a"))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 2
    run(make_cfg(*tiny(), "trainer.max_steps=4", f"ckpt_path={last}", "logger=none", out=tmp_path / "b"))
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 4
    assert resumed["optimizer_states"][0]["state"]  # Adam moments travelled with the checkpoint


def test_init_from_loads_weights_only_and_reports_keys(make_cfg, tmp_path):
    run(make_cfg(*tiny(), "logger=none", out=tmp_path / "a"))
    ckpt = tmp_path / "a" / "checkpoints" / "last.ckpt"
    model = build_model(make_cfg(*tiny()))
    report = load_weights(model, ckpt)
    assert len(report["loaded"]) == 12 and not report["missing"]  # 6 convs x (weight, bias)
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert all(torch.equal(model.state_dict()[k], saved[k]) for k in report["loaded"])
    wider = build_model(make_cfg(*tiny(), "model.net.widths=[16,8,8,8,8]"))
    partial = load_weights(wider, ckpt)
    assert partial["shape_mismatch"] and partial["loaded"]
    results = run(make_cfg(*tiny(), f"init_from={ckpt}", "task=test", "logger=none", out=tmp_path / "t"))
    assert math.isfinite(results["test/psnr"])


def test_task_test_evaluates_a_checkpoint(make_cfg, tmp_path):
    run(make_cfg(*tiny(), "logger=none", out=tmp_path / "a"))
    best = tmp_path / "a" / "checkpoints" / "best.ckpt"
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())["test"]
    again = run(make_cfg(*tiny(), "task=test", f"ckpt_path={best}", "logger=none", out=tmp_path / "b"))
    assert again["test/psnr"] == pytest.approx(first["test/psnr"], abs=1e-6)


def test_checkpoint_of_another_model_is_refused(make_cfg, tmp_path):
    run(make_cfg(*tiny(), "logger=none", out=tmp_path / "a"))
    best = tmp_path / "a" / "checkpoints" / "best.ckpt"
    with pytest.raises(CheckpointMismatchError, match=r"SCNNModule.*BiharmonicModule.*model=scnn"):
        run(make_cfg("model=biharmonic", "task=test", f"ckpt_path={best}", *tiny("biharmonic")))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    with pytest.raises(CheckpointMismatchError, match="not written by inpaint"):
        run(make_cfg(*tiny(), "task=test", f"ckpt_path={foreign}"))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path, monkeypatch):
    original = SCNNModule.loss

    def poisoned(self, prediction, image, mask):
        loss = original(self, prediction, image, mask)
        return loss * float("nan") if self.global_step >= 3 else loss

    monkeypatch.setattr(SCNNModule, "loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"global step 3 .*last\.ckpt"):
        run(make_cfg(*tiny(), "trainer.max_steps=6", "logger=none"))
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_untrainable_and_missing_checkpoint_errors(make_cfg):
    with pytest.raises(ValueError, match="nothing to train"):
        run(make_cfg("model=biharmonic", *tiny("biharmonic")))
    with pytest.raises(ValueError, match="ckpt_path"):
        run(make_cfg("task=test", *tiny()))
    with pytest.raises(ValueError, match="task=predict"):
        run(make_cfg("task=predict", *tiny()))


def test_unknown_config_options_list_the_choices(make_cfg):
    with pytest.raises(ConfigCompositionException, match=r"(?s)model/nope.*biharmonic.*scnn"):
        make_cfg("model=nope")
    with pytest.raises(ConfigCompositionException, match="trainer.nonsense"):
        make_cfg("trainer.nonsense=1")


def test_missing_data_root_is_one_clear_message(make_cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        run(make_cfg("data=folder", f"data.root={tmp_path / 'does-not-exist'}", *tiny()))


@pytest.mark.slow
def test_wandb_logger_offline_writes_run_files(make_cfg, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(make_cfg(*tiny(), "logger=wandb"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))
    media = runs[0] / "files" / "media"
    assert list((media / "images" / "val").glob("grid_*.png"))
    tables = list((media / "table" / "test").glob("table_*.table.json"))  # (and the card's leaderboard_row)
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["bucket", "n", "psnr", "ssim", "mae", "l2", "maem"]
    assert table["data"][0][:2] == ["all", 4]
    import wandb

    wandb.finish()


def test_tensorboard_logger_writes_events(make_cfg, tmp_path):
    run(make_cfg(*tiny(), "logger=tensorboard"))
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))


def test_predict_on_written_image_and_mask(make_cfg, tmp_path):
    from inpaint.predict import predict

    run(make_cfg(*tiny(), "logger=none", out=tmp_path / "a"))
    best = tmp_path / "a" / "checkpoints" / "best.ckpt"
    imgs = write_photos(tmp_path / "in", 2, size=(37, 53))
    import numpy as np
    from PIL import Image

    mask = np.zeros((37, 53), np.uint8)
    mask[10:20, 15:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    cfg = make_cfg(f"ckpt_path={best}", f"input={tmp_path / 'in'}", f"mask={tmp_path / 'mask.png'}",
                   f"output={tmp_path / 'out'}", "dilate=1", config="predict")
    written = predict(cfg)
    assert [p.name for p in written] == ["img_000.png", "img_001.png"]
    out = np.asarray(Image.open(written[0]))
    src = np.asarray(Image.open(imgs[0]))
    assert out.shape == src.shape
    known = np.ones((37, 53), bool)
    known[9:21, 14:31] = False  # the hole grown by dilate=1
    assert np.array_equal(out[known], src[known])
    assert not np.array_equal(out[12:18, 17:28], src[12:18, 17:28])

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "small_mask.png")
    bad = make_cfg(f"ckpt_path={best}", f"input={imgs[0]}", f"mask={tmp_path / 'small_mask.png'}",
                   f"output={tmp_path / 'out2'}", config="predict")
    with pytest.raises(ValueError, match=r"20x20.*53x37"):
        predict(bad)


@pytest.mark.slow
def test_cli_default_run_and_errors(tmp_path):
    proc = run_cli("inpaint.run", *tiny(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Run directory:" in proc.stdout and "| all |" in proc.stdout
    run_dir = Path(proc.stdout.split("Run directory:")[1].split()[0])
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "metrics.json").is_file()
    bad = run_cli("inpaint.run", "data=folder", f"data.root={tmp_path / 'nope'}", cwd=tmp_path)
    assert bad.returncode == 1
    assert "nope" in bad.stderr and "Traceback" not in bad.stderr
    unknown = run_cli("inpaint.run", "mask=nope", cwd=tmp_path)
    assert unknown.returncode != 0 and "Available options" in unknown.stderr and "freeform" in unknown.stderr


@pytest.mark.slow
def test_cli_ddp_cpu_counts_every_test_sample_once(tmp_path, photos):
    # 1 test photo x 3 crops = 3 samples over 2 processes: a padding sampler would score 4
    proc = run_cli("inpaint.run", "trainer=ddp_cpu", "data=folder", f"data.root={photos}", *tiny(),
                   "data.eval_crops_per_image=3", "+data.eval_batch_size=1", "logger=none", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    assert "sync_dist" not in proc.stdout + proc.stderr  # metrics are reduced by torchmetrics already
    run_dir = Path(proc.stdout.split("Run directory:")[1].split()[0])
    report = json.loads((run_dir / "metrics.json").read_text())
    assert report["test"]["test/count"] == 3

"""FloorWatch (time to beat the floor): the floor is biharmonic scored on the run's own validation images and masks
(checked against skimage and numpy by hand), every validation adds a row of the curve with its steps and images
seen, and a crossing is recorded at the first validation that beats the floor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny
from skimage.restoration import inpaint_biharmonic

from inpaint.callbacks import FloorWatch, reference_workload_seconds
from inpaint.run import build_datamodule, run


def _by_hand_floor(cfg, batches: int) -> tuple[float, float, int]:
    """Mean PSNR and hole MSE of skimage's biharmonic fill over the first ``batches`` validation batches."""
    dm = build_datamodule(cfg)
    dm.setup("fit")
    psnr, mse = [], []
    for i, batch in enumerate(dm.val_dataloader()):
        if i >= batches:
            break
        for img, msk in zip(batch["image"].numpy(), batch["mask"].numpy(), strict=True):
            image, hole = img.transpose(1, 2, 0).astype(np.float64), msk[0] > 0.5
            fill = inpaint_biharmonic(image, hole, channel_axis=-1)
            comp = np.where(hole[..., None], fill.astype(np.float32).astype(np.float64), image)
            psnr.append(10 * np.log10(1.0 / np.mean((comp - image) ** 2)))
            mse.append(np.mean((comp - image)[hole] ** 2))
    return float(np.mean(psnr)), float(np.mean(mse)), len(psnr)


@pytest.mark.slow
def test_floor_is_biharmonic_on_the_validation_images_and_the_curve_counts_steps(make_cfg, tmp_path):
    path = tmp_path / "floor.json"
    cfg = make_cfg(*tiny(), "mask=cifar_center", "eval.hole_metrics=true", "trainer.max_steps=4",
                   "trainer.val_check_interval=2", "trainer.limit_val_batches=2", "logger=none",
                   "+callbacks.floor_watch._target_=inpaint.callbacks.FloorWatch", f"+callbacks.floor_watch.path={path}",
                   "+callbacks.floor_watch.reference_repeats=1",
                   # PSNR "beaten" when lower: the untrained net is certain to cross at its first validation
                   "+callbacks.floor_watch.metrics={val/psnr: min}")
    run(cfg)
    record = json.loads(path.read_text())
    psnr, mse, count = _by_hand_floor(cfg, 2)
    assert record["floor"]["val/psnr"] == pytest.approx(psnr, abs=1e-4)
    assert record["floor_count"] == count > 0
    assert [row["step"] for row in record["curve"]] == [2, 4]
    assert [row["images"] for row in record["curve"]] == [2 * cfg.data.batch_size, 4 * cfg.data.batch_size]
    first = record["curve"][0]
    assert 0 < first["train_minutes"] <= first["wall_minutes"]
    assert record["crossed"]["val/psnr"] == first and record["beaten"] == first
    assert record["reference_workload_seconds"] > 0
    assert record["floor_all"]["val/mse_hole"] == pytest.approx(mse, rel=1e-4)  # the hole MSE, from the same fills
    assert set(FloorWatch(str(tmp_path / "x.json")).metrics) == {"val/psnr", "val/mse_hole"}  # the defaults


def test_floor_watch_refuses_a_direction_it_does_not_know():
    with pytest.raises(ValueError, match="max or min"):
        FloorWatch("x.json", metrics={"val/psnr": "up"})


def test_reference_workload_is_a_positive_time():
    torch.manual_seed(0)
    assert reference_workload_seconds(1) > 0


@pytest.mark.parametrize("experiment", ["floor_ce", "floor_scnn"])
def test_floor_schedules_anneal_to_zero_over_the_budget(experiment, make_cfg):
    """The time-to-floor experiments: floor_cifar's data and FloorWatch, the method's model, and a cosine rate that
    reaches 0 exactly at trainer.max_steps (whatever max_steps is given), stepped every step."""
    from inpaint.run import build_model

    cfg = make_cfg(f"experiment={experiment}", "data.root=/nowhere", "trainer.max_steps=40")
    assert cfg.callbacks.floor_watch._target_.endswith("FloorWatch") and cfg.data.image_size == 32
    assert cfg.trainer.precision == "model"  # bf16 where the model declares it and the CPU has it
    model = build_model(cfg)
    conf = model.configure_optimizers()
    optimizer, scheduler = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    start = optimizer.param_groups[0]["lr"]
    assert start == cfg.model.optimizer.lr
    rates = []
    for _ in range(40):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[19] == pytest.approx(start / 2, rel=1e-6) and rates[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(rates, rates[1:], strict=False))

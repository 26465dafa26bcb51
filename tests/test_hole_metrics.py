"""``eval.hole_metrics``: the "Beyond CNNs" hole metrics (spec A2) against an independent numpy reference,
their relation to the existing metrics, DDP-style merging, the tables, and one end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import tiny
from lightning.pytorch.loggers import WandbLogger

from inpaint.evaluation.metrics import (
    HOLE_METRIC_NAMES,
    METRIC_NAMES,
    InpaintMetrics,
    per_image_hole_metrics,
    per_image_metrics,
    reported_metrics,
)
from inpaint.evaluation.tables import log_metric_table, metric_rows, metrics_table
from inpaint.models.base import InpaintModule, Procedure
from inpaint.models.biharmonic import BiharmonicModule
from inpaint.run import run
from inpaint.sweeps import _job_metrics


def images(b: int, h: int, w: int, seed: int, noise: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random targets in [0, 1] and predictions near them (partly outside [0, 1], so clamping matters)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(b, 3, h, w, generator=g)
    pred = target + noise * torch.randn(b, 3, h, w, generator=g)
    return pred, target


def random_holes(b: int, h: int, w: int, seed: int, fractions: list[float]) -> torch.Tensor:
    """Scattered holes: image i has a random fraction[i] of hole pixels (different sizes per image)."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, 1, h, w)
    for i, f in enumerate(fractions):
        mask[i].view(-1)[torch.randperm(h * w, generator=g)[: round(f * h * w)]] = 1.0
    return mask


def composite_of(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return pred * mask + target * (1 - mask)


def numpy_reference(composite: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image, written directly from the spec with numpy loops over the hole pixels."""
    c, t, m = composite.double().numpy(), target.double().numpy(), mask.numpy()[:, 0] > 0.5
    out: dict[str, list[float]] = {name: [] for name in HOLE_METRIC_NAMES}
    for ci, ti, mi in zip(c, t, m, strict=True):
        yhat, y = ci[:, mi].T, ti[:, mi].T  # [n, 3]: the hole pixels
        n = len(y)
        sq = ((y - yhat) ** 2).sum()
        out["mse_hole"].append(sq / (3 * n))
        out["l2_paper"].append(sq / n)  # (1/n^2) * sum with an n x n hole: n^2 = number of hole pixels
        out["l2_paper_255"].append(((255 * y - 255 * yhat) ** 2).sum() / n)
        level_diff = np.abs(np.round(np.clip(yhat, 0, 1) * 255) - np.round(y * 255))
        out["maem_hole"].append(100 * np.mean(np.all(level_diff <= 5, axis=1)))
        out["maem_channel"].append(100 * np.mean(level_diff <= 5))
    return {k: np.asarray(v) for k, v in out.items()}


def test_hole_metrics_match_numpy_per_image_and_averaged() -> None:
    fractions = [0.02, 0.0625, 0.2, 0.45, 0.8]  # very different hole sizes
    pred, target = images(5, 32, 32, seed=0)
    mask = random_holes(5, 32, 32, seed=1, fractions=fractions)
    composite = composite_of(pred, target, mask)
    ref = numpy_reference(composite, target, mask)
    got = per_image_hole_metrics(composite, target, mask)
    assert set(got) == set(HOLE_METRIC_NAMES)
    for name in HOLE_METRIC_NAMES:
        assert got[name].dtype == torch.float64
        np.testing.assert_allclose(got[name].numpy(), ref[name], rtol=1e-9, err_msg=name)
    assert 0 < ref["maem_hole"].min() and ref["maem_hole"].max() < 100  # the comparison is not trivial
    metric = InpaintMetrics(hole_metrics=True)
    metric.update(composite, target, mask)
    res = metric.compute()
    for name in HOLE_METRIC_NAMES:  # per image, then the plain mean over images (not pooled over pixels)
        assert res[name].item() == pytest.approx(ref[name].mean(), rel=1e-9), name


def test_l2_paper_is_three_times_mse_hole_and_the_255_scale_is_65025_times() -> None:
    pred, target = images(4, 32, 32, seed=2)
    mask = random_holes(4, 32, 32, seed=3, fractions=[0.1, 0.2, 0.3, 0.0625])
    got = per_image_hole_metrics(composite_of(pred, target, mask), target, mask)
    np.testing.assert_allclose(got["l2_paper"].numpy(), 3 * got["mse_hole"].numpy(), rtol=1e-12)
    np.testing.assert_allclose(got["l2_paper_255"].numpy(), 65025 * got["l2_paper"].numpy(), rtol=1e-12)


def level_images(b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets on exact 0-255 levels 10..240 and the 8x8 CIFAR centre hole of 32x32 images."""
    g = torch.Generator().manual_seed(4)
    target = torch.randint(10, 241, (b, 3, 32, 32), generator=g).float() / 255
    mask = torch.zeros(b, 1, 32, 32)
    mask[:, :, 12:20, 12:20] = 1.0
    return target, mask


@pytest.mark.parametrize(("levels", "pixel", "channel"), [(0, 100.0, 100.0), (5, 100.0, 100.0), (-5, 100.0, 100.0),
                                                          (6, 0.0, 200 / 3), (-6, 0.0, 200 / 3)])
def test_maem_tolerance_is_five_levels_inclusive(levels: int, pixel: float, channel: float) -> None:
    target, mask = level_images(3)
    pred = target.clone()
    pred[:, 1] += levels / 255  # one channel of every pixel off by `levels`
    got = per_image_hole_metrics(composite_of(pred, target, mask), target, mask)
    assert got["maem_hole"].tolist() == pytest.approx([pixel] * 3)
    assert got["maem_channel"].tolist() == pytest.approx([channel] * 3)


def test_maem_is_averaged_per_image_over_different_hole_sizes() -> None:
    target, _ = level_images(2)
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 12:20, 12:20] = 1.0  # 64 hole pixels, all matched
    mask[1, :, 0:12, 0:16] = 1.0  # 192 hole pixels, a quarter (48) matched
    pred = target.clone()
    pred[1, 0, 3:12, 0:16] += 6 / 255
    metric = InpaintMetrics(buckets=(), hole_metrics=True)
    metric.update(composite_of(pred, target, mask), target, mask)
    res = metric.compute()
    assert res["maem_hole"].item() == pytest.approx((100 + 25) / 2)  # pooled would be 112/256 = 43.75 %
    assert res["maem_channel"].item() == pytest.approx((100 + (25 + 100 + 100) / 3) / 2)  # channel 0: 25 %


def test_relation_to_the_existing_metrics() -> None:
    """``maem`` already counts hole pixels only, so ``maem_hole`` equals it; the whole-image ``l2`` and a
    whole-image MAEM on the composite are diluted by the known pixels, which match trivially."""
    fractions = [0.0625, 0.15, 0.3, 0.5]
    pred, target = images(4, 32, 32, seed=5, noise=0.03)
    mask = random_holes(4, 32, 32, seed=6, fractions=fractions)
    composite = composite_of(pred, target, mask)
    old, new = per_image_metrics(composite, target, mask), per_image_hole_metrics(composite, target, mask)
    assert torch.equal(new["maem_hole"], old["maem"])
    r = mask.flatten(1).double().mean(dim=1)  # the exact hole ratios
    np.testing.assert_allclose(old["l2"].numpy(), (r * new["mse_hole"]).numpy(), rtol=1e-9)
    c, t = composite.double().numpy(), target.double().numpy()
    levels_equal = np.abs(np.round(np.clip(c, 0, 1) * 255) - np.round(t * 255)) <= 5
    whole_image_maem = 100 * levels_equal.all(axis=1).mean(axis=(1, 2))
    np.testing.assert_allclose(whole_image_maem, (100 * (1 - r) + r * new["maem_hole"]).numpy(), rtol=1e-9)
    assert (whole_image_maem > new["maem_hole"].numpy()).all()


def test_empty_hole_scores_zero_error_and_full_match() -> None:
    pred, target = images(1, 16, 16, seed=7)
    got = per_image_hole_metrics(pred, target, torch.zeros(1, 1, 16, 16))
    assert [got[n].item() for n in HOLE_METRIC_NAMES] == [0.0, 0.0, 0.0, 100.0, 100.0]


def test_states_merge_like_ddp() -> None:
    pred, target = images(8, 32, 32, seed=8)
    mask = random_holes(8, 32, 32, seed=9, fractions=[0.05, 0.12, 0.18, 0.25, 0.33, 0.41, 0.48, 0.0625])
    composite = composite_of(pred, target, mask)
    whole, a, b = (InpaintMetrics(hole_metrics=True) for _ in range(3))
    whole.update(composite, target, mask)
    a.update(composite[:3], target[:3], mask[:3])
    b.update(composite[3:], target[3:], mask[3:])
    a.merge_state(b)  # the same dist_reduce_fx ("sum") as a DDP sync
    merged, expected = a.compute(), whole.compute()
    assert set(merged) == set(expected) and "l2_paper@30-40" in expected
    for key, value in expected.items():
        assert merged[key].item() == pytest.approx(value.item(), rel=1e-12), key


def test_disabled_keeps_keys_and_tables_unchanged() -> None:
    pred, target = images(3, 32, 32, seed=10)
    mask = random_holes(3, 32, 32, seed=11, fractions=[0.12, 0.15, 0.35])
    composite = composite_of(pred, target, mask)
    off, on = InpaintMetrics(), InpaintMetrics(hole_metrics=True)
    off.update(composite, target, mask)
    on.update(composite, target, mask)
    res_off = {f"test/{k}": v.item() for k, v in off.compute().items()}
    res_on = {f"test/{k}": v.item() for k, v in on.compute().items()}
    assert not any(k.split("/")[1].split("@")[0] in HOLE_METRIC_NAMES for k in res_off)
    assert {k: v for k, v in res_on.items() if k in res_off} == res_off  # the old numbers do not move
    assert reported_metrics(res_off, "test/") == METRIC_NAMES
    assert reported_metrics(res_on, "test/") == METRIC_NAMES + HOLE_METRIC_NAMES
    assert metrics_table(res_off, prefix="test/").splitlines()[0] == "| bucket | n | PSNR | SSIM | MAE(%) | L2 | MAEM(%) |"
    lines = metrics_table(res_on, prefix="test/").splitlines()
    assert lines[0] == ("| bucket | n | PSNR | SSIM | MAE(%) | L2 | MAEM(%) | MSE hole | L2 paper | L2 paper (0-255) "
                        "| MAEM hole(%) | MAEM channel(%) |")
    cells = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert cells[0] == "all" and len(cells) == 2 + len(METRIC_NAMES) + len(HOLE_METRIC_NAMES)
    assert cells[-3] == f"{res_on['test/l2_paper_255']:.2f}"
    label, count, values = metric_rows(res_on, prefix="test/")[0]
    assert (label, count) == ("all", 3.0) and values[-5] == res_on["test/mse_hole"]
    wandb = mock.Mock(spec=WandbLogger)  # the W&B table gets the same columns
    for res, names in ((res_off, METRIC_NAMES), (res_on, METRIC_NAMES + HOLE_METRIC_NAMES)):
        log_metric_table([wandb], "test/table", res, ((0.1, 0.2),), prefix="test/")
        assert wandb.log_table.call_args.kwargs["columns"] == ["bucket", "n", *names]


class _TwoProceduresModule(InpaintModule):
    """A model that scores a second procedure side by side (like ISNet's single pass next to PRA)."""

    def __init__(self) -> None:
        super().__init__(buckets=((0.1, 0.2),))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return image

    def procedures(self):
        return [*super().procedures(), Procedure("zero", lambda image, mask, index: image * (1 - mask))]

    def default_compare(self):
        return ("zero",)


def test_enable_hole_metrics_switches_every_score_set() -> None:
    model = _TwoProceduresModule()
    assert not model.hole_metrics and model.evaluators["val"].main.per_image.names == METRIC_NAMES
    before = set(model.state_dict())
    assert model.enable_hole_metrics() is model and model.hole_metrics
    image, mask = torch.rand(2, 3, 16, 16), torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:9, 4:9] = 1.0
    for stage in ("val", "test"):
        model._eval_step({"image": image, "mask": mask, "index": torch.arange(2)}, stage)
        evaluator = model.evaluators[stage]
        for scores in (evaluator.main, evaluator.variants["zero"]):
            metric = scores.per_image
            assert metric.hole_metrics and metric.names == METRIC_NAMES + HOLE_METRIC_NAMES
            assert metric.buckets == ((0.1, 0.2),)
        results, _ = evaluator.compute(stage)
        assert f"{stage}/zero/mse_hole" in results and f"{stage}/mse_hole" in results
    assert set(model.state_dict()) == before  # checkpoints are unaffected
    assert BiharmonicModule().enable_hole_metrics().evaluators["test"].spec.hole_metrics


def test_run_reports_hole_metrics_on_the_cifar_centre_hole(make_cfg) -> None:
    cfg = make_cfg(*tiny("biharmonic"), "model=biharmonic", "task=test", "mask=cifar_center", "logger=none",
                   "eval.hole_metrics=true")
    results = run(cfg)
    for name in HOLE_METRIC_NAMES:
        assert np.isfinite(results[f"test/{name}"]), name
    assert results["test/l2_paper"] == pytest.approx(3 * results["test/mse_hole"], rel=1e-9)
    assert results["test/maem_hole"] == results["test/maem"]
    assert 0 < results["test/mse_hole"] < 0.1  # a smooth fill of an 8x8 hole in smooth photos
    out = Path(cfg.paths.output_dir)
    md = (out / "metrics.md").read_text()
    assert "| MSE hole | L2 paper | L2 paper (0-255) | MAEM hole(%) | MAEM channel(%) |" in md
    report = json.loads((out / "metrics.json").read_text())
    assert report["test"]["test/maem_channel"] == results["test/maem_channel"]
    # a sweep's trials table picks them up from metrics.json
    (out / "metrics.json").write_text(json.dumps({"last_val": {"val/mse_hole": 0.01, "val/maem_hole": 50.0}}))
    assert _job_metrics(out) == {"val/mse_hole": 0.01, "val/maem_hole": 50.0}


def test_run_without_the_switch_has_no_hole_metrics(make_cfg) -> None:
    cfg = make_cfg(*tiny("biharmonic"), "model=biharmonic", "task=test", "mask=cifar_center", "logger=none")
    results = run(cfg)
    assert "test/maem" in results and not any("hole" in k or "paper" in k for k in results)
    assert "MSE hole" not in (Path(cfg.paths.output_dir) / "metrics.md").read_text()

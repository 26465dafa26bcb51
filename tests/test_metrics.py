"""Tests for inpaint.evaluation.metrics against independent references (skimage / numpy / hand-built cases)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from inpaint.evaluation.metrics import (
    DEFAULT_BUCKETS,
    METRIC_NAMES,
    PSNR_MAX,
    InpaintMetrics,
    bucket_name,
    hole_ratio,
    per_image_metrics,
)
from inpaint.evaluation.tables import metrics_table

# SSIM: ours runs in float32 (E[x^2] - mu^2 cancellation, ~1e-7 per window), skimage in float64. Measured max
# |difference| is <= 4e-7 over sizes 11..256 and noise 0.01..0.5, so 1e-5 leaves 25x headroom yet would catch
# any border-handling or window mismatch (those shift SSIM by >= 1e-3 on 32-64 px images).
SSIM_ATOL = 1e-5
# PSNR/MAE/L2 are computed in float64 from float32 inputs, exactly like the numpy reference.
EXACT_RTOL = 1e-9


def smooth_images(b: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random smooth targets and noisy, blurred predictions in [0, 1] (float32)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(b, 3, h // 8, w // 8, generator=g)
    target = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    target = (target + 0.05 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    scale = torch.linspace(0.02, 0.2, b).view(b, 1, 1, 1)  # very different errors per image
    pred = (target + scale * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return pred.float(), target.float()


def rect_mask(b: int, h: int, w: int, n_holes: list[int]) -> torch.Tensor:
    """Mask whose image i has exactly n_holes[i] hole pixels (first pixels in raster order)."""
    mask = torch.zeros(b, 1, h * w)
    for i, n in enumerate(n_holes):
        mask[i, 0, :n] = 1.0
    return mask.view(b, 1, h, w)


def reference(pred: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-image PSNR/SSIM (skimage) and MAE%/L2 (numpy), float64."""
    p = pred.double().numpy()
    t = target.double().numpy()
    out: dict[str, list[float]] = {"psnr": [], "ssim": [], "mae": [], "l2": []}
    for pi, ti in zip(p, t, strict=True):
        out["psnr"].append(peak_signal_noise_ratio(ti, pi, data_range=1.0))
        ssim = structural_similarity(
            ti,
            pi,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        out["ssim"].append(ssim)
        out["mae"].append(100.0 * np.abs(pi - ti).mean())
        out["l2"].append(((pi - ti) ** 2).mean())
    return {k: np.asarray(v) for k, v in out.items()}


def test_bucket_name_and_hole_ratio() -> None:
    assert [bucket_name(*b) for b in DEFAULT_BUCKETS] == ["10-20", "20-30", "30-40", "40-50"]
    assert bucket_name(0.05, 0.125) == "5-12.5"
    mask = rect_mask(3, 40, 40, [0, 320, 1600])
    assert hole_ratio(mask).tolist() == [0.0, 0.2, 1.0]


def test_per_image_metrics_match_skimage_numpy() -> None:
    pred, target = smooth_images(4, 48, 64, seed=0)
    mask = rect_mask(4, 48, 64, [300, 600, 900, 1200])
    got = per_image_metrics(pred, target, mask)
    ref = reference(pred, target)
    assert set(got) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert got[name].shape == (4,)
    for name in ("psnr", "mae", "l2"):
        np.testing.assert_allclose(got[name].numpy(), ref[name], rtol=EXACT_RTOL)
    np.testing.assert_allclose(got["ssim"].numpy(), ref["ssim"], rtol=0, atol=SSIM_ATOL)


def test_metric_averages_per_image_and_matches_references() -> None:
    pred, target = smooth_images(6, 32, 40, seed=1)
    mask = rect_mask(6, 32, 40, [200] * 6)
    ref = reference(pred, target)
    metric = InpaintMetrics()
    metric.update(pred[:4], target[:4], mask[:4])
    metric.update(pred[4:], target[4:], mask[4:])
    res = metric.compute()
    assert res["count"].item() == 6.0
    for name in ("psnr", "mae", "l2"):
        assert res[name].item() == pytest.approx(ref[name].mean(), rel=EXACT_RTOL)
    assert res["ssim"].item() == pytest.approx(ref["ssim"].mean(), abs=SSIM_ATOL)
    # Mean of per-image PSNR differs from the PSNR of the pooled MSE (images have very different errors).
    pooled = 10 * math.log10(1.0 / ref["l2"].mean())
    assert abs(res["psnr"].item() - pooled) > 0.5


def test_psnr_of_identical_images_is_capped() -> None:
    target, _ = smooth_images(2, 32, 32, seed=2)
    mask = rect_mask(2, 32, 32, [100, 100])
    got = per_image_metrics(target, target.clone(), mask)
    assert got["psnr"].tolist() == [PSNR_MAX, PSNR_MAX]
    assert got["ssim"].numpy() == pytest.approx(1.0, abs=1e-5)
    assert got["mae"].tolist() == [0.0, 0.0] and got["l2"].tolist() == [0.0, 0.0]
    metric = InpaintMetrics()
    metric.update(target, target, mask)
    assert math.isfinite(metric.compute()["psnr"].item())


def test_maem_hand_built() -> None:
    h = w = 16
    target = torch.randint(20, 230, (1, 3, h, w)).float() / 255.0
    mask = torch.zeros(1, 1, h, w)
    mask[..., :8, :] = 1.0  # hole = top half, 128 pixels

    def maem(pred: torch.Tensor, m: torch.Tensor = mask) -> float:
        return per_image_metrics(pred, target, m)["maem"].item()

    assert maem(target.clone()) == 100.0
    pred = target.clone()
    pred[:, 1, :8, :] += 5 / 255  # +5 levels on one channel everywhere in the hole: still matches
    assert maem(pred) == 100.0
    pred = target.clone()
    pred[:, 1, :8, :] -= 5 / 255
    pred[:, 2, :8, :] += 5 / 255  # several channels within tolerance also match
    assert maem(pred) == 100.0
    pred = target.clone()
    pred[:, 0, :2, :] += 6 / 255  # +6 levels on one channel for 2 rows of the hole (32 of 128 pixels)
    assert maem(pred) == pytest.approx(75.0)
    pred = target.clone()
    pred[:, :, 8:, :] = 1.0 - pred[:, :, 8:, :]  # huge errors outside the hole do not count
    assert maem(pred) == 100.0
    assert maem(1.0 - target, torch.zeros_like(mask)) == 100.0  # empty hole
    assert maem(1.0 - target) == 0.0


def test_bucket_assignment_and_empty_buckets_omitted() -> None:
    h = w = 40  # 1600 pixels: ratios below are exact
    ratios = [0.05, 0.1, 0.15, 0.2, 0.35, 0.5]
    pred, target = smooth_images(len(ratios), h, w, seed=3)
    mask = rect_mask(len(ratios), h, w, [round(r * h * w) for r in ratios])
    metric = InpaintMetrics()
    metric.update(pred, target, mask)
    res = metric.compute()
    psnr = per_image_metrics(pred, target, mask)["psnr"].numpy()
    # [lo, hi): 0.1 and 0.15 -> 10-20; 0.2 -> 20-30; 0.35 -> 30-40; 0.05 and 0.5 only in "all".
    assert res["count"].item() == 6.0
    assert res["count@10-20"].item() == 2.0
    assert res["count@20-30"].item() == 1.0
    assert res["count@30-40"].item() == 1.0
    assert not any(key.endswith("@40-50") for key in res)
    assert res["psnr@10-20"].item() == pytest.approx(psnr[1:3].mean(), rel=1e-12)
    assert res["psnr@20-30"].item() == pytest.approx(psnr[3], rel=1e-12)
    expected = {f"{m}{s}" for m in (*METRIC_NAMES, "count") for s in ("", "@10-20", "@20-30", "@30-40")}
    assert set(res) == expected
    assert all(v.dtype == torch.float64 for v in res.values())


def test_reset() -> None:
    pred, target = smooth_images(2, 32, 32, seed=4)
    mask = rect_mask(2, 32, 32, [150, 150])
    metric = InpaintMetrics()
    metric.update(pred, target, mask)
    metric.reset()
    assert metric.sums.abs().sum().item() == 0.0 and metric.counts.sum().item() == 0.0
    metric.update(pred[:1], target[:1], mask[:1])
    res = metric.compute()
    assert res["count"].item() == 1.0
    assert res["psnr"].item() == pytest.approx(per_image_metrics(pred, target, mask)["psnr"][0].item())


def test_states_merge_like_ddp() -> None:
    pred, target = smooth_images(8, 32, 32, seed=5)
    mask = rect_mask(8, 32, 32, [110, 160, 220, 300, 350, 420, 480, 60])
    whole, a, b = InpaintMetrics(), InpaintMetrics(), InpaintMetrics()
    whole.update(pred, target, mask)
    a.update(pred[:3], target[:3], mask[:3])
    b.update(pred[3:], target[3:], mask[3:])
    assert a.sums.dtype == torch.float64 and a.counts.dtype == torch.float64
    np.testing.assert_allclose((a.sums + b.sums).numpy(), whole.sums.numpy(), rtol=1e-12, atol=1e-12)
    assert torch.equal(a.counts + b.counts, whole.counts)
    a.merge_state(b)  # torchmetrics applies the same dist_reduce_fx ("sum") as a DDP sync
    merged, expected = a.compute(), whole.compute()
    assert set(merged) == set(expected)
    for key, value in expected.items():
        assert merged[key].item() == pytest.approx(value.item(), rel=1e-12), key


def test_shape_mismatch_errors() -> None:
    pred, target = smooth_images(2, 32, 32, seed=6)
    mask = rect_mask(2, 32, 32, [10, 10])
    metric = InpaintMetrics()
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\).*\(2, 3, 32, 16\)"):
        metric.update(pred, target[..., :16], mask)
    with pytest.raises(ValueError, match=r"\(2, 1, 16, 32\).*\(2, 3, 32, 32\)"):
        metric.update(pred, target, mask[..., :16, :])
    with pytest.raises(ValueError, match=r"\(1, 1, 32, 32\)"):
        per_image_metrics(pred, target, mask[:1])


def test_ssim_rejects_images_smaller_than_window() -> None:
    x = torch.rand(1, 3, 10, 32)
    with pytest.raises(ValueError, match="10x32"):
        per_image_metrics(x, x, torch.zeros(1, 1, 10, 32))


@pytest.mark.parametrize("bad", [(0.3, 0.2), (0.2, 0.2), (-0.1, 0.2), (0.5, 1.5)])
def test_invalid_buckets(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match=str(bad[0])):
        InpaintMetrics(buckets=((0.1, 0.2), bad))


def test_metrics_table() -> None:
    pred, target = smooth_images(3, 40, 40, seed=7)
    mask = rect_mask(3, 40, 40, [200, 240, 500])  # 12.5 %, 15 %, 31.25 %
    metric = InpaintMetrics()
    metric.update(pred, target, mask)
    results = {f"test/{k}": v.item() for k, v in metric.compute().items()}
    table = metrics_table(results, prefix="test/")
    lines = table.splitlines()
    assert lines[0] == "| bucket | n | PSNR | SSIM | MAE(%) | L2 | MAEM(%) |"
    rows = [line.split("|")[1].strip() for line in lines[2:]]
    assert rows == ["all", "10-20", "30-40"]
    all_row = [cell.strip() for cell in lines[2].split("|")[1:-1]]
    assert all_row[1] == "3"
    assert all_row[2] == f"{results['test/psnr']:.2f}"
    assert all_row[3] == f"{results['test/ssim']:.4f}"

"""Inpainting evaluation metrics (part of :mod:`inpaint.evaluation`): per-image PSNR / SSIM / MAE / L2 / MAEM, overall and per hole ratio.

Conventions: images are float ``[B, 3, H, W]`` in ``[0, 1]``; masks are float ``[B, 1, H, W]`` with
``1 = hole`` (missing) and ``0 = known`` (values ``> 0.5`` count as hole). Metrics are computed on the
*composite* (prediction pasted into the hole) against the ground truth, per image, and then averaged
over images (ISNet's protocol), both over all images and within hole-ratio buckets.

``InpaintMetrics(hole_metrics=True)`` (``eval.hole_metrics=true``) adds the hole-only metrics of the
"Beyond CNNs" CIFAR protocol (spec A2), see :func:`per_image_hole_metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch import Tensor

DEFAULT_BUCKETS: tuple[tuple[float, float], ...] = ((0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5))
METRIC_NAMES = ("psnr", "ssim", "mae", "l2", "maem")
HOLE_METRIC_NAMES = ("mse_hole", "l2_paper", "l2_paper_255", "maem_hole", "maem_channel")
"""Extra metrics of ``hole_metrics=True`` (``eval.hole_metrics=true``), logged after :data:`METRIC_NAMES`."""
PER_IMAGE_FIELD_METRICS = ("lpips_vgg", "lpips_alex")
"""The field's per-image metrics (``eval.metrics=[...]``, :mod:`inpaint.evaluation.field`): averaged like the
others, overall and per bucket."""
SET_METRIC_KEYS = {"fid": ("fid",), "kid": ("kid", "kid_std"), "ids": ("pids", "uids")}
"""The field's set-level metrics (``eval.metrics=[fid,kid,ids]``) and the result keys each writes: computed on
the whole set of Inception features (and on each bucket's), never averaged over images."""
FIELD_METRICS = PER_IMAGE_FIELD_METRICS + tuple(SET_METRIC_KEYS)
SET_KEYS = tuple(k for keys in SET_METRIC_KEYS.values() for k in keys)

PSNR_MAX = 100.0
"""PSNR (dB) reported for identical images (MSE == 0); every PSNR is capped at this value."""

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
"""Gaussian window radius: ``int(3.5 * sigma + 0.5)`` as in skimage/scipy (truncate=3.5), i.e. 11x11."""
SSIM_K1, SSIM_K2 = 0.01, 0.03

MAEM_TOLERANCE = 5
"""Per-channel tolerance, in 0-255 integer levels, for a hole pixel to count as matched in MAEM."""

def bucket_name(lo: float, hi: float) -> str:
    """Name of a hole-ratio bucket in percent, e.g. ``(0.1, 0.2) -> "10-20"``."""
    return f"{100 * lo:g}-{100 * hi:g}"


def _hole(mask: Tensor) -> Tensor:
    """Boolean hole map (``mask > 0.5``) with the mask's shape."""
    return mask > 0.5


def hole_ratio(mask: Tensor) -> Tensor:
    """Fraction of hole pixels per image: ``[B, 1, H, W] -> [B]`` (float64, so bucket edges are exact)."""
    return _hole(mask).flatten(1).to(torch.float64).mean(dim=1)


def _check_shapes(composite: Tensor, target: Tensor, mask: Tensor) -> None:
    """Raise ``ValueError`` naming the shapes unless images are ``[B,C,H,W]`` and the mask ``[B,1,H,W]``."""
    if composite.ndim != 4 or composite.shape != target.shape:
        raise ValueError(
            f"composite and target must both be [B, C, H, W] with equal shapes, "
            f"got composite {tuple(composite.shape)} and target {tuple(target.shape)}"
        )
    b, _, h, w = target.shape
    if mask.shape != (b, 1, h, w):
        raise ValueError(
            f"mask must be [B, 1, H, W] matching the images, "
            f"got mask {tuple(mask.shape)} and images {tuple(target.shape)}"
        )


def ssim_per_image(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM ``[B, C, H, W] -> [B]`` (float32 maths), data range 1, Gaussian 11x11 window, sigma 1.5.

    Only "valid" window positions are used (no padding), which equals skimage's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``
    cropping of the border; the map is averaged over positions and channels.
    """
    b, c, h, w = x.shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        size = 2 * SSIM_RADIUS + 1
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {h}x{w}")
    x, y = x.float(), y.float()
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    g = (g / g.sum()).to(device=x.device, dtype=x.dtype)
    stats = torch.cat([x, y, x * x, y * y, x * y]).reshape(5 * b * c, 1, h, w)
    stats = F.conv2d(stats, g.view(1, 1, 1, -1))
    stats = F.conv2d(stats, g.view(1, 1, -1, 1))
    mu_x, mu_y, xx, yy, xy = stats.reshape(5, b, c, h - 2 * SSIM_RADIUS, w - 2 * SSIM_RADIUS)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    ssim_map = numerator / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def _matched_levels(composite: Tensor, target: Tensor) -> Tensor:
    """Per channel value, ``[B, C, H, W]`` bool: both clamped to [0, 1], scaled by 255 and rounded
    (half-to-even), then ``|difference| <= MAEM_TOLERANCE`` (inclusive)."""

    def to_levels(x: Tensor) -> Tensor:
        return torch.round(x.float().clamp(0.0, 1.0) * 255.0).to(torch.int16)

    return (to_levels(composite) - to_levels(target)).abs() <= MAEM_TOLERANCE


def _percent_in_hole(hits: Tensor, hole: Tensor) -> Tensor:
    """Per image, percent of the hole's elements (pixels, or channel values when ``hits`` has channels)
    that are ``hits``; 100 for an empty hole. ``hits`` ``[B, C, H, W]`` bool, ``hole`` ``[B, 1, H, W]`` bool."""
    hole = hole.expand_as(hits)
    n_hole = hole.flatten(1).sum(dim=1).to(torch.float64)
    n_hits = (hits & hole).flatten(1).sum(dim=1).to(torch.float64)
    return torch.where(n_hole > 0, 100.0 * n_hits / n_hole.clamp(min=1.0), torch.full_like(n_hole, 100.0))


def per_image_metrics(composite: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """Per-image metrics, each a float64 tensor of shape ``[B]``.

    - ``psnr``: ``10 * log10(1 / MSE)`` over all pixels and channels, data range 1, capped at ``PSNR_MAX``.
    - ``ssim``: Gaussian 11x11 window, sigma 1.5, K1=0.01, K2=0.03, data range 1, mean over the valid
      (border-cropped) map and channels; see :func:`ssim_per_image`.
    - ``mae``: mean absolute error over the whole image, x100 (percent).
    - ``l2``: mean squared error over the whole image ([0, 1] scale).
    - ``maem``: percent of hole pixels whose channels all lie within ``MAEM_TOLERANCE`` on the 0-255
      integer scale (values clamped to [0, 1], scaled by 255, rounded half-to-even); 100 for an empty hole.
    """
    _check_shapes(composite, target, mask)
    composite = composite.detach()
    target = target.detach()
    diff = composite.to(torch.float64) - target.to(torch.float64)
    mse = diff.square().mean(dim=(1, 2, 3))
    mae = diff.abs().mean(dim=(1, 2, 3))
    psnr = (10.0 * torch.log10(1.0 / mse)).clamp(max=PSNR_MAX)  # mse == 0 -> inf -> PSNR_MAX
    ssim = ssim_per_image(composite, target)
    maem = _percent_in_hole(_matched_levels(composite, target).all(dim=1, keepdim=True), _hole(mask))

    return {
        "psnr": psnr,
        "ssim": ssim.to(torch.float64),
        "mae": 100.0 * mae,
        "l2": mse,
        "maem": maem,
    }


def per_image_hole_metrics(composite: Tensor, target: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """The "Beyond CNNs" hole metrics (spec A2) per image, each a float64 tensor of shape ``[B]``.

    Only hole pixels (``mask > 0.5``) count; with the composite, the known pixels would match trivially.
    ``n`` below is the image's number of hole pixels (64 for ``mask=cifar_center``), ``C = 3`` channels.

    - ``mse_hole``: mean of ``(composite - target)^2`` over the ``n * C`` hole elements, [0, 1] values.
    - ``l2_paper``: the paper's ``(1/n) * sum over the hole x channels of (composite - target)^2`` (its
      ``1/n^2`` with an ``n x n`` hole), [0, 1] values: ``C * mse_hole``, range [0, 3].
    - ``l2_paper_255``: the same on 0-255 values (scaled by 255, not rounded): ``65025 * l2_paper``.
    - ``maem_hole``: percent of hole pixels whose channels all lie within ``MAEM_TOLERANCE`` on the 0-255
      integer scale (clamped to [0, 1], x255, rounded; the bound is inclusive). This is exactly
      :func:`per_image_metrics`' ``maem``, which is already restricted to the hole; it is logged under the
      paper's name next to the others. (A MAEM over the whole composite would be
      ``100 * (1 - r) + r * maem_hole`` for hole ratio ``r``.)
    - ``maem_channel``: the same test counted per channel value (``n * C`` of them).

    An image with an empty hole scores 0 error and 100 % matched.
    """
    _check_shapes(composite, target, mask)
    hole = _hole(mask)
    diff = composite.detach().to(torch.float64) - target.detach().to(torch.float64)
    sq_sum = (diff.square() * hole).flatten(1).sum(dim=1)
    n_hole = hole.flatten(1).sum(dim=1).to(torch.float64).clamp(min=1.0)  # empty hole: sums are 0 -> 0
    l2_paper = sq_sum / n_hole
    matched = _matched_levels(composite, target)
    return {
        "mse_hole": l2_paper / diff.shape[1],
        "l2_paper": l2_paper,
        "l2_paper_255": 255.0**2 * l2_paper,
        "maem_hole": _percent_in_hole(matched.all(dim=1, keepdim=True), hole),
        "maem_channel": _percent_in_hole(matched, hole),
    }


def _validate_buckets(buckets: Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """Return buckets as float pairs; raise ``ValueError`` naming the first invalid or duplicate one."""
    out: list[tuple[float, float]] = []
    for bucket in buckets:
        try:
            lo, hi = (float(v) for v in bucket)
        except (TypeError, ValueError):
            raise ValueError(f"bucket {bucket!r} must be a pair (lo, hi) of numbers") from None
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"bucket {bucket!r} is invalid: need 0 <= lo < hi <= 1")
        if any(bucket_name(lo, hi) == bucket_name(*b) for b in out):
            raise ValueError(f"bucket {bucket!r} is duplicated")
        out.append((lo, hi))
    return tuple(out)


class InpaintMetrics(torchmetrics.Metric):
    """Accumulates per-image inpainting metrics, averaged over images, overall and per hole-ratio bucket.

    States are sums (``sums[k, m]``, float64) and image counts (``counts[k]``) where row 0 is "all images"
    and row ``1 + i`` is bucket ``i``; both reduce with ``sum`` so DDP synchronisation is exact. Buckets are
    half-open ``[lo, hi)`` on :func:`hole_ratio`; they may overlap or leave gaps. ``hole_metrics=True``
    adds the columns :data:`HOLE_METRIC_NAMES` (:func:`per_image_hole_metrics`); ``scorers`` (name ->
    ``fn(composite, target, mask) -> [B]``, e.g. LPIPS) adds one column each, after them; :attr:`names` lists them.
    A scorer is kept out of the module tree (not a child, so its network is in no state dict).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    sums: Tensor
    counts: Tensor

    def __init__(
        self, buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS, hole_metrics: bool = False,
        scorers: Mapping[str, Callable[[Tensor, Tensor, Tensor], Tensor]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.buckets = _validate_buckets(buckets)
        self.hole_metrics = bool(hole_metrics)
        self._scorers = dict(scorers or {})  # functions, not modules: nothing of theirs is in a state dict
        self.names: tuple[str, ...] = (METRIC_NAMES + (HOLE_METRIC_NAMES if self.hole_metrics else ())
                                       + tuple(self._scorers))
        n_rows = len(self.buckets) + 1
        sums = torch.zeros(n_rows, len(self.names), dtype=torch.float64)
        self.add_state("sums", sums, dist_reduce_fx="sum")
        self.add_state("counts", torch.zeros(n_rows, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, composite: Tensor, target: Tensor, mask: Tensor) -> None:  # type: ignore[override]
        """Add a batch of composites, ground truths and masks (see module docstring for shapes)."""
        values = per_image_metrics(composite, target, mask)
        if self.hole_metrics:
            values.update(per_image_hole_metrics(composite, target, mask))
        for name, scorer in self._scorers.items():
            values[name] = scorer(composite, target, mask).detach().to(torch.float64).reshape(-1)
        stacked = torch.stack([values[name] for name in self.names], dim=1).to(self.sums.device)  # [B, M]
        ratio = hole_ratio(mask).to(self.sums.device)
        columns = [torch.ones_like(ratio)]
        columns += [((ratio >= lo) & (ratio < hi)).to(torch.float64) for lo, hi in self.buckets]
        membership = torch.stack(columns, dim=1)  # [B, n_rows]
        self.sums += membership.T @ stacked
        self.counts += membership.sum(dim=0)

    def compute(self) -> dict[str, Tensor]:
        """Mean of each metric plus ``count`` (float): plain keys for all images (NaN means if none),
        ``"<name>@<lo>-<hi>"`` per bucket; buckets without images are omitted."""
        means = self.sums / self.counts.unsqueeze(1)  # 0/0 -> NaN for "all" when nothing was seen
        counts = self.counts.tolist()  # one host sync, needed to decide which buckets to omit
        out: dict[str, Tensor] = {}
        suffixes = [""] + [f"@{bucket_name(lo, hi)}" for lo, hi in self.buckets]
        for row, suffix in enumerate(suffixes):
            if row > 0 and counts[row] == 0:
                continue
            for m, name in enumerate(self.names):
                out[name + suffix] = means[row, m]
            out["count" + suffix] = self.counts[row]
        return out


def reported_metrics(results: Mapping[str, Any], prefix: str = "") -> tuple[str, ...]:
    """The table columns for ``results``: :data:`METRIC_NAMES`, plus :data:`HOLE_METRIC_NAMES` when any of
    them is in ``results`` (under ``prefix``, overall or for a bucket), plus each field metric present
    (:data:`PER_IMAGE_FIELD_METRICS`, :data:`SET_KEYS`)."""
    present = {key.split("@", 1)[0] for key in results}
    hole = any(f"{prefix}{name}" in present for name in HOLE_METRIC_NAMES)
    field = tuple(n for n in PER_IMAGE_FIELD_METRICS + SET_KEYS if f"{prefix}{n}" in present)
    return METRIC_NAMES + (HOLE_METRIC_NAMES if hole else ()) + field

"""The evaluator: what validation, test and ``inpaint.evaluate score`` use to turn fills into numbers.

One :class:`Evaluator` per stage holds:

- the main score set: :class:`~inpaint.evaluation.metrics.InpaintMetrics` (PSNR, SSIM, MAE, L2, MAEM, the
  hole metrics when asked, LPIPS when chosen) per image, averaged overall and per hole-ratio bucket, and the
  set-level metrics (:class:`~inpaint.evaluation.field.FeatureSets`: FID, KID, P/U-IDS) when chosen;
- a score set per *variant*: an inference procedure scored side by side (``eval.compare``) or an extra image a
  model declares (mGANprior's raw output before paste-back), keys ``<stage>/<variant>/<metric>``;
- the model's own terms (:class:`EvalTerms`, e.g. a density model's NLL, the context encoder's
  reconstruction loss), weighted means, keys ``<stage>/<name>``;
- samples a model keeps for a number over the whole set (a generative prior's real images for its sliced
  Wasserstein distance), gathered from every process, each sample once, in index order, and handed to the
  model's summary at the end of the stage;
- the fill time per image.

Every state reduces by sum or concatenation, so DDP results equal one process's. What is scored is set by an
:class:`EvalSpec` (``eval.*`` of the config, or the options of ``inpaint.evaluate score``), which also gives the
metric part of the protocol fingerprint. A model contributes through one hook,
:meth:`inpaint.models.base.InpaintModule.evaluation_terms` (per batch), with
:meth:`~inpaint.models.base.InpaintModule.evaluation_summary` turning its kept samples into numbers at the end,
and never overrides evaluation itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.utilities import dim_zero_cat

from inpaint.evaluation.field import FeatureSets, check_feature_weights, check_metric_names, lpips_scorer
from inpaint.evaluation.metrics import (
    DEFAULT_BUCKETS,
    PER_IMAGE_FIELD_METRICS,
    SET_KEYS,
    SET_METRIC_KEYS,
    InpaintMetrics,
)


@dataclass(frozen=True)
class EvalSpec:
    """What is scored: buckets, the hole metrics, the field metrics and their options.

    ``metrics``: field metrics (``lpips_vgg``, ``lpips_alex``, ``fid``, ``kid``, ``ids``) scored next to the
    standard ones; ``feature_weights``: ``pretrained`` or ``random`` (see :mod:`inpaint.evaluation.field`);
    ``kid_subsets`` / ``kid_subset_size``: KID's subsets (a set smaller than the size uses all its images)."""

    buckets: tuple[tuple[float, float], ...] = DEFAULT_BUCKETS
    hole_metrics: bool = False
    metrics: tuple[str, ...] = ()
    feature_weights: str = "pretrained"
    kid_subsets: int = 100
    kid_subset_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "buckets", tuple((float(lo), float(hi)) for lo, hi in self.buckets))
        object.__setattr__(self, "metrics", check_metric_names(self.metrics))
        check_feature_weights(self.feature_weights)
        if self.kid_subsets < 1 or self.kid_subset_size < 2:
            raise ValueError(f"eval.kid_subsets must be >= 1 and eval.kid_subset_size >= 2, got "
                             f"{self.kid_subsets} and {self.kid_subset_size}")

    @classmethod
    def from_config(cls, eval_cfg: Mapping[str, Any]) -> EvalSpec:
        """The spec of a run's ``eval`` node."""
        return cls(
            buckets=tuple(tuple(b) for b in eval_cfg.get("buckets", DEFAULT_BUCKETS)),
            hole_metrics=bool(eval_cfg.get("hole_metrics", False)),
            metrics=tuple(eval_cfg.get("metrics") or ()),
            feature_weights=str(eval_cfg.get("feature_weights", "pretrained")),
            kid_subsets=int(eval_cfg.get("kid_subsets", 100)),
            kid_subset_size=int(eval_cfg.get("kid_subset_size", 1000)),
        )

    @property
    def random_weights(self) -> bool:
        return bool(self.metrics) and self.feature_weights == "random"

    def field_options(self) -> dict[str, Any] | None:
        """The field metrics' part of the protocol (None when none is chosen, which keeps older fingerprints)."""
        if not self.metrics:
            return None
        options: dict[str, Any] = {"metrics": list(self.metrics), "weights": self.feature_weights}
        if "kid" in self.metrics:
            options["kid"] = {"subsets": self.kid_subsets, "subset_size": self.kid_subset_size, "seed": 2020,
                              "degree": 3, "coef0": 1.0}
        return options


@dataclass
class EvalTerms:
    """What a model adds to a batch's evaluation (:meth:`InpaintModule.evaluation_terms`).

    ``scalars``: ``name -> (value, weight)``, averaged with the weights over the stage (``<stage>/<name>``);
    ``images``: ``variant -> image`` ``[B,3,H,W]`` scored against the ground truth like the composite
    (``<stage>/<variant>/<metric>``); ``samples``: ``name -> [B, ...]`` tensors (the batch's samples, or its
    first ``k``) kept for :meth:`InpaintModule.evaluation_summary`."""

    scalars: dict[str, tuple[Tensor | float, float]] = field(default_factory=dict)
    images: dict[str, Tensor] = field(default_factory=dict)
    samples: dict[str, Tensor] = field(default_factory=dict)


class IndexedSamples(Metric):
    """Per-sample tensors with their dataset index; :meth:`compute` returns them from every process, each
    index once, sorted by index (so a DDP run sees what one process sees)."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("values", [], dist_reduce_fx="cat")
        self.add_state("index", [], dist_reduce_fx="cat")

    def update(self, values: Tensor, index: Tensor) -> None:  # type: ignore[override]
        self.values.append(values.detach())
        self.index.append(index.detach().to(device=values.device, dtype=torch.int64).reshape(-1))

    def compute(self) -> Tensor:
        values, index = dim_zero_cat(self.values), dim_zero_cat(self.index)
        order = torch.argsort(index, stable=True)
        index, values = index[order], values[order]
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return values[first]


class ScoreSet(nn.Module):
    """The per-image metrics and (when chosen) the set-level ones of one stream of images."""

    def __init__(self, spec: EvalSpec) -> None:
        super().__init__()
        scorers = {n: lpips_scorer(n, spec.feature_weights) for n in spec.metrics if n in PER_IMAGE_FIELD_METRICS}
        self.per_image = InpaintMetrics(spec.buckets, hole_metrics=spec.hole_metrics, scorers=scorers)
        set_metrics = [n for n in spec.metrics if n in SET_METRIC_KEYS]
        self.sets = (FeatureSets(set_metrics, spec.buckets, spec.feature_weights, spec.kid_subsets,
                                 spec.kid_subset_size) if set_metrics else None)

    def update(self, composite: Tensor, target: Tensor, mask: Tensor, index: Tensor | None) -> None:
        composite, target, mask = composite.float(), target.float(), mask.float()
        self.per_image.update(composite, target, mask)
        if self.sets is not None:
            self.sets.update(composite, target, mask, index)

    @property
    def seen(self) -> bool:
        return bool(self.per_image.update_count)

    def compute(self) -> dict[str, Tensor]:
        out = dict(self.per_image.compute())
        if self.sets is not None:
            out.update(self.sets.compute())
        return out

    def reset(self) -> None:
        self.per_image.reset()
        if self.sets is not None:
            self.sets.reset()


class Evaluator(nn.Module):
    """One stage's scoring (see the module docstring). Its states are metric states: not in checkpoints."""

    def __init__(self, spec: EvalSpec | None = None) -> None:
        super().__init__()
        self.spec = spec or EvalSpec()
        self.main = ScoreSet(self.spec)
        self.variants = nn.ModuleDict()
        self.terms = nn.ModuleDict()
        self.samples = nn.ModuleDict()
        self.fill_time = MeanMetric()

    @property
    def buckets(self) -> tuple[tuple[float, float], ...]:
        return self.spec.buckets

    def _variant(self, name: str) -> ScoreSet:
        if name not in self.variants:
            self.variants[name] = ScoreSet(self.spec).to(self.fill_time.device)
        return self.variants[name]

    def update(self, composite: Tensor, target: Tensor, mask: Tensor, index: Tensor | None = None,
               variant: str | None = None) -> None:
        """Score a batch of composites (``variant``: under ``<stage>/<variant>/``)."""
        (self.main if not variant else self._variant(variant)).update(composite, target, mask, index)

    def add_terms(self, terms: EvalTerms | None, target: Tensor, mask: Tensor, index: Tensor | None) -> None:
        """Add a model's :class:`EvalTerms` for a batch."""
        if terms is None:
            return
        for name, (value, weight) in terms.scalars.items():
            if name not in self.terms:
                self.terms[name] = MeanMetric().to(self.fill_time.device)
            if float(weight) > 0:
                self.terms[name].update(torch.as_tensor(value, dtype=torch.float32).detach(), weight=float(weight))
        for name, image in terms.images.items():
            self.update(image.detach(), target, mask, index, variant=name)
        for name, values in terms.samples.items():
            if name not in self.samples:
                self.samples[name] = IndexedSamples().to(self.fill_time.device)
            ids = index if index is not None else torch.arange(values.shape[0])
            self.samples[name].update(values, ids[: values.shape[0]])

    def add_time(self, seconds: float, n: int) -> None:
        self.fill_time.update(seconds / n, weight=n)

    def compute(self, stage: str, summarize: Callable[[dict[str, Tensor]], Mapping[str, float]] | None = None
                ) -> tuple[dict[str, float], float | None]:
        """``({<stage>/<key>: value}, seconds per image or None)``; variants and terms that saw nothing are left
        out. ``summarize`` (the model's summary) turns the kept samples into ``<stage>/<key>`` numbers. Call
        :meth:`reset` after."""
        results = {f"{stage}/{k}": float(v) for k, v in self.main.compute().items()} if self.main.seen else {}
        for name, scores in self.variants.items():
            if scores.seen:
                results.update({f"{stage}/{name}/{k}": float(v) for k, v in scores.compute().items()})
        for name, metric in self.terms.items():
            if metric.update_count:
                results[f"{stage}/{name}"] = float(metric.compute())
        kept = {name: metric.compute() for name, metric in self.samples.items() if metric.update_count}
        if summarize is not None and kept:
            results.update({f"{stage}/{k}": float(v) for k, v in summarize(kept).items()})
        seconds = float(self.fill_time.compute()) if self.fill_time.update_count else None
        return results, seconds

    def reset(self) -> None:
        self.main.reset()
        for scores in self.variants.values():
            scores.reset()
        for metric in [*self.terms.values(), *self.samples.values()]:
            metric.reset()
        self.fill_time.reset()


def merge_bucket_runs(runs: Sequence[tuple[str, Mapping[str, float]]], prefix: str = "test/") -> dict[str, float]:
    """One result from one run per hole-ratio bucket (``eval.per_bucket=true``, and its offline twin).

    Bucket ``name``'s overall numbers become ``<prefix><metric>@<name>`` (and ``count@<name>``); the plain keys
    are the image-weighted mean over the bucket runs of every per-image metric. A set-level metric (FID, KID,
    P/U-IDS) is not a mean over images, so it is reported per bucket only."""
    merged: dict[str, float] = {}
    totals: dict[str, float] = {}
    n_total = 0.0
    for name, res in runs:
        n = float(res.get(f"{prefix}count", 0.0))
        for key, value in res.items():
            if "@" in key:  # the run's own ratio grouping: superseded by the bucket it was restricted to
                continue
            merged[f"{key}@{name}"] = value
            if key != f"{prefix}count" and n > 0 and key.rsplit("/", 1)[-1] not in SET_KEYS:
                totals[key] = totals.get(key, 0.0) + value * n
        n_total += n
    merged.update({k: v / n_total for k, v in totals.items()} if n_total else {})
    merged[f"{prefix}count"] = n_total
    return merged

"""The field's metrics (part of :mod:`inpaint.evaluation`): LPIPS per image; FID, KID and P-IDS / U-IDS over
the whole set of Inception features. Chosen with ``eval.metrics=[lpips_vgg, lpips_alex, fid, kid, ids]``
online (validation and test of ``inpaint.run``) and ``--metrics`` offline (``inpaint.evaluate score``).

- LPIPS v0.1 (Zhang et al. 2018) with the VGG16 or AlexNet backbone and the published linear layers
  (:class:`inpaint.nets.lpips.LPIPS`), composite against ground truth, per image, averaged like PSNR.
- FID and KID as TF-FID computes them (:class:`inpaint.nets.inception.FIDInceptionV3`: 8-bit levels, TF1
  bilinear resize to 299, the 2015-12-05 Inception's pool3 features), ground truths as the real set and
  composites as the fake set (the paired protocol of LaMa, CoModGAN and MAT); :mod:`inpaint.evaluation.distances`.
- P-IDS / U-IDS (Zhao et al. 2021, CoModGAN): a linear SVM between the real and the filled features.

The set metrics keep every sample's features with its dataset index (:class:`FeatureSets`); at compute the
features of all processes are gathered, duplicates (a DDP sampler pads shards by repeating samples) dropped by
index and the rest sorted by index, so a 2-process ``ddp_cpu`` run computes on exactly the same matrix as one
process. They are computed overall and per hole-ratio bucket (where a bucket has at least two images).

Weights: ``pretrained`` (the default) loads the published files through :mod:`inpaint.weights` (a missing file
is an error naming it and where to get it); ``random`` builds the networks from a fixed seed, for tests and for
machines without the files. A card with random weights says so (``random_feature_weights``): its numbers test
the machinery and are never FIDs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torchmetrics
from torch import Tensor, nn
from torchmetrics.utilities import dim_zero_cat

from inpaint.evaluation import distances
from inpaint.evaluation.metrics import (
    FIELD_METRICS,
    PER_IMAGE_FIELD_METRICS,
    SET_METRIC_KEYS,
    bucket_name,
    hole_ratio,
)

log = logging.getLogger(__name__)

FEATURE_WEIGHTS = ("pretrained", "random")
#: the seed the ``random`` networks are built from: every process and every run gets the same networks
RANDOM_WEIGHTS_SEED = 0
#: images per forward pass of a feature network (the update's batch is split into chunks of this size): on a
#: 2-core CPU, 16 ran as fast as 1 and 64 at 0.68-0.79x (experiments/results/fid_speed.md); larger chunks only
#: cost memory
FEATURE_BATCH = 16

_NETS: dict[tuple[str, str, str], nn.Module] = {}


def check_metric_names(names: Sequence[str], option: str = "eval.metrics") -> tuple[str, ...]:
    """The chosen field metrics, validated and in canonical order; an unknown name is refused naming it."""
    names = [str(n) for n in names]
    unknown = [n for n in names if n not in FIELD_METRICS]
    if unknown:
        raise ValueError(f"{option}: unknown metric(s) {unknown}; the field's metrics are {', '.join(FIELD_METRICS)} "
                         "(PSNR, SSIM, MAE, L2 and MAEM are always scored; eval.hole_metrics=true adds the hole metrics)")
    return tuple(n for n in FIELD_METRICS if n in names)


def check_feature_weights(weights: str, option: str = "eval.feature_weights") -> str:
    if weights not in FEATURE_WEIGHTS:
        raise ValueError(f"{option}={weights!r} is not one of {', '.join(FEATURE_WEIGHTS)}")
    return weights


def feature_network(kind: str, weights: str, device: torch.device | str = "cpu") -> nn.Module:
    """The frozen network of a field metric (``lpips_vgg``, ``lpips_alex`` or ``inception``), built once per
    process and device; ``weights`` is ``pretrained`` or ``random`` (seeded by :data:`RANDOM_WEIGHTS_SEED`)."""
    device = torch.device(device)
    key = (kind, weights, str(device))
    if key not in _NETS:
        cpu_key = (kind, weights, "cpu")
        if cpu_key not in _NETS:
            _NETS[cpu_key] = _build(kind, weights)
        # Module.to moves in place: a device gets its own copy, the CPU one stays on the CPU
        _NETS[key] = copy.deepcopy(_NETS[cpu_key]).to(device) if device.type != "cpu" else _NETS[cpu_key]
    return _NETS[key]


def _build(kind: str, weights: str) -> nn.Module:
    from inpaint.nets.inception import FIDInceptionV3
    from inpaint.nets.lpips import LPIPS

    hint = "eval.feature_weights=random (numbers then test the machinery only), or leave the metric out of eval.metrics"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        if kind == "inception":
            net = FIDInceptionV3(weights="fid_inception" if weights == "pretrained" else "random", offline_hint=hint)
            if weights == "random":
                # PyTorch's default init shrinks the signal at every one of the 94 layers (pool3 features ~1e-8,
                # every FID ~0); He init keeps it, so random features still tell images apart
                for module in net.modules():
                    if isinstance(module, nn.Conv2d):
                        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif kind in ("lpips_vgg", "lpips_alex"):
            pretrained = weights == "pretrained"
            net = LPIPS(net=kind.split("_")[1], backbone="imagenet" if pretrained else "random",
                        lin="v0.1" if pretrained else "random")
        else:  # pragma: no cover - guarded by check_metric_names
            raise ValueError(f"no feature network {kind!r}")
    return net.eval()


def _chunks(n: int) -> list[slice]:
    return [slice(i, min(i + FEATURE_BATCH, n)) for i in range(0, n, FEATURE_BATCH)]


def lpips_scorer(name: str, weights: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """``fn(composite, target, mask) -> [B]``: the per-image LPIPS of ``name`` (``lpips_vgg``/``lpips_alex``)."""
    if name not in PER_IMAGE_FIELD_METRICS:
        raise ValueError(f"{name!r} is not a per-image field metric ({', '.join(PER_IMAGE_FIELD_METRICS)})")

    def score(composite: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        net = feature_network(name, weights, composite.device)
        with torch.no_grad():
            return torch.cat([net(composite[s].float(), target[s].float()).reshape(-1) for s in
                              _chunks(composite.shape[0])])

    return score


class FeatureSets(torchmetrics.Metric):
    """The Inception features of every real (ground truth) and fake (composite) image, with each sample's
    index and hole ratio, for FID / KID / P-IDS / U-IDS (see the module docstring)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(self, metrics: Sequence[str], buckets: Sequence[Sequence[float]], weights: str = "pretrained",
                 kid_subsets: int = 100, kid_subset_size: int = 1000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = tuple(m for m in metrics if m in SET_METRIC_KEYS)
        if not self.metrics:
            raise ValueError(f"FeatureSets needs one of {', '.join(SET_METRIC_KEYS)}, got {list(metrics)}")
        self.buckets = tuple((float(lo), float(hi)) for lo, hi in buckets)
        self.weights = check_feature_weights(weights)
        self.kid_subsets, self.kid_subset_size = int(kid_subsets), int(kid_subset_size)
        for name in ("real", "fake", "index", "ratio"):
            self.add_state(name, [], dist_reduce_fx="cat")
        self._seen = 0  # indices for batches that carry none (a caller without a dataset index)

    def update(self, composite: Tensor, target: Tensor, mask: Tensor, index: Tensor | None = None) -> None:  # type: ignore[override]
        n = composite.shape[0]
        if index is None:
            index = torch.arange(self._seen, self._seen + n)
        self._seen += n
        net = feature_network("inception", self.weights, composite.device)
        with torch.no_grad():
            for s in _chunks(n):
                self.real.append(net(target[s].float()).to(torch.float64))
                self.fake.append(net(composite[s].float()).to(torch.float64))
        self.index.append(index.detach().to(device=composite.device, dtype=torch.int64).reshape(-1))
        self.ratio.append(hole_ratio(mask).to(composite.device))

    def compute(self) -> dict[str, Tensor]:
        """``fid``, ``kid`` (``kid_std``), ``pids`` / ``uids`` overall and ``@<bucket>`` (float64 tensors)."""
        if isinstance(self.index, list) and not self.index:  # a list before a DDP sync, one tensor after it
            return {}
        index = dim_zero_cat(self.index).cpu().numpy()
        _, first = np.unique(index, return_index=True)  # sorted by index, each sample once
        real = dim_zero_cat(self.real).cpu().numpy()[first]
        fake = dim_zero_cat(self.fake).cpu().numpy()[first]
        ratio = dim_zero_cat(self.ratio).cpu().numpy()[first]
        out: dict[str, Tensor] = {}
        rows = [("", np.ones(len(first), dtype=bool))]
        rows += [(f"@{bucket_name(lo, hi)}", (ratio >= lo) & (ratio < hi)) for lo, hi in self.buckets]
        for suffix, keep in rows:
            if keep.sum() < 2:  # a covariance, an unbiased MMD and a two-class SVM need two samples each
                continue
            for key, value in self.scores(real[keep], fake[keep]).items():
                out[key + suffix] = torch.tensor(value, dtype=torch.float64)
        return out

    def scores(self, real: np.ndarray, fake: np.ndarray) -> dict[str, float]:
        out: dict[str, float] = {}
        if "fid" in self.metrics:
            out["fid"] = distances.fid_from_features(real, fake)
        if "kid" in self.metrics:
            kid = distances.kid_from_features(real, fake, subsets=self.kid_subsets, subset_size=self.kid_subset_size)
            out["kid"], out["kid_std"] = float(kid["mean"]), float(kid["std"])
        if "ids" in self.metrics:
            ids = distances.ids_from_features(real, fake)
            out["pids"], out["uids"] = float(ids["pids"]), float(ids["uids"])
        return out

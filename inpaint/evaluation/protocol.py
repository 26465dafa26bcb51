"""The evaluation protocol and its fingerprint (part of :mod:`inpaint.evaluation`).

The protocol is what a test's numbers depend on besides the method: the test images actually evaluated
(count and an order-independent hash of each sample's uint8 image), the evaluation masks actually used
(the same hash of each binary mask), the image size, the mask config (the ``mask`` choice and its options,
paths left out) and the metric options (``eval.buckets``, ``eval.per_bucket``, ``eval.hole_metrics``, the
metric definitions' constants and, when any is chosen, the field metrics' options). Its fingerprint, a short
sha256 over the canonical JSON, groups runs on the leaderboard: two runs rank together only when they were
scored on the same images, masks and metric definitions, whether they ran inside ``inpaint.run`` or were
scored offline by ``inpaint.evaluate score``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from inpaint.evaluation import metrics as M

#: per-sample digests are summed modulo this (62 bits: a DDP all-gather of the sums fits int64)
DIGEST_MOD = 1 << 62
#: override keys that name files or folders (they differ between machines, not between methods)
PATH_KEYS = ("root", "dir", "path", "file", "ckpt_path", "init_from", "resume", "save_dir")
PATH_PREFIXES = ("hydra.", "paths.", "hydra/")


def sample_digest_sum(values: Tensor) -> int:
    """Sum (mod :data:`DIGEST_MOD`) of a digest of each sample of ``values`` ``[B, ...]`` (integer-valued:
    uint8 levels, a boolean mask), hashed with its shape, so the same samples give the same sum in any order."""
    q = values.to(torch.uint8).contiguous().cpu().numpy()
    total = 0
    for sample in q:
        h = hashlib.sha256(repr(sample.shape).encode() + sample.tobytes()).digest()
        total += int.from_bytes(h[:8], "little") % DIGEST_MOD
    return total % DIGEST_MOD


def image_levels(image: Tensor) -> Tensor:
    """What the image digest hashes: ``[0, 1]`` values as rounded 8-bit levels."""
    return image.detach().float().clamp(0.0, 1.0).mul(255.0).round()


class DigestAccumulator:
    """The order-independent digest of a test set: add batches, read ``(images, masks, count)`` sums."""

    def __init__(self) -> None:
        self.sums = [0, 0, 0]

    def add(self, image: Tensor, mask: Tensor | None) -> None:
        self.sums[0] += sample_digest_sum(image_levels(image))
        if mask is not None:
            self.sums[1] += sample_digest_sum(mask.detach() > 0.5)
        self.sums[2] += int(image.shape[0])

    def reset(self) -> None:
        self.sums = [0, 0, 0]

    @staticmethod
    def finish(rows: Sequence[Sequence[int]]) -> dict[str, Any]:
        """The digest of one or more processes' sums (rows of ``[images, masks, count]``)."""
        images, masks, count = (sum(int(r[i]) for r in rows) % DIGEST_MOD for i in range(3))
        return {"count": int(count), "images": f"{images:016x}", "masks": f"{masks:016x}"}


def fingerprint_of(protocol: Mapping[str, Any]) -> str:
    """Short sha256 over the protocol's canonical JSON."""
    return hashlib.sha256(json.dumps(protocol, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def combine_digests(per_bucket: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One digest for the test runs of ``eval.per_bucket`` (in bucket order), each bucket's kept too."""
    joined = json.dumps(list(per_bucket.items()), sort_keys=True)
    images = {(d.get("count"), d.get("images")) for d in per_bucket.values()}
    if len(images) == 1:  # the usual case: every bucket's run saw the same images (with other masks)
        count, image_hash = images.pop()
    else:
        count = sum(int(d.get("count", 0)) for d in per_bucket.values())
        image_hash = hashlib.sha256(("images" + joined).encode()).hexdigest()[:16]
    return {
        "count": count,
        "images": image_hash,
        "masks": hashlib.sha256(("masks" + joined).encode()).hexdigest()[:16],
        "buckets": {k: dict(v) for k, v in per_bucket.items()},
    }


def is_path_key(key: str) -> bool:
    key = key.lstrip("+~")
    last = key.rsplit(".", 1)[-1]
    return key.startswith(PATH_PREFIXES) or last in PATH_KEYS or last.endswith(tuple(f"_{k}" for k in PATH_KEYS))


def without_paths(node: Any) -> Any:
    """A config mapping without path-like keys (recursively)."""
    if isinstance(node, Mapping):
        return {k: without_paths(v) for k, v in sorted(node.items()) if not is_path_key(str(k))}
    if isinstance(node, (list, tuple)):
        return [without_paths(v) for v in node]
    return node


def metric_options(buckets: Sequence[Sequence[float]], per_bucket: bool, hole_metrics: bool,
                   field: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metric part of the protocol. ``field`` (the field metrics' options, :meth:`EvalSpec.field_options`)
    is only written when a field metric is chosen, so the fingerprints of runs without one stay as they were."""
    options: dict[str, Any] = {
        "buckets": [[float(x) for x in b] for b in buckets],
        "per_bucket": bool(per_bucket),
        "hole_metrics": bool(hole_metrics),
        "definitions": {"psnr_max": M.PSNR_MAX, "ssim_sigma": M.SSIM_SIGMA, "ssim_radius": M.SSIM_RADIUS,
                        "ssim_k": [M.SSIM_K1, M.SSIM_K2], "maem_tolerance": M.MAEM_TOLERANCE},
    }
    if field:
        options["field"] = dict(field)
    return options


def build_protocol(digest: Mapping[str, Any], image_size: Any, mask_name: str, mask_config: Mapping[str, Any],
                   options: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol dict of the module docstring, from its parts."""
    return {
        "images": {"count": int(digest.get("count", 0)), "hash": digest.get("images")},
        "masks": {"hash": digest.get("masks")},
        **({"bucket_digests": digest["buckets"]} if "buckets" in digest else {}),
        "image_size": image_size,
        "mask": {"name": mask_name, "config": without_paths(dict(mask_config))},
        "metric_options": dict(options),
    }

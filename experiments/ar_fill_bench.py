"""Fill time of the density models: each net's fast fill against the naive one, side by side.

For every ``model=`` of the density family (``pixelcnn``, ``row_lstm``, ``diag_bilstm``, ``flat_row_lstm``, at the
sizes of their configs), on a batch of 32x32 images (64 by default) and two kinds of holes:

* ``center``: the CIFAR 8x8 centre hole (rows/cols 12..19: 64 pixels, 192 sub-pixels per image);
* ``nvidia``: NVIDIA irregular test masks with 10-20 % holes, one per image (``--nvidia-root``); without the mask
  files, free-form strokes of 10-20 % (the JSON says which).

it times

* ``fast``: the net's own ``fill`` (what ``inpaint`` runs), the median of ``--repeats`` runs;
* ``naive``: :func:`inpaint.nets.autoregressive.naive_fill`, one full forward of the whole batch per generated
  sub-pixel. Every naive step does the same work (a full forward), so the naive procedure is timed on the first
  ``--naive-pixels`` hole pixels (3 sub-pixels each) and scaled to the number of pixels that are a hole in any image
  of the batch (the steps it would take); ``--naive-pixels 0`` runs it to the end. On the timed pixels the two
  fills are checked to choose the same values (argmax decoding).

The weights are random (the work of a fill does not depend on their values). The JSON maps each model to
``{mask kind: {"fast_s_per_image", "naive_s_per_image", "speedup", ...}}``.

  python experiments/ar_fill_bench.py --json experiments/results/ar_fill_bench_cpu.json \
      --nvidia-root data/nvidia-irregular-masks-test/testing_mask_dataset
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import sync, write_json  # noqa: E402

from inpaint.cli import CONF_DIR  # noqa: E402
from inpaint.data.masks import FreeFormMask  # noqa: E402
from inpaint.models.density import build_density_net  # noqa: E402
from inpaint.nets.autoregressive import Decoder, hole_pixels, naive_fill, quantize  # noqa: E402

MODELS = ("pixelcnn", "row_lstm", "diag_bilstm", "flat_row_lstm")


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Photo-like images (low-frequency colour fields), on the 8-bit grid."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return quantize(torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))


def center_holes(n: int, size: int, hole: int = 8) -> torch.Tensor:
    mask = torch.zeros(n, size, size, dtype=torch.bool)
    top = (size - hole) // 2
    mask[:, top : top + hole, top : top + hole] = True
    return mask


def irregular_holes(n: int, size: int, nvidia_root: str | None) -> tuple[torch.Tensor, str]:
    """``n`` masks with 10-20 % holes: NVIDIA test masks (evaluation order) if a root is given, else free-form."""
    rng = np.random.default_rng(0)
    if nvidia_root:
        from inpaint.data.mask_files import NvidiaMask

        gen, source = NvidiaMask(root=nvidia_root, ratio=(0.1, 0.2)), f"NVIDIA test masks in {nvidia_root}"
        arrs = [gen(size, size, None, index=i) for i in range(n)]
    else:
        gen, source = FreeFormMask(ratio=(0.1, 0.2)), "free-form strokes (no --nvidia-root given)"
        arrs = [gen(size, size, rng) for _ in range(n)]
    return torch.from_numpy(np.stack(arrs)) > 0.5, source


def model_net(name: str) -> torch.nn.Module:
    node = OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml")
    return build_density_net(OmegaConf.to_container(node.net))


def time_fast(net, x, hole, repeats: int, device) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        out = net.fill(x, hole, Decoder("argmax"))
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def time_naive(net, x, hole, pixels: int, device) -> tuple[float, int, int, torch.Tensor, torch.Tensor]:
    """Seconds of the naive fill over the first ``pixels`` hole pixels (all if 0), the pixels timed, the pixels
    in the whole procedure, and the timed pixels' hole mask and fill."""
    positions = hole_pixels(hole)
    total = len(positions)
    timed = total if pixels <= 0 else min(pixels, total)
    part = torch.zeros_like(hole)
    for r, c in positions[:timed].tolist():
        part[:, r, c] = hole[:, r, c]
    sync(device)
    start = time.perf_counter()
    out = naive_fill(net, x, part, Decoder("argmax"))
    sync(device)
    return time.perf_counter() - start, timed, total, part, out


def bench_one(name, x, hole, args, device) -> dict:
    torch.manual_seed(0)
    net = model_net(name).to(device).eval()
    fast_s, fast = time_fast(net, x, hole, args.repeats, device)
    naive_s, timed, total, part, naive = time_naive(net, x, hole, args.naive_pixels, device)
    naive_total = naive_s * total / max(timed, 1)
    n = x.shape[0]
    # the fast fill's values on the timed pixels equal the naive fill's (argmax; later pixels differ because the
    # naive run stopped and leaves them as they were)
    agree = bool(torch.equal(fast[part[:, None].expand_as(fast)], naive[part[:, None].expand_as(naive)]))
    return {
        "fast_s_per_image": fast_s / n,
        "naive_s_per_image": naive_total / n,
        "speedup": naive_total / fast_s,
        "hole_pixels_in_batch": total,
        "naive_pixels_timed": timed,
        "naive_extrapolated": timed < total,
        "fills_agree_on_timed_pixels": agree,
        "mean_hole_ratio": float(hole.float().mean()),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--masks", nargs="+", default=["center", "nvidia"], choices=["center", "nvidia"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--naive-pixels", type=int, default=3,
                   help="hole pixels the naive fill is timed on before scaling (0 = the whole fill)")
    p.add_argument("--nvidia-root", help="folder of the NVIDIA irregular mask files (10-20 %% ones are used)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x = smooth_images(args.batch, args.size).to(device)
    irregular, source = irregular_holes(args.batch, args.size, args.nvidia_root)
    holes = {"center": center_holes(args.batch, args.size).to(device), "nvidia": irregular.to(device)}
    holes = {kind: holes[kind] for kind in args.masks}
    results: dict = {"_setup": {
        "batch": args.batch, "masks": args.masks, "size": args.size, "repeats": args.repeats, "naive_pixels": args.naive_pixels,
        "nvidia_masks": source, "device": str(device), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "machine": platform.machine(), "processor": platform.processor(),
    }}
    for name in args.models:
        results[name] = {}
        for kind, hole in holes.items():
            with torch.no_grad():
                res = bench_one(name, x, hole, args, device)
            results[name][kind] = res
            print(f"{name:14s} {kind:7s} fast {res['fast_s_per_image'] * 1e3:9.3f} ms/image  naive "
                  f"{res['naive_s_per_image'] * 1e3:10.1f} ms/image  speedup {res['speedup']:8.1f}x  "
                  f"(agree: {res['fills_agree_on_timed_pixels']})", flush=True)
    write_json(args.json, results)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

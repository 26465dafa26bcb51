"""Images per second of the FID feature extraction on this machine, batched against one image at a time.

The Inception network of FID/KID/IDS (``inpaint.nets.inception.FIDInceptionV3``: 8-bit levels, TF1 resize to 299,
pool3) runs on every real and every filled test image, so its throughput sets the cost of ``eval.metrics=[fid]``.
Speed does not depend on the weights, so the network is built with random weights (no file needed). Each
setting runs ``--warmup`` untimed passes, then ``--repeats`` timed passes over ``--images`` images; the table
gives the median images per second and the ratio to batch 1 measured in the same process (side by side).

  python experiments/fid_speed.py --out experiments/results/fid_speed --sizes 32 256 --batches 1 16 64

Run it alone on the machine (a second torch process halves the numbers).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from inpaint.evaluation.field import feature_network


def images_per_second(net, size: int, batch: int, images: int, warmup: int, repeats: int) -> float:
    x = torch.rand(batch, 3, size, size)
    n_batches = max(1, images // batch)
    with torch.no_grad():
        for _ in range(warmup):
            net(x)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n_batches):
                net(x)
            rates.append(n_batches * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="experiments/results/fid_speed")
    args = parser.parse_args()
    net = feature_network("inception", "random")
    rows = []
    for size in args.sizes:
        base = None
        for batch in args.batches:
            rate = images_per_second(net, size, batch, args.images, args.warmup, args.repeats)
            base = base if base is not None else rate
            rows.append({"size": size, "batch": batch, "images_per_second": rate, "vs_first_batch": rate / base})
            print(f"{size}x{size} batch {batch}: {rate:.1f} images/s ({rate / base:.2f}x batch {args.batches[0]})")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "command": "python experiments/fid_speed.py "
            + " ".join(f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = ["# FID feature extraction speed (CPU)", "", f"`{meta['command']}`; torch {meta['torch']}, "
             f"{meta['threads']} threads. Random weights (speed does not depend on them). Each image is resized "
             "to 299x299 first, so the input size barely matters.", "",
             "| input | batch | images/s | vs first batch |", "|---|---|---|---|"]
    lines += [f"| {r['size']}x{r['size']} | {r['batch']} | {r['images_per_second']:.1f} | {r['vs_first_batch']:.2f}x |"
              for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

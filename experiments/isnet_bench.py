"""ISNet speed and memory: generator latency with and without PRA, training-step time, peak memory.

Measures, on one device:
  * ``single``: generator forward latency per image (batch 1, 256x256 by default), one pass;
  * ``pra``: the same images through the Progressive Reconstruction Algorithm, 40-50 % holes (the paper's
    Table 3 reports 52.69 vs 85.46 ms per image on a 1080 Ti: ratio 1.62);
  * ``train``: one full training iteration (G forward, three D passes, VGG perceptual + style, both
    backward passes, both Adam steps) at batch 8, Eq. (5) + hinge, through Lightning;
  * ``train_no_vgg``: the same without the perceptual and style terms (what the VGG costs).
Each case runs in its own process so its peak memory is its own (peak RSS on the CPU; peak allocated on
CUDA). The report gives every time as a ratio to the single-pass latency (latency cases) or to
``train_no_vgg`` (training cases), measured side by side in the same invocation.

  python experiments/isnet_bench.py                                   # CPU, 256x256, 40-50 % free-form holes
  python experiments/isnet_bench.py --masks /data/testing_mask_dataset  # NVIDIA masks of 40-50 %
  python experiments/isnet_bench.py --device cuda --precision 16-mixed --json out.json

VGG weights do not change the cost, so the training cases use a random VGG (no download needed).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import sync, time_lightning  # noqa: E402

from inpaint.data.masks import FreeFormMask  # noqa: E402
from inpaint.models.isnet import ISNetModule  # noqa: E402
from inpaint.models.optimizers import recipe  # noqa: E402

CASES = ("single", "pra", "train_no_vgg", "train")
AUTOCAST = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


def hole_masks(n: int, size: int, masks_dir: str | None, seed: int = 0) -> torch.Tensor:
    """``n`` masks ``[n,1,size,size]`` (1 = hole) with 40-50 % holes: NVIDIA files if given, else free-form."""
    rng = np.random.default_rng(seed)
    if masks_dir:
        from inpaint.data.mask_files import NvidiaMask

        gen = NvidiaMask(root=masks_dir, ratio=(0.4, 0.5))
        arrs = [gen(size, size, rng, index=i) for i in range(n)]
    else:
        gen = FreeFormMask(ratio=(0.4, 0.5))
        arrs = [gen(size, size, rng) for _ in range(n)]
    return torch.from_numpy(np.stack(arrs)).float()[:, None]


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def run_case(case: str, args) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    if case.startswith("train"):
        weights = {"l1": 1.0, "adv": 3.0, "perc": 1.0, "style": 3.0, "fm": 0.0}
        if case == "train_no_vgg":
            weights.update(perc=0.0, style=0.0)
        model = ISNetModule(generator={"blocks": args.blocks}, loss={"vgg": "random", "weights": weights},
                            **recipe("isnet"))
        n = args.warmup + args.steps
        batches = [
            {"image": images(args.batch, args.size, s), "mask": hole_masks(args.batch, args.size, args.masks, s)}
            for s in range(min(n, 4))
        ]
        batches = [batches[i % len(batches)] for i in range(n)]
        accel = "gpu" if device.type == "cuda" else "cpu"
        times = time_lightning(model, batches, args.warmup, accelerator=accel, precision=args.precision)
        per = statistics.median(times)
        result = {"case": case, "batch": args.batch, "median_s": per, "steps": len(times)}
    else:
        model = ISNetModule(generator={"blocks": args.blocks}, pra={"enabled": case == "pra"}).to(device)
        img = images(args.images, args.size).to(device)
        msk = hole_masks(args.images, args.size, args.masks).to(device)
        model.eval()
        dtype = AUTOCAST.get(args.precision)
        times, passes = [], []
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            for i in range(args.images + args.warmup):
                j = i % args.images
                sync(device)
                t0 = time.perf_counter()
                model.inpaint(img[j : j + 1], msk[j : j + 1])
                sync(device)
                if i >= args.warmup:
                    times.append(time.perf_counter() - t0)
                    if case == "pra":
                        passes.append(int(model.last_pra_passes[0]))
        result = {"case": case, "median_s": statistics.median(times), "mean_s": statistics.fmean(times),
                  "images": len(times)}
        if passes:
            result["mean_extra_passes"] = statistics.fmean(passes)
    if device.type == "cuda":
        result["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mem_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="32-true", choices=["32-true", "16-mixed", "bf16-mixed"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--images", type=int, default=10, help="timed images per latency case")
    ap.add_argument("--batch", type=int, default=8, help="training batch")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--masks", default=None, help="folder of NVIDIA masks (40-50 %% are used); default free-form")
    ap.add_argument("--only", nargs="*", default=list(CASES), choices=CASES)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", default=None)
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in this process
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.case:
        print(json.dumps(run_case(args.case, args)))
        return

    results = {}
    for case in args.only:
        cmd = [sys.executable, __file__, "--case", case, *sys.argv[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(results[case]))

    lines = [f"# ISNet benchmark ({args.device}, {args.precision}, {args.size}x{args.size}, blocks={args.blocks})", "",
             "| case | median | ratio | peak memory (MiB) | notes |", "|---|---|---|---|---|"]
    for case, r in results.items():
        base = results.get("single" if case in ("single", "pra") else "train_no_vgg")
        ratio = f"{r['median_s'] / base['median_s']:.2f}" if base else "-"
        unit = "ms/image" if case in ("single", "pra") else f"s/step (batch {r.get('batch')})"
        value = r["median_s"] * 1000 if case in ("single", "pra") else r["median_s"]
        note = f"{r['mean_extra_passes']:.1f} extra passes" if "mean_extra_passes" in r else ""
        lines.append(f"| {case} | {value:.2f} {unit} | {ratio} | {r['peak_mem_mib']:.0f} | {note} |")
    report = "\n".join(lines)
    print("\n" + report)
    if args.json:
        meta = {"device": args.device, "precision": args.precision, "size": args.size, "blocks": args.blocks,
                "threads": args.threads, "masks": args.masks, "torch": torch.__version__,
                "machine": platform.processor() or platform.machine()}
        if torch.cuda.is_available() and args.device.startswith("cuda"):
            meta["gpu"] = torch.cuda.get_device_name()
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "markdown": report}, indent=2))


if __name__ == "__main__":
    main()

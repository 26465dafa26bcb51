"""Faster training on a CPU, measured side by side: per model, today's default (fp32, eager, NCHW, torch's default
threads) against ``channels_last``, ``compile`` (inductor), bf16 autocast (``trainer.precision=bf16-mixed``) and
one thread, each a training step through Lightning on the same batches held in memory.

Every variant starts from the same weights and trains the same batches. Variants run interleaved (default, A, B,
..., default, A, B, ...) for ``--repeats`` rounds, each round timing ``--steps`` steps after ``--warmup``; the report
gives per variant the median step time, its ratio to the default's median in the same rounds (so load drifts
cancel), and how far its weights after the steps are from the default's (max |diff| relative to the weights'
scale: the "within tolerance of fp32 eager" check). ``compile`` pays its compilation in the warm-up.

  python experiments/cpu_speed.py --models scnn context_encoder pixelcnn --json experiments/results/cpu_speed.json

Sizes are each model's CIFAR setup: 32x32 images, batch 32 (context encoders: the 8x8 centre hole; the others:
free-form holes). Writes JSON and a markdown table (``--json`` / ``--md``).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import make_batches, time_lightning  # noqa: E402

from inpaint.config_dir import CONF_DIR  # noqa: E402
from inpaint.data.masks import CenterMask  # noqa: E402
from inpaint.run import build_model  # noqa: E402

#: model -> overrides for its CIFAR-sized config (32 px)
MODELS = {
    "scnn": [],
    "context_encoder": ["model.overlap=4"],
    "ce_gan": [],
    "pixelcnn": [],
    "flat_row_lstm": [],
    "row_lstm": [],
    "diag_bilstm": [],
}
CENTRE = {"context_encoder", "ce_gan", "ce_wgan"}
VARIANTS = ("default", "channels_last", "compile", "bf16", "threads=1")


def build(name: str, variant: str, seed: int = 0):
    overrides = [f"model={name}", "data.image_size=32", *MODELS[name]]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.manual_seed(seed)
    model = build_model(cfg)
    if variant == "channels_last":
        model = model.use_channels_last()
    if variant == "compile":
        model.compile_networks()
    return model


def flat_weights(model) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in model.parameters()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    args = ap.parse_args()
    default_threads = torch.get_num_threads()
    results = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
               "threads": default_threads, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
               "repeats": args.repeats, "command": "python " + " ".join(sys.argv), "models": {}}
    for name in args.models:
        masks = CenterMask(8, overlap=4) if name in CENTRE else None
        batches = make_batches(args.warmup + args.steps, args.batch, 32, seed=1, masks=masks)
        if masks is not None:
            region = torch.from_numpy(masks.region(32, 32))[None, None].expand(args.batch, 1, 32, 32).contiguous()
            for b in batches:
                b["region"] = region
        times: dict[str, list[float]] = {v: [] for v in args.variants}
        ratios: dict[str, list[float]] = {v: [] for v in args.variants}
        weights: dict[str, torch.Tensor] = {}
        errors: dict[str, str] = {}
        for _ in range(args.repeats):
            medians = {}
            for variant in args.variants:
                if variant in errors:
                    continue
                try:
                    torch.set_num_threads(1 if variant == "threads=1" else default_threads)
                    model = build(name, variant)
                    precision = "bf16-mixed" if variant == "bf16" else "32-true"
                    torch.manual_seed(1)  # the same random draws in training (dropout, LIF noise) for every variant
                    steps = time_lightning(model, copy.deepcopy(batches), args.warmup, precision=precision)
                    medians[variant] = statistics.median(steps)
                    times[variant].append(medians[variant])
                    weights[variant] = flat_weights(model)
                except Exception as exc:  # a variant that does not work for a model is reported, not fatal
                    errors[variant] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                finally:
                    torch.set_num_threads(default_threads)
            if "default" in medians:
                for v, m in medians.items():
                    ratios[v].append(medians["default"] / m)
        ref = weights.get("default")
        rows = {}
        for v in args.variants:
            if v in errors or not times[v]:
                rows[v] = {"error": errors.get(v, "no measurement")}
                continue
            diff = None
            if ref is not None and v in weights:
                diff = float((weights[v] - ref).abs().max() / ref.abs().max().clamp_min(1e-12))
            rows[v] = {"median_step_s": statistics.median(times[v]), "speedup": statistics.median(ratios[v]),
                       "max_rel_weight_diff": diff}
        results["models"][name] = rows
        print(name, json.dumps(rows), flush=True)
    md = [f"# CPU training speed per model (32x32, batch {args.batch}, {default_threads} threads)", "",
          "Speed-up = default step time / variant step time (median over interleaved rounds); weight diff = max |w - "
          "w_default| / max |w_default| after the timed steps. The weight diff is no tolerance measure: Adam's "
          "normalised steps grow any rounding difference (fp32 channels_last and compile differ as much as bf16); "
          "tests/test_cpu_precision.py holds an adopted bf16 to fp32 on the first step's loss and gradients.", "",
          "| model | " + " | ".join(args.variants) + " |", "|---|" + "---|" * len(args.variants)]
    for name, rows in results["models"].items():
        cells = []
        for v in args.variants:
            r = rows[v]
            cells.append("error" if "error" in r else
                         f"{r['median_step_s'] * 1e3:.0f} ms, {r['speedup']:.2f}x, diff {r['max_rel_weight_diff']:.1e}")
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    md += ["", "Errors: " + "; ".join(f"{n}/{v}: {r['error']}" for n, rows in results["models"].items()
                                       for v, r in rows.items() if "error" in r), "", f"`{results['command']}`", ""]
    text = "\n".join(md)
    print(text)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(text)


if __name__ == "__main__":
    main()

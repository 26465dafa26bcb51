"""One GPU check in under 8 minutes: ISNet latency and training cost per precision, 16-mixed training with a
moving loss scale, Lightning's overhead on the GPU, and the environment, written as JSON + markdown.

Sections (each in its own process, under its own time budget, so a crash, a hang or a CUDA error in one
leaves the others running and is recorded as that section's error; each process's peak memory is its own):

  latency   ISNet generator, batch 1, SIZE x SIZE, 40-50 % free-form holes, one pass and through PRA (the
            model's own ``inpaint``), under fp32, bf16-mixed and 16-mixed autocast (isnet_bench.run_case)
  train     one full ISNet training iteration at batch 8 (Eq. (5) + hinge, random VGG so nothing is
            downloaded) through Lightning, per precision, with torch.cuda.max_memory_allocated
  amp       20 iterations through Lightning under 16-mixed with a scaler that grows every 5 clean steps:
            losses finite, the loss scale moved, and it moved as ONE scaler update per iteration would move
            it (ISNet steps two optimizers; the GAN mechanism updates the scale once, after both steps)
  overhead  experiments/bench.py's Lightning-vs-plain-loop ratio on the device: SC-NN at 64 and 256 px, the
            context encoder and the WGAN context encoder at 32 px, batch 64
  env       GPU name, memory, capability, torch / CUDA / cuDNN / Lightning versions

Times are medians over N timed steps after warm-up ones; every clock read on CUDA follows a
torch.cuda.synchronize. Cases that need CUDA (16-mixed, and bf16 outside latency) are reported as skipped on
a CPU.

  experiments/gpu_check.sh                                  # on the GPU machine (installs .whl/ first)
  python experiments/gpu_check.py --device cuda --out DIR   # the same without the shell wrapper
  python experiments/gpu_check.py --device cpu --quick      # small sizes, seconds: what tests/ runs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import overhead, time_lightning  # noqa: E402
from isnet_bench import hole_masks, images, run_case  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
# seconds per section (the process's start included); together with the set-up they stay under 8 minutes
BUDGETS = {"latency": 75, "train": 150, "amp": 90, "overhead": 125}
CASE_MARK = "CASE "  # a section prints one line per finished case, so a timeout keeps what finished


def sizes(args) -> SimpleNamespace:
    """The knobs of every section: full (a GPU, 256 px, batch 8) or ``--quick`` (a CPU, seconds)."""
    if args.quick:
        return SimpleNamespace(size=64, blocks=1, images=2, warmup=1, batch=2, steps=1, amp_steps=4,
                               growth_interval=2, overhead=[dict(batch=2, size=32, steps=2, warmup=1, repeats=1)])
    return SimpleNamespace(size=256, blocks=4, images=20, warmup=5, batch=8, steps=10, amp_steps=20,
                           growth_interval=5,
                           overhead=[dict(batch=8, size=64, steps=30, warmup=5, repeats=3),
                                     dict(batch=8, size=256, steps=20, warmup=5, repeats=3),
                                     # the context encoders at the paper's CIFAR size; ce_wgan: 4 cycles of
                                     # 10 critic steps + 1 generator step per timed run
                                     dict(model="context_encoder", batch=64, size=32, steps=30, warmup=5, repeats=2),
                                     dict(model="ce_wgan", batch=64, size=32, steps=44, warmup=11, repeats=2)])


def skip_reason(device: torch.device, precision: str, section: str) -> str | None:
    if device.type == "cuda":
        return None
    if precision == "16-mixed" or (precision == "bf16-mixed" and section != "latency"):
        return f"skipped on CPU: {precision} {section} is a GPU measurement"
    return None


def emit(name: str, result: dict) -> None:
    print(CASE_MARK + json.dumps({**result, "case": name}), flush=True)


def each_case(cases, fn) -> None:
    """Run ``fn(case)`` for every ``(name, case, skip)``; a failing case is recorded and the next one runs."""
    for name, case, skip in cases:
        if skip:
            emit(name, {"status": "skipped", "reason": skip})
            continue
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            emit(name, {"status": "ok", **fn(case)})
        except Exception as exc:  # recorded, then the next case runs
            emit(name, {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()[-2000:]})


def bench_args(args, s, **over) -> SimpleNamespace:
    """The namespace isnet_bench.run_case reads."""
    return SimpleNamespace(device=args.device, size=s.size, blocks=s.blocks, images=s.images, warmup=s.warmup,
                           batch=s.batch, steps=s.steps, masks=None, **over)


def section_latency(args, s) -> None:
    device = torch.device(args.device)
    cases = [(f"{p}/{c}", (p, c), skip_reason(device, p, "latency")) for p in PRECISIONS for c in ("single", "pra")]
    each_case(cases, lambda pc: run_case(pc[1], bench_args(args, s, precision=pc[0])))


def section_train(args, s) -> None:
    device = torch.device(args.device)
    cases = [(p, p, skip_reason(device, p, "train")) for p in PRECISIONS]
    each_case(cases, lambda p: run_case("train", bench_args(args, s, precision=p)))


class ScaleRecorder(L.Callback):
    """The AMP loss scale before training and after every step, and every step's logged losses."""

    def __init__(self) -> None:
        self.initial: float | None = None
        self.scales: list[float] = []
        self.losses: list[dict[str, float]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.initial = trainer.precision_plugin.scaler.get_scale()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        m = trainer.callback_metrics
        self.scales.append(trainer.precision_plugin.scaler.get_scale())
        self.losses.append({k: float(m[f"train/{k}"]) for k in ("g_loss", "d_loss") if f"train/{k}" in m})


def scale_mismatches(initial: float, scales: list[float], growth_interval: int) -> list[int]:
    """Iterations where the scale is not what one ``GradScaler.update()`` per iteration gives: halved after an
    overflow (which restarts the clean-step count), doubled after ``growth_interval`` clean steps, else kept."""
    bad, clean, prev = [], 0, initial
    for i, scale in enumerate(scales):
        if scale < prev:
            clean = 0
            ok = scale == prev / 2
        else:
            clean += 1
            ok = scale == (prev * 2 if clean == growth_interval else prev)
            clean %= growth_interval
        if not ok:
            bad.append(i)
        prev = scale
    return bad


def amp_run(args, s) -> dict:
    from lightning.pytorch.plugins import MixedPrecision

    from inpaint.models.isnet import ISNetModule

    torch.manual_seed(0)
    model = ISNetModule(generator={"blocks": s.blocks}, loss={"vgg": "random"})
    batches = [{"image": images(s.batch, s.size, i), "mask": hole_masks(s.batch, s.size, None, i)}
               for i in range(s.amp_steps)]
    device = torch.device(args.device)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**16, growth_interval=s.growth_interval)
    rec = ScaleRecorder()
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    times = time_lightning(model, batches, 1, accelerator, callbacks=(rec,),
                           plugins=[MixedPrecision("16-mixed", device.type, scaler=scaler)])
    finite = len(rec.losses) == s.amp_steps and all(
        d and all(math.isfinite(v) for v in d.values()) for d in rec.losses)
    mismatches = scale_mismatches(rec.initial, rec.scales, s.growth_interval)
    result = {
        "iterations": len(rec.scales), "batch": s.batch, "growth_interval": s.growth_interval,
        "initial_scale": rec.initial, "final_scale": rec.scales[-1] if rec.scales else None,
        "scales": rec.scales, "first_losses": rec.losses[:1], "last_losses": rec.losses[-1:],
        "median_s": statistics.median(times) if times else None,
        "losses_finite": bool(finite),
        "scale_moved": any(x != rec.initial for x in rec.scales),  # it may come back: grow, overflow, halve
        "one_scale_update_per_iteration": not mismatches, "scale_mismatch_iterations": mismatches,
    }
    if device.type == "cuda":
        result["peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
    failed = [k for k in ("losses_finite", "scale_moved", "one_scale_update_per_iteration") if not result[k]]
    if failed:
        raise AssertionError(f"16-mixed check failed: {failed}; {json.dumps(result)}")
    return result


def amp_skip(args) -> str | None:
    return None if args.cpu_amp else skip_reason(torch.device(args.device), "16-mixed", "amp")


def section_amp(args, s) -> None:
    each_case([("16-mixed", None, amp_skip(args))], lambda _: amp_run(args, s))


def section_overhead(args, s) -> None:
    cases = [(f"{o.get('model', 'scnn')}/b{o['batch']}/{o['size']}px", {"model": "scnn", **o}, None)
             for o in s.overhead]
    each_case(cases, lambda o: overhead(device=args.device, log=lambda line: print(line, flush=True), **o))


SECTIONS = {"latency": section_latency, "train": section_train, "amp": section_amp, "overhead": section_overhead}


def environment(device: str) -> dict:
    env = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "lightning": L.__version__,
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
           "threads": torch.get_num_threads()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        p = torch.cuda.get_device_properties(torch.device(device))
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   multiprocessors=p.multi_processor_count)
    for name in ("hydra", "omegaconf", "kornia", "torchmetrics"):
        try:
            env[name] = __import__(name).__version__
        except Exception as exc:
            env[name] = f"missing: {exc}"
    return env


def run_section(name: str, budget: float, argv: list[str]) -> dict:
    """``name`` in a child process under ``budget`` seconds; its cases, whatever finished, and its fate."""
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, *argv, "--section", name]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, env=env)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, err, rc = (exc.stdout or b""), (exc.stderr or b""), None
        out, err = [x.decode() if isinstance(x, bytes) else x for x in (out, err)]
    cases = {}
    for line in out.splitlines():
        if line.startswith(CASE_MARK):
            case = json.loads(line[len(CASE_MARK):])
            cases[case.pop("case")] = case
    result = {"budget_s": budget, "wall_s": round(time.perf_counter() - t0, 1), "cases": cases}
    if rc is None:
        result.update(status="timeout", error=f"over its {budget} s budget; stderr tail: {err[-1500:]}")
    elif rc != 0:
        result.update(status="error", error=f"exit {rc}: {err[-3000:]}")
    elif any(c["status"] == "error" for c in cases.values()):
        result["status"] = "error"
    elif cases and all(c["status"] == "skipped" for c in cases.values()):
        result["status"] = "skipped"
    else:
        result["status"] = "ok"
    return result


def fmt(x, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def markdown(report: dict) -> str:
    env, secs = report["env"], report["sections"]
    lines = [f"# GPU check ({env.get('gpu', env['device'])}{', quick' if report['quick'] else ''})", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines += ["", f"Total {report['total_wall_s']:.0f} s.", "", "| section | status | wall (s) | budget (s) |",
              "|---|---|---|---|"]
    lines += [f"| {n} | {r['status']} | {r['wall_s']} | {r['budget_s']} |" for n, r in secs.items()]

    def ok(section: str) -> dict:
        return {k: c for k, c in secs.get(section, {}).get("cases", {}).items() if c["status"] == "ok"}

    lat = ok("latency")
    if lat:
        lines += ["", f"## Latency, batch 1, {report['sizes']['size']} px, 40-50 % holes", "",
                  "| precision | one pass (ms) | PRA (ms) | PRA / one pass | extra passes | peak (MiB) |",
                  "|---|---|---|---|---|---|"]
        for p in PRECISIONS:
            one, pra = lat.get(f"{p}/single"), lat.get(f"{p}/pra")
            if one or pra:
                ms = [c["median_s"] * 1e3 if c else None for c in (one, pra)]
                ratio = ms[1] / ms[0] if None not in ms else None
                peak = max(c["peak_mem_mib"] for c in (one, pra) if c)
                lines.append(f"| {p} | {fmt(ms[0])} | {fmt(ms[1])} | {fmt(ratio)} | "
                             f"{fmt((pra or {}).get('mean_extra_passes'), '.1f')} | {peak:.0f} |")
    tr = ok("train")
    if tr:
        lines += ["", f"## Training iteration, batch {report['sizes']['batch']}, Eq. (5) + hinge, random VGG", "",
                  "| precision | s/iteration | peak (MiB) |", "|---|---|---|"]
        lines += [f"| {p} | {c['median_s']:.4f} | {c['peak_mem_mib']:.0f} |" for p, c in tr.items()]
    amp = secs.get("amp", {}).get("cases", {}).get("16-mixed")
    if amp and amp["status"] == "ok":
        lines += ["", f"## 16-mixed, {amp['iterations']} iterations", "",
                  f"Loss scale {amp['initial_scale']:g} -> {amp['final_scale']:g} (growth every "
                  f"{amp['growth_interval']} clean steps); losses finite: {amp['losses_finite']}; one scaler "
                  f"update per iteration: {amp['one_scale_update_per_iteration']}; last losses "
                  f"{amp['last_losses']}."]
    ov = ok("overhead")
    if ov:
        lines += ["", "## Lightning vs plain loop (SC-NN, context encoder, WGAN context encoder)", "",
                  "| case | plain (ms/step) | Lightning (ms/step) | ratio |", "|---|---|---|---|"]
        lines += [f"| {k} | {c['plain_ms_per_step']:.2f} | {c['lightning_ms_per_step']:.2f} | "
                  f"{c['overhead_ratio_median']:.3f} |" for k, c in ov.items()]
    errors = [(f"{n}/{k}", c.get("error") or c.get("reason")) for n, r in secs.items()
              for k, c in r["cases"].items() if c["status"] != "ok"]
    errors += [(n, r["error"]) for n, r in secs.items() if r.get("error")]
    if errors:
        lines += ["", "## Not measured", ""] + [f"- {k}: {str(e).splitlines()[0][:300]}" for k, e in errors]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small sizes and few steps (CPU tests)")
    ap.add_argument("--out", default=os.environ.get("OUT") or str(Path(__file__).resolve().parent / "results"),
                    help="folder for gpu_check.json and gpu_check.md (default $OUT, else experiments/results)")
    ap.add_argument("--only", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    ap.add_argument("--budget-scale", type=float, default=1.0, help="multiply every section's time budget")
    ap.add_argument("--cpu-amp", action="store_true", help="run the 16-mixed section on a CPU too (debugging)")
    ap.add_argument("--section", default=None, help=argparse.SUPPRESS)  # internal: run one section here
    args = ap.parse_args()
    s = sizes(args)
    if args.section:
        SECTIONS[args.section](args, s)
        return

    t0 = time.perf_counter()
    argv = sys.argv[1:]
    report = {"quick": args.quick, "sizes": {k: v for k, v in vars(s).items() if k != "overhead"},
              "env": environment(args.device), "sections": {}}
    for name in args.only:
        if name == "amp" and amp_skip(args):  # no process just to say so
            r = {"budget_s": BUDGETS[name] * args.budget_scale, "wall_s": 0.0, "status": "skipped",
                 "cases": {"16-mixed": {"status": "skipped", "reason": amp_skip(args)}}}
        else:
            r = run_section(name, BUDGETS[name] * args.budget_scale, argv)
        report["sections"][name] = r
        print(f"{name}: {r['status']} in {r['wall_s']} s", flush=True)
    report["total_wall_s"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()

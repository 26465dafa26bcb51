"""One GPU check in under 8 minutes: ISNet latency and training cost per precision, 16-mixed training with a
moving loss scale, Lightning's overhead on the GPU, the density models' training step and fill, mGANprior's
inversion throughput and batched == one-by-one check, and the environment, written as JSON + markdown.

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
  density   each density model (pixelcnn, row_lstm, diag_bilstm, flat_row_lstm at their configs' sizes, built
            as ``inpaint.run`` builds them): 3 training steps through Lightning at batch 16 of 32 px images
            after a warm-up one, the median step time and peak memory, then one fill (the model's ``inpaint``) of the CIFAR 8x8 centre
            hole on a batch of 16, its time and peak memory
  mganprior experiments/inversion_bench.py on the device: the paper's 256 px PGGAN (z 512, fmap_base 8192,
            N = 20 codes composed at 32x32), a few iterations: batched vs official-loop images/hour and the
            speedup (target 10x); then one ``invert`` in float64 (CBAM per image) of a batch of 3 against each
            image alone, which must agree to 1e-9
  env       GPU name, memory, capability, torch / CUDA / cuDNN / Lightning versions

Times are medians over N timed steps after warm-up ones; every clock read on CUDA follows a
torch.cuda.synchronize. Cases that need CUDA (16-mixed, and bf16 outside latency) are reported as skipped on
a CPU.

  experiments/gpu_check.sh                                  # on the GPU machine (installs .whl/ first)
  python experiments/gpu_check.py --device cuda --out DIR   # the same without the shell wrapper
  python experiments/gpu_check.py --device cpu --quick --no-budgets   # small sizes, no time limits: what tests/ runs
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
from ar_fill_bench import center_holes, smooth_images  # noqa: E402
from bench import overhead, sync, time_lightning  # noqa: E402
from isnet_bench import hole_masks, images, run_case  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")
# seconds per section (the process's start included); together with the set-up they stay under 8 minutes
BUDGETS = {"latency": 60, "train": 90, "amp": 60, "overhead": 70, "density": 75, "mganprior": 90}
DENSITY_MODELS = ("pixelcnn", "row_lstm", "diag_bilstm", "flat_row_lstm")
CASE_MARK = "CASE "  # a section prints one line per finished case, so a timeout keeps what finished


def sizes(args) -> SimpleNamespace:
    """The knobs of every section: full (a GPU, 256 px, batch 8) or ``--quick`` (a CPU, seconds)."""
    if args.quick:
        return SimpleNamespace(size=64, blocks=1, images=2, warmup=1, batch=2, steps=1, amp_steps=4,
                               growth_interval=2, overhead=[dict(batch=2, size=32, steps=2, warmup=1, repeats=1)],
                               density=dict(size=16, batch=2, steps=1),
                               inversion=["--resolution", "16", "--z-dim", "16", "--fmap-base", "64", "--fmap-max",
                                          "16", "--codes", "2", "--iterations", "2", "--images", "2", "--batch",
                                          "2", "--repeats", "1"],
                               invert_check=dict(resolution=16, z_dim=16, fmap_base=64, fmap_max=16, codes=3,
                                                 iterations=3))
    return SimpleNamespace(size=256, blocks=4, images=20, warmup=3, batch=8, steps=8, amp_steps=20,
                           growth_interval=5,
                           density=dict(size=32, batch=16, steps=3),
                           # the paper's prior; 10 iterations of 8 images keep the official loop (20 batch-1 G1
                           # passes per iteration, then the re-render of every iteration) within the budget
                           inversion=["--resolution", "256", "--z-dim", "512", "--fmap-base", "8192", "--fmap-max",
                                      "512", "--codes", "20", "--iterations", "10", "--images", "8", "--batch",
                                      "8", "--repeats", "2"],
                           invert_check=dict(resolution=64, z_dim=128, fmap_base=2048, fmap_max=256, codes=20,
                                             iterations=10),
                           overhead=[dict(batch=8, size=64, steps=20, warmup=5, repeats=2),
                                     dict(batch=8, size=256, steps=15, warmup=5, repeats=2),
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
    from inpaint.models.optimizers import recipe

    torch.manual_seed(0)
    model = ISNetModule(generator={"blocks": s.blocks}, loss={"vgg": "random"}, **recipe("isnet"))
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


def density_case(args, s, name: str) -> dict:
    """Training steps and one centre-hole fill of ``model=name``, built from the composed config."""
    from hydra import compose, initialize_config_dir

    from inpaint.cli import CONF_DIR
    from inpaint.run import build_model

    d, device = s.density, torch.device(args.device)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", f"data.image_size={d['size']}"])
    torch.manual_seed(0)
    model = build_model(cfg)
    hole = center_holes(d["batch"], d["size"], hole=max(2, d["size"] // 4))[:, None].float()
    batches = [{"image": smooth_images(d["batch"], d["size"], seed=i), "mask": hole} for i in range(d["steps"] + 1)]
    times = time_lightning(model, batches, 1, "gpu" if device.type == "cuda" else "cpu")  # the first step warms up
    result = {"params": sum(p.numel() for p in model.parameters()), "batch": d["batch"], "size": d["size"],
              "train_steps": len(times), "train_step_s": statistics.median(times)}
    if device.type == "cuda":
        result["train_peak_mem_mib"] = torch.cuda.max_memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    model = model.to(device).eval()
    image, mask = batches[0]["image"].to(device), hole.to(device)
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        filled = model.inpaint(image, mask)
        sync(device)
    result.update(fill_s=time.perf_counter() - start, fill_hole_pixels=int(hole.sum()),
                  fill_keeps_known=bool(torch.equal(filled[(mask == 0).expand_as(filled)],
                                                    image[(mask == 0).expand_as(image)])))
    return checked(result, device, "fill_peak_mem_mib", "fill_keeps_known", "the fill changed known pixels")


def checked(result: dict, device: torch.device, peak_key: str, check: str, failure: str) -> dict:
    """``result`` with the CUDA peak memory under ``peak_key``; raises ``failure`` unless ``result[check]``."""
    if device.type == "cuda":
        result[peak_key] = torch.cuda.max_memory_allocated() / 2**20
    if not result[check]:
        raise AssertionError(f"{failure}: {json.dumps(result)}")
    return result


def section_density(args, s) -> None:
    each_case([(name, name, None) for name in DENSITY_MODELS], lambda name: density_case(args, s, name))


def invert_check(args, s) -> dict:
    """One ``invert`` of a batch of 3 (CBAM per image, float64) against each image inverted alone."""
    from inpaint.models.mganprior import MGANPriorModule

    c, device = s.invert_check, torch.device(args.device)
    prior = {"random": True, **{k: c[k] for k in ("resolution", "z_dim", "fmap_base", "fmap_max")}}
    model = MGANPriorModule(prior=prior, num_codes=c["codes"], iterations=c["iterations"], progress=False,
                            attention={"type": "cbam", "reduction": 4}, loss={"vgg": "random"})
    model = model.to(device=device, dtype=torch.float64)
    size = c["resolution"]
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 3, size, size, generator=g, dtype=torch.float64)
    mask = torch.zeros(3, 1, size, size, dtype=torch.float64)
    for i in range(3):
        mask[i, :, size // 8 + i : size // 2 + i, size // 4 : size // 2 + size // 8 - i] = 1
    image, mask, index = image.to(device), mask.to(device), torch.tensor([5, 1, 9])
    sync(device)
    start = time.perf_counter()
    together = model.invert(image, mask, index)
    raw = model.last_raw
    sync(device)
    batched_s = time.perf_counter() - start
    diffs = []
    for i in range(3):
        alone = model.invert(image[i : i + 1], mask[i : i + 1], index[i : i + 1])
        diffs += [float((alone[0] - together[i]).abs().max()), float((model.last_raw[0] - raw[i]).abs().max())]
    result = {"images": 3, "codes": c["codes"], "iterations": c["iterations"], "resolution": size,
              "dtype": "float64", "attention": "cbam", "batched_s": batched_s, "max_abs_diff": max(diffs),
              "atol": 1e-9, "batched_equals_one_by_one": max(diffs) <= 1e-9}
    return checked(result, device, "peak_mem_mib", "batched_equals_one_by_one",
                   "batched invert differs from one-by-one")


def section_mganprior(args, s) -> None:
    from inversion_bench import main as inversion_bench

    argv = [*s.inversion, "--device", args.device, "--threads", str(torch.get_num_threads())]
    each_case([("inversion_bench", argv, None), ("invert_batched_vs_one_by_one", None, None)],
              lambda a: inversion_bench(a) if a else invert_check(args, s))


SECTIONS = {"latency": section_latency, "train": section_train, "amp": section_amp, "overhead": section_overhead,
            "density": section_density, "mganprior": section_mganprior}


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


def run_section(name: str, budget: float | None, argv: list[str]) -> dict:
    """``name`` in a child process under ``budget`` seconds (None: no limit); its cases, whatever finished, and
    its fate."""
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
    lines += [f"| {n} | {r['status']} | {r['wall_s']} | {r['budget_s'] or 'none'} |" for n, r in secs.items()]

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
    dens = ok("density")
    if dens:
        lines += ["", "## Density models: training step and one centre-hole fill", "",
                  "| model | params | batch | s/step | train peak (MiB) | fill s (batch) | fill peak (MiB) |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {c['params']:,} | {c['batch']}x{c['size']} px | {c['train_step_s']:.4f} | "
                  f"{fmt(c.get('train_peak_mem_mib'), '.0f')} | {c['fill_s']:.4f} | "
                  f"{fmt(c.get('fill_peak_mem_mib'), '.0f')} |" for k, c in dens.items()]
    mgp = ok("mganprior")
    bench_case, check = mgp.get("inversion_bench"), mgp.get("invert_batched_vs_one_by_one")
    if bench_case or check:
        lines += ["", "## mGANprior inversion", ""]
    if bench_case:
        st = bench_case["_setup"]
        lines += [f"{st['resolution']} px prior, N = {st['codes']} codes at layer {st['layer']}, "
                  f"{st['iterations']} iterations, {st['images']} images (batch {st['batch']}):", "",
                  "| batched (images/h) | official (images/h) | official, history off (images/h) | speedup | "
                  "vs history off | meets 10x | outputs agree |", "|---|---|---|---|---|---|---|",
                  f"| {bench_case['batched_images_per_hour']:.0f} | {bench_case['official_images_per_hour']:.0f} | "
                  f"{bench_case['official_history_off_images_per_hour']:.0f} | {bench_case['speedup']:.1f}x | "
                  f"{bench_case['speedup_vs_history_off']:.1f}x | {bench_case['meets_target']} | "
                  f"{bench_case['outputs_agree']} |"]
    if check:
        lines += ["", f"`invert` of {check['images']} images ({check['resolution']} px, N = {check['codes']}, "
                  f"{check['iterations']} iterations, CBAM, float64) batched vs one by one: max abs diff "
                  f"{check['max_abs_diff']:.3g} (atol {check['atol']:g}), equal: {check['batched_equals_one_by_one']}."]
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
    ap.add_argument("--no-budgets", action="store_true",
                    help="run every section to its end, however long it takes: the budgets keep a GPU session within "
                         "its device time; a correctness run (the tests, a slow or busy machine) must not depend on "
                         "speed")
    ap.add_argument("--cpu-amp", action="store_true", help="run the 16-mixed section on a CPU too (debugging)")
    ap.add_argument("--section", default=None, help=argparse.SUPPRESS)  # internal: run one section here
    args = ap.parse_args()
    s = sizes(args)
    if args.section:
        SECTIONS[args.section](args, s)
        return

    t0 = time.perf_counter()
    argv = sys.argv[1:]
    report = {"quick": args.quick, "sizes": {k: v for k, v in vars(s).items() if k not in ("overhead", "inversion")},
              "env": environment(args.device), "sections": {}}
    def budget(name: str) -> float | None:
        return None if args.no_budgets else BUDGETS[name] * args.budget_scale

    for name in args.only:
        if name == "amp" and amp_skip(args):  # no process just to say so
            r = {"budget_s": budget(name), "wall_s": 0.0, "status": "skipped",
                 "cases": {"16-mixed": {"status": "skipped", "reason": amp_skip(args)}}}
        else:
            r = run_section(name, budget(name), argv)
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

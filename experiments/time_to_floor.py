"""Time to beat the floor: how long each CIFAR-scale method trains on 2 CPU cores before it beats biharmonic.

For each method, ``python -m inpaint.run experiment=floor_<method>`` (``floor_cifar`` with the method's schedule) trains on the CIFAR-10 images (a folder
of them, e.g. the JPEGs of ``../shared/data``), validating every ``val_check_interval`` steps on a fixed 1,024-image
validation subset; :class:`inpaint.callbacks.FloorWatch` scores biharmonic on those same images and masks first
and records when the method's mean PSNR and hole MSE first beat it (training minutes, steps, images seen) and the
time of a fixed reference workload on the same machine. The best checkpoint is then tested on the held-out
2,048 test images (the results card), and ``model=biharmonic task=test`` runs on the same test images. Every run
is a separate process, one at a time (nothing else should run: the times are wall times on this machine).

  python experiments/time_to_floor.py --images data/train --out experiments/results/time_to_floor \
      --methods context_encoder scnn

Writes ``time_to_floor.json`` (every curve and crossing), ``time_to_floor.md`` (the table, the commands) and
``time_to_floor.png`` (validation PSNR and hole MSE against training minutes, biharmonic as a line) into --out;
the runs go to --runs (not committed: they hold checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: method -> its experiment (the schedule chosen to get there fast; the paper's recipe and the departures are in each
#: experiment's comments) and any further overrides
METHODS: dict[str, list[str]] = {
    "context_encoder": ["experiment=floor_ce"],                        # CE-AE (Table 1's plain L2 autoencoder)
    "context_encoder_ov": ["experiment=floor_ce", "model.overlap=4"],  # CE-AE-ov: the overlap trick
    "scnn": ["experiment=floor_scnn"],
    "scnn_4000": ["experiment=floor_scnn", "trainer.max_steps=4000"],  # the same recipe over twice the steps
}

PROTOCOLS = {"cifar_center": ["protocol=cifar_center"],
             "nvidia_buckets": ["protocol=nvidia_buckets"]}


def run(args: list[str], log: Path) -> tuple[int, float]:
    """``python -m inpaint.run ARGS`` alone, its output to ``log``; returns (exit status, wall seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, "-m", "inpaint.run", *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    return rc, time.perf_counter() - start


def card_metrics(run_dir: Path) -> dict:
    card = run_dir / "card.json"
    return json.loads(card.read_text())["metrics"] if card.is_file() else {}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocols = sorted({r["protocol"] for r in results["methods"]})
    fig, axes = plt.subplots(len(protocols), 2, figsize=(11, 4 * len(protocols)), squeeze=False)
    for row, protocol in enumerate(protocols):
        for col, (key, label) in enumerate((("val/psnr", "validation PSNR (dB)"),
                                            ("val/mse_hole", "validation hole MSE"))):
            ax = axes[row][col]
            floor = None
            for r in results["methods"]:
                if r["protocol"] != protocol or not r.get("floor_watch"):
                    continue
                curve = r["floor_watch"]["curve"]
                ax.plot([c["train_minutes"] for c in curve], [c.get(key) for c in curve], marker=".", label=r["method"])
                floor = r["floor_watch"]["floor"].get(key, floor)
            if floor is not None:
                ax.axhline(floor, color="black", linestyle="--", label="biharmonic")
            ax.set_xlabel("training minutes (2 CPU cores)")
            ax.set_ylabel(label)
            ax.set_title(protocol)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def markdown(results: dict) -> str:
    lines = ["# Time to beat the biharmonic floor on CIFAR-10 (2 CPU cores)", "",
             "The reference workload (inpaint.callbacks.reference_workload_seconds, timed at the start of each run) "
             "is the time of a fixed convolution workload on this machine at that moment: compare other machines' "
             "(or other runs') minutes as ratios to it. A column's value in brackets is biharmonic's on the same "
             "validation images; without a crossing the scores are those of the last validation.", "",
             "| method | protocol | beaten at step | images seen | training min | reference workload (s) | "
             "val PSNR (floor) | val hole MSE (floor) | test PSNR | test hole MSE | biharmonic test PSNR | "
             "biharmonic test hole MSE |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["methods"]:
        fw = r.get("floor_watch") or {}
        beaten = fw.get("beaten")
        last = (fw.get("curve") or [{}])[-1]
        best = beaten or last
        floor = fw.get("floor", {})
        test, bih = r.get("test", {}), results["biharmonic"].get(r["protocol"], {})

        def f(d, k, spec=".4f"):
            return format(d[k], spec) if k in d and d[k] is not None else "-"

        where = (f"{beaten['step']}", f"{beaten['images']:,}", f"{beaten['train_minutes']:.1f}") if beaten else \
            (f"not in {last.get('step', 0)}", f"{last.get('images', 0):,}", f"{last.get('train_minutes', 0):.1f}")
        lines.append(f"| {r['method']} | {r['protocol']} | {where[0]} | {where[1]} | {where[2]} | "
                     f"{f(fw, 'reference_workload_seconds', '.3f')} | "
                     f"{f(best, 'val/psnr', '.2f')} ({f(floor, 'val/psnr', '.2f')}) | "
                     f"{f(best, 'val/mse_hole', '.5f')} ({f(floor, 'val/mse_hole', '.5f')}) | "
                     f"{f(test, 'test/psnr', '.2f')} | {f(test, 'test/mse_hole', '.5f')} | "
                     f"{f(bih, 'test/psnr', '.2f')} | {f(bih, 'test/mse_hole', '.5f')} |")
    lines += ["", "Crossings per metric (first validation where each alone beats the floor):", ""]
    for r in results["methods"]:
        for k, row in ((r.get("floor_watch") or {}).get("crossed") or {}).items():
            lines.append(f"- {r['method']} / {r['protocol']}: {k} at step {row['step']} ({row['images']:,} images, "
                         f"{row['train_minutes']:.1f} training minutes)")
    lines += ["", "Commands:", "", "```bash", results["command"], *results["runs"], "```", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True, help="folder of the CIFAR-10 images (train/<class>/NNNN.jpg)")
    ap.add_argument("--masks", default=None, help="NVIDIA test masks folder (for --protocols nvidia_buckets)")
    ap.add_argument("--methods", nargs="+", default=["context_encoder", "scnn"], choices=sorted(METHODS))
    ap.add_argument("--protocols", nargs="+", default=["cifar_center"], choices=sorted(PROTOCOLS))
    ap.add_argument("--minutes", type=float, default=None,
                    help="a wall-time ceiling per method (default: none, each experiment's trainer.max_steps is its "
                         "budget, the length its learning-rate schedule is made for)")
    ap.add_argument("--out", default=str(REPO / "experiments/results/time_to_floor"))
    ap.add_argument("--runs", default=str(REPO / "outputs/time_to_floor"), help="where the runs go")
    ap.add_argument("--report-only", action="store_true", help="rewrite the markdown and plot from --out's JSON")
    ap.add_argument("--add", action="store_true",
                    help="keep the other methods already in --out's JSON (a method run again replaces its entry)")
    ap.add_argument("overrides", nargs="*", help="extra overrides for every run (e.g. trainer.val_check_interval=500)")
    args = ap.parse_args()
    out = Path(args.out)
    runs = Path(os.path.relpath(Path(args.runs).resolve(), REPO))  # the runs start in REPO: a relative path
    # names no directory of this machine in the committed commands
    if args.report_only:
        results = json.loads((out / "time_to_floor.json").read_text())
        (out / "time_to_floor.md").write_text(markdown(results))
        plot(results, out / "time_to_floor.png")
        return
    out.mkdir(parents=True, exist_ok=True)
    ceiling = []
    if args.minutes is not None:
        budget = int(args.minutes * 60)
        ceiling = [f"+trainer.max_time=00:{budget // 3600:02d}:{budget % 3600 // 60:02d}:{budget % 60:02d}"]
    common = [f"data.root={args.images}", "logger=csv", *args.overrides]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    results: dict = {"command": command, "runs": [], "methods": [], "biharmonic": {}, "minutes": args.minutes}
    if args.add and (out / "time_to_floor.json").is_file():
        results = json.loads((out / "time_to_floor.json").read_text())
        results["command"] += "\n" + command
        results["methods"] = [m for m in results["methods"] if m["method"] not in args.methods]
    for protocol in args.protocols:
        proto = PROTOCOLS[protocol] + ([f"mask.root={args.masks}"] if protocol == "nvidia_buckets" else [])
        bih_dir = runs / protocol / "biharmonic"
        bih = ["experiment=floor_cifar", *common, *proto, "model=biharmonic", "task=test", f"hydra.run.dir={bih_dir}"]
        if protocol not in results["biharmonic"]:
            results["runs"].append("python -m inpaint.run " + " ".join(shlex.quote(a) for a in bih))
            rc, _ = run(bih, REPO / bih_dir / "stdout.log")
            results["biharmonic"][protocol] = card_metrics(REPO / bih_dir) if rc == 0 else {"error": f"exit {rc}"}
        for method in args.methods:
            run_dir = runs / protocol / method
            cmd = [*METHODS[method], *common, *proto, *ceiling, f"hydra.run.dir={run_dir}"]
            results["runs"].append("python -m inpaint.run " + " ".join(shlex.quote(a) for a in cmd))
            print(f"{protocol} / {method}: training", flush=True)
            rc, seconds = run(cmd, REPO / run_dir / "stdout.log")
            fw = REPO / run_dir / "floor.json"
            entry = {"method": method, "protocol": protocol, "exit": rc, "wall_seconds": seconds,
                     "floor_watch": json.loads(fw.read_text()) if fw.is_file() else None,
                     "test": card_metrics(REPO / run_dir)}
            results["methods"].append(entry)
            if entry["floor_watch"]:
                results.setdefault("reference_workload_seconds", entry["floor_watch"]["reference_workload_seconds"])
            (out / "time_to_floor.json").write_text(json.dumps(results, indent=2))
    results.setdefault("reference_workload_seconds", None)
    (out / "time_to_floor.json").write_text(json.dumps(results, indent=2))
    (out / "time_to_floor.md").write_text(markdown(results))
    plot(results, out / "time_to_floor.png")
    print(markdown(results))


if __name__ == "__main__":
    main()

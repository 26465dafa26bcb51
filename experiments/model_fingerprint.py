"""Fixed-seed fingerprint of every model config: the weights a few training steps end with and the test metrics.

For every ``conf/model/*.yaml`` (found in the folder, so a new model is fingerprinted without editing this file)
the real training config is composed (Hydra's compose API on the ``conf/`` of the checkout whose ``inpaint`` is
imported, config ``train``) with tiny overrides: the embedded sample photos at 32 px (16 / 8 px for the GAN prior
and its inversion), batch 2, three training steps on the CPU, no logger, a fixed seed and narrow networks. The
real :func:`inpaint.run.run` trains it (a model that declares nothing to train is only tested) and tests it, and
the script records per model:

* ``weights_sha256``: sha256 of the state_dict tensors (in key order, their raw bytes) at the end of training
  (for a model with nothing to train: at the end of the test), and ``tested_weights_sha256``, the weights the
  test scored (the best checkpoint's, loaded by the run);
* ``test``: every test metric the run returns, to full float precision (timings left out), and ``val``: the
  last validation's metrics;
* the overrides, the config choices and the resolved model config that were used.

Two runs on one machine give identical JSON apart from ``seconds``. A refactor that must not change any number
is checked with ``--compare``:

  python experiments/model_fingerprint.py --out experiments/results/model_fingerprint_before.json   # before
  python experiments/model_fingerprint.py --compare experiments/results/model_fingerprint_before.json  # after
  python experiments/model_fingerprint.py --compare BEFORE.json --current AFTER.json   # two files, no run
  python experiments/model_fingerprint.py --models scnn,isnet --out x.json
  cd OTHER_CHECKOUT && PYTHONPATH=$PWD python /path/to/model_fingerprint.py --out x.json   # another checkout

``--compare`` exits with status 1 and names each model whose weights or metrics differ (or that fails now).
No learning-rate key is overridden (their names are being changed), so the same command runs before and after.
Run with ``OMP_NUM_THREADS=1`` for bit-identical numbers across runs (the script also sets one torch thread).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

import inpaint
from inpaint.run import CONF_DIR, build_model, run

#: every model gets these: the embedded sample photos (offline), 32 px crops, batch 2, three CPU steps
GENERIC = [
    "trainer=cpu",
    "logger=none",
    "seed=1234",
    "data=sample",
    "data.image_size=32",
    "data.resize_short=64",
    "data.batch_size=2",
    "data.train_samples_per_epoch=8",
    "data.eval_crops_per_image=2",
    "data.num_workers=0",
    "trainer.max_steps=3",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false",
    "eval.grid_samples=0",
]

#: narrow nets (the defaults are sized for real runs), the masks and sizes a model is built for, and a random
#: prior / random VGG where the real one is a download. A model not listed runs with GENERIC alone.
_CE = ["mask=cifar_center", "model.generator.width=8", "model.generator.bottleneck=16", "model.generator.blocks=1"]
_ISNET = ["model.generator.blocks=1", "model.loss.vgg=random"]
EXTRAS: dict[str, list[str]] = {
    "scnn": ["model.net.widths=[8,8,8,8,8]", "model.net.lif.time_steps=2"],
    "isnet": _ISNET,
    "isnet_eq4": _ISNET,
    "context_encoder": _CE,
    "ce_gan": [*_CE, "model.discriminator.width=8"],
    "ce_wgan": [*_CE, "model.discriminator.width=8"],
    "pixelcnn": ["mask=cifar_center", "model.net.width=8"],
    "row_lstm": ["mask=cifar_center", "model.net.hidden=6", "model.net.layers=1"],
    "diag_bilstm": ["mask=cifar_center", "model.net.hidden=6", "model.net.layers=1"],
    "flat_row_lstm": ["mask=cifar_center", "model.net.hidden=8"],
    "pggan": ["data.image_size=8", "data.resize_short=16", "model.generator.resolution=8",
              "model.generator.z_dim=16", "model.generator.fmap_base=64", "model.generator.fmap_max=16",
              "model.swd.images=8", "model.swd.projections=32", "model.swd.patches_per_image=4",
              "model.schedule.stabilise_images=2", "model.schedule.fade_images=2"],
    "mganprior": ["data.image_size=16", "data.resize_short=32", "mask=blocks_12", "model.prior.random=true",
                  "model.prior.official=null", "model.prior.resolution=16", "model.prior.z_dim=16",
                  "model.prior.fmap_base=64", "model.prior.fmap_max=16", "model.num_codes=2", "model.compose_res=8",
                  "model.loss.vgg=random", "model.progress=false", "+eval.inference.iterations=3"],
}

#: the state the fingerprint callback saw, filled during a run (the callback is instantiated by the run itself)
_SEEN: dict[str, Any] = {}


def weights_digest(module: torch.nn.Module) -> dict[str, Any]:
    """sha256 of the state_dict tensors' bytes in key order; also of the keys, shapes and dtypes."""
    data, layout = hashlib.sha256(), hashlib.sha256()
    count = 0
    for key, value in module.state_dict().items():
        if not torch.is_tensor(value):
            continue
        t = value.detach().cpu().contiguous()
        data.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        layout.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        count += 1
    return {"sha256": data.hexdigest(), "layout_sha256": layout.hexdigest(), "tensors": count}


class WeightCapture(L.Callback):
    """Records the weights' digest when training ends and when the test ends, and the last validation's metrics
    (added as a config callback; it only reads)."""

    def on_validation_end(self, trainer, pl_module) -> None:
        # the last validation's own numbers (run's return value puts the checkpoint monitor's float32 best there)
        _SEEN["val"] = dict(getattr(pl_module, "val_results", None) or {})

    def on_train_end(self, trainer, pl_module) -> None:
        _SEEN["train_end"] = weights_digest(pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        _SEEN["test_end"] = weights_digest(pl_module)


def model_names(only: list[str] | None = None) -> list[str]:
    names = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"--models: no such model config {unknown}; choices: {names}")
        names = [n for n in names if n in only]
    return names


def is_trainable(cfg) -> bool:
    """The model's own declaration (a class attribute; built when it is not one)."""
    flag = getattr(get_class(cfg.model._target_), "trainable", True)
    return flag if isinstance(flag, bool) else bool(build_model(cfg).trainable)


def compose_model(name: str, out_dir: Path, extra: tuple[str, ...] = ()) -> tuple[Any, list[str], dict]:
    overrides = [f"model={name}", *GENERIC, *EXTRAS.get(name, []), *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={out_dir}"], return_hydra_config=True)
    choices = {k: v for k, v in OmegaConf.to_container(cfg.hydra.runtime.choices).items()
               if not k.startswith("hydra") and v is not None}
    del cfg.hydra  # as inpaint.run gets it from @hydra.main
    return cfg, overrides, choices


def _finite(v: float) -> float | str:
    return v if math.isfinite(v) else repr(v)  # JSON has no NaN/inf; "nan" compares equal to "nan"


def _metrics(results: dict, prefix: str) -> dict[str, float | str]:
    return {k: _finite(float(v)) for k, v in sorted(results.items())
            if k.startswith(prefix) and "seconds" not in k}


def fingerprint(name: str, work: Path) -> dict[str, Any]:
    out_dir = work / name
    cfg, overrides, choices = compose_model(name, out_dir)
    trainable = is_trainable(cfg)
    task = "fit" if trainable else "test"
    # the capture callback goes in through the config, like any callback; it reads, never changes, the model
    cfg.task = task
    OmegaConf.update(cfg, "callbacks.fingerprint", {"_target_": f"{__name__}.WeightCapture"}, force_add=True)
    _SEEN.clear()
    started = time.perf_counter()
    results = run(cfg)
    seconds = time.perf_counter() - started
    final = _SEEN.get("train_end") if trainable else _SEEN.get("test_end")
    tested = _SEEN.get("test_end")
    if final is None or tested is None:
        raise RuntimeError(f"the fingerprint callback saw no {'training end' if final is None else 'test end'}")
    return {
        "task": task,
        "overrides": [*overrides, f"task={task}"],
        "choices": choices,
        "model_config": OmegaConf.to_container(cfg.model, resolve=True),
        "weights_sha256": final["sha256"],
        "weights_layout_sha256": final["layout_sha256"],
        "weights_tensors": final["tensors"],
        "tested_weights_sha256": tested["sha256"],
        "test": _metrics(results, "test/"),
        "val": _metrics(_SEEN.get("val") or results, "val/"),
        "seconds": round(seconds, 2),
    }


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def environment() -> dict[str, Any]:
    checkout = Path(inpaint.__file__).resolve().parents[1]
    status = _git(["status", "--porcelain", "--", "inpaint", "conf"], checkout)
    return {
        # relative to the checkout: the record names no path of the machine it ran on
        "inpaint": str(Path(inpaint.__file__).resolve().relative_to(checkout)),
        "conf": str(CONF_DIR.relative_to(checkout)),
        "commit": _git(["rev-parse", "HEAD"], checkout),
        "inpaint_or_conf_modified": None if status is None else bool(status),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def run_all(names: list[str]) -> dict[str, Any]:
    torch.set_num_threads(1)
    report: dict[str, Any] = {"environment": environment(), "generic_overrides": GENERIC, "models": {}}
    print(f"inpaint imported from {report['environment']['inpaint']} (conf: {CONF_DIR})", flush=True)
    with tempfile.TemporaryDirectory(prefix="fingerprint-") as tmp:
        for name in names:
            print(f"== {name}", flush=True)
            try:
                entry = fingerprint(name, Path(tmp))
            except Exception as e:  # recorded, and a failure of the whole script at the end
                traceback.print_exc()
                entry = {"error": f"{type(e).__name__}: {e}"}
            report["models"][name] = entry
            if "error" not in entry:
                print(f"   {entry['task']}: weights {entry['weights_sha256'][:16]}  test/psnr "
                      f"{entry['test'].get('test/psnr')}  ({entry['seconds']} s)", flush=True)
    return report


def compare(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """One line per model whose weights or metrics differ (or that failed, or is missing now)."""
    problems = []
    old_models, new_models = before["models"], now["models"]
    for name, old in old_models.items():
        new = new_models.get(name)
        if new is None:
            problems.append(f"{name}: not fingerprinted now (its config is gone or was not selected)")
            continue
        if "error" in new or "error" in old:
            if new.get("error") != old.get("error"):
                problems.append(f"{name}: error before: {old.get('error')}; now: {new.get('error')}")
            continue
        what = []
        for key in ("weights_sha256", "tested_weights_sha256"):
            if old[key] != new[key]:
                what.append(f"{key} {old[key][:12]} -> {new[key][:12]}")
        for stage in ("test", "val"):
            a, b = old.get(stage, {}), new.get(stage, {})
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    what.append(f"{key} {a.get(key)!r} -> {b.get(key)!r}")
        if what:
            problems.append(f"{name}: " + "; ".join(what))
        if old.get("overrides") != new.get("overrides"):
            print(f"note: {name}: the overrides changed since the baseline: {old.get('overrides')} -> "
                  f"{new.get('overrides')}")
        if old.get("weights_layout_sha256") != new.get("weights_layout_sha256"):
            print(f"note: {name}: state_dict keys, shapes or dtypes changed "
                  f"({old.get('weights_tensors')} -> {new.get('weights_tensors')} tensors)")
    for name in sorted(set(new_models) - set(old_models)):
        print(f"note: {name}: new model, no baseline to compare with")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the fingerprint JSON here")
    parser.add_argument("--models", help="comma-separated model config names (default: every conf/model/*.yaml)")
    parser.add_argument("--compare", type=Path, metavar="BEFORE.json",
                        help="compare with this fingerprint; exit 1 naming each model whose numbers differ")
    parser.add_argument("--current", type=Path, metavar="AFTER.json",
                        help="with --compare: compare this file instead of running the models")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.current and not args.compare:
        parser.error("--current goes with --compare")
    only = args.models.split(",") if args.models else None
    if args.current:
        report = json.loads(args.current.read_text())
    else:
        report = run_all(model_names(only))
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.out}")
    failed = [n for n, e in report["models"].items() if "error" in e]
    if args.compare:
        before = json.loads(args.compare.read_text())
        if only:
            before = {**before, "models": {k: v for k, v in before["models"].items() if k in only}}
        problems = compare(before, report)
        for line in problems:
            print(f"DIFFERS {line}")
        print(f"{len(problems)} of {len(before['models'])} model(s) differ from {args.compare}"
              if problems else f"all {len(before['models'])} model(s) identical to {args.compare}")
        return 1 if problems else 0
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

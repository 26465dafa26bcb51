"""experiments/gpu_check.py in its CPU quick mode: every section reports, GPU-only cases say they were skipped,
and the JSON and markdown land in --out. The GPU numbers themselves come from experiments/gpu_check.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import HANG_GUARD_S, REPO

SCRIPT = REPO / "experiments" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_quick_cpu(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "OUT": str(tmp_path / "ignored")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", "--quick", "--no-budgets", "--out", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"quick", "sizes", "env", "sections", "total_wall_s"} <= set(report)
    assert {"torch", "cuda", "lightning", "device"} <= set(report["env"])
    secs = report["sections"]
    assert set(secs) == {"latency", "train", "amp", "overhead", "density", "mganprior"}
    for sec in secs.values():
        assert {"status", "budget_s", "wall_s", "cases"} <= set(sec)
        assert sec["budget_s"] is None  # --no-budgets: every case runs, however slow the machine

    lat = secs["latency"]["cases"]
    for p in ("32-true", "bf16-mixed"):  # bf16 autocast is cheap enough on a CPU at 64 px
        assert lat[f"{p}/single"]["status"] == "ok", lat[f"{p}/single"]
        assert lat[f"{p}/pra"]["status"] == "ok", lat[f"{p}/pra"]
        assert lat[f"{p}/pra"]["mean_extra_passes"] >= 1  # 40-50 % holes need PRA passes
    assert lat["16-mixed/single"]["status"] == lat["16-mixed/pra"]["status"] == "skipped"
    train = secs["train"]["cases"]
    assert train["32-true"]["status"] == "ok" and train["32-true"]["median_s"] > 0
    assert train["bf16-mixed"]["status"] == train["16-mixed"]["status"] == "skipped"
    assert secs["amp"]["status"] == "skipped" and "CPU" in secs["amp"]["cases"]["16-mixed"]["reason"]
    (ov,) = secs["overhead"]["cases"].values()
    assert ov["status"] == "ok" and ov["overhead_ratio_median"] > 0
    density = secs["density"]["cases"]
    assert set(density) == {"pixelcnn", "row_lstm", "diag_bilstm", "flat_row_lstm"}
    for name, case in density.items():
        assert case["status"] == "ok", (name, case)
        assert case["train_step_s"] > 0 and case["fill_s"] > 0 and case["fill_keeps_known"]
        assert case["fill_hole_pixels"] > 0 and case["params"] > 0
    mgp = secs["mganprior"]["cases"]
    bench = mgp["inversion_bench"]
    assert bench["status"] == "ok", bench
    assert bench["batched_images_per_hour"] > 0 and bench["official_images_per_hour"] > 0
    assert bench["speedup"] == pytest.approx(bench["batched_images_per_hour"] / bench["official_images_per_hour"])
    assert bench["outputs_agree"] and bench["_setup"]["device"] == "cpu"
    check = mgp["invert_batched_vs_one_by_one"]
    assert check["status"] == "ok" and check["batched_equals_one_by_one"] and check["max_abs_diff"] <= 1e-9

    md = (tmp_path / "gpu_check.md").read_text()
    assert "## Latency" in md and "## Training iteration" in md and "skipped on CPU" in md
    assert "## Density models" in md and "| diag_bilstm |" in md and "## mGANprior inversion" in md
    assert f"{bench['speedup']:.1f}x" in md and "equal: True" in md
    assert not (tmp_path / "ignored").exists()  # --out wins over $OUT


def test_scale_mismatches():
    from importlib import util

    spec = util.spec_from_file_location("gpu_check", SCRIPT)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        mod = util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    # growth every 2 clean steps, one overflow at step 2 (halves, restarts the count)
    assert mod.scale_mismatches(8.0, [8.0, 16.0, 8.0, 8.0, 16.0], 2) == []
    # two scaler updates per iteration would double after every clean step
    assert mod.scale_mismatches(8.0, [16.0, 32.0, 64.0], 2) == [0, 2]

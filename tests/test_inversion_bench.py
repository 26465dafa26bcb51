"""experiments/inversion_bench.py on a tiny prior: the JSON has the issue's keys and the batched inversion's
output equals the official-style loop's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "inversion_bench.py"


def load_script():
    spec = importlib.util.spec_from_file_location("inversion_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inversion_bench_writes_rates_and_outputs_agree(tmp_path):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        load_script().main([
            "--images", "2", "--batch", "2", "--iterations", "3", "--resolution", "16", "--z-dim", "16",
            "--fmap-base", "64", "--fmap-max", "16", "--codes", "3", "--vgg", "none", "--threads", "1", "--repeats", "2",
            "--json", str(out),
        ])
    finally:
        torch.set_num_threads(threads)  # the script sets the process's thread count
    result = json.loads(out.read_text())
    for key in ("batched_images_per_hour", "official_images_per_hour", "official_history_off_images_per_hour",
                "speedup", "speedup_vs_history_off"):
        assert result[key] > 0, key
    assert result["outputs_agree"] is True
    assert result["max_abs_diff"] <= result["atol"]
    assert result["max_abs_diff_float64"] < 1e-9
    assert result["max_abs_diff_history_on_vs_off"] == 0.0  # the history changes the cost, not the result
    assert result["_setup"]["iterations"] == 3 and result["_setup"]["codes"] == 3
    assert 0.2 < result["_setup"]["hole_ratio"] < 0.3
    flops = result["flops_per_image_iteration"]
    # no VGG here: the batched step and the official step without history do the same arithmetic; the
    # history's re-render adds one generator forward per step
    assert abs(flops["batched"] - flops["official_history_off"]) <= 1e-6 * flops["batched"]
    assert flops["official"] > flops["official_history_off"]
    assert result["compute_bound_speedup"] == flops["official"] / flops["batched"]

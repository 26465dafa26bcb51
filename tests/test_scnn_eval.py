"""SC-NN is validated through ``inpaint()`` like every model, and still logs its own extra values."""

from __future__ import annotations

import csv
import math

from conftest import tiny

from inpaint.models.scnn import SCNNModule
from inpaint.run import run


def test_scnn_validation_scores_what_inpaint_returns_and_logs_its_extras(make_cfg, tmp_path, monkeypatch):
    original = SCNNModule.inpaint

    def oracle(self, image, mask, index=None):
        original(self, image, mask, index)  # the real procedure runs (and leaves its raw prediction) ...
        return image.clone()  # ... but the scored composite is the ground truth: MAE must be exactly 0

    monkeypatch.setattr(SCNNModule, "inpaint", oracle)
    run(make_cfg(*tiny(), "trainer.max_steps=2", "logger=csv"))
    rows = list(csv.DictReader((tmp_path / "run" / "csv" / "metrics.csv").open()))
    val = [r for r in rows if r.get("val/mae")]
    assert val, "no validation row was logged"
    assert float(val[-1]["val/mae"]) == 0.0  # validation went through inpaint()
    assert float(val[-1]["val/mse_full"]) > 0.0  # the raw prediction of the net, not the oracle
    assert math.isfinite(float(val[-1]["val/mse_full"]))
    assert 0.0 <= float(val[-1]["val/spike_rate"]) <= 1.0

"""SIGTERM and Ctrl-C: a run stops at a step boundary, keeps its work, says so in one line and exits 128 + signal;
resuming gives the uninterrupted result. Real signals to real CLI processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_GUARD_S, TINY, run_cli

# a tiny SC-NN fit long enough to be caught in the middle (no speed assumption: the test waits for steps)
FIT = [*TINY, "model.net.widths=[8,8,8,8,8]", "model.net.lif.time_steps=2", "trainer.max_steps=30",
       "trainer.val_check_interval=10", "callbacks.checkpoint_every.steps=null", "logger=csv",
       "data.eval_crops_per_image=8"]  # validations of several batches: a signal can land inside one


# a callback (loaded by the run from the test's folder) that sends the run SIGTERM after the first validation batch
# of step 10, as a user's kill could arrive at any moment
KILLER = """
import os, signal
import lightning as L


class SignalInValidation(L.Callback):
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if trainer.global_step == 10 and batch_idx == 0 and not trainer.sanity_checking:
            os.kill(os.getpid(), signal.SIGTERM)
"""


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "inpaint.run", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def logged_steps(run_dir: Path) -> int:
    """Training rows the CSV logger has written so far."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        return 0
    return sum(1 for line in path.read_text().splitlines()[1:] if line.split(",")[0] and "train" not in line[:5])


def wait_for(condition, proc: subprocess.Popen) -> None:
    """Poll until ``condition()``; a process that ends first, or a hang, fails the test (no speed limit)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (status {proc.returncode}) before the signal: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run made no progress within the hang guard")
        time.sleep(0.1)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_fit_saves_says_and_resumes_exactly(tmp_path: Path, sig: signal.Signals) -> None:
    run_dir = tmp_path / "run"
    proc = start([*FIT, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(lambda: logged_steps(run_dir) >= 3, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 128 + sig, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith(f"stopped by {sig.name}")]
    assert len(lines) == 1 and "resume=" in lines[0] and "Traceback" not in err, err[-3000:]
    card = json.loads((run_dir / "card.json").read_text())
    assert card["status"] == "interrupted" and card["signal"] == sig.name and 0 < card["step"] < 30
    saved = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == card["step"]
    assert not (run_dir / "metrics.json").exists()
    if sig != signal.SIGTERM:
        return  # resuming is the same for both signals: checked once
    # a signal in the middle of a validation (here sent by the run itself after the first validation batch of
    # step 10): the validation finishes, is saved with the step, and only then the run stops
    (tmp_path / "stop_in_validation.py").write_text(KILLER)
    during_val = tmp_path / "during_val"
    killed = run_cli("inpaint.run", *FIT, f"hydra.run.dir={during_val}",
                     "+callbacks.killer._target_=stop_in_validation.SignalInValidation", cwd=tmp_path,
                     env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert killed.returncode == 143, killed.stderr[-3000:]
    assert "stopped by SIGTERM at step 10 (fit)" in killed.stderr
    at_10 = torch.load(during_val / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert at_10["global_step"] == 10
    import csv

    with open(during_val / "csv" / "metrics.csv") as f:
        val_steps = [r["step"] for r in csv.DictReader(f) if r.get("val/psnr")]
    assert val_steps == ["9"], val_steps  # the step-10 validation (Lightning's 0-based step 9) ran and was logged

    straight = run_cli("inpaint.run", *FIT, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    b = final_weights(tmp_path / "straight")
    for stopped, step in ((run_dir, card["step"]), (during_val, 10)):
        resumed = run_cli("inpaint.run", f"resume={stopped}", cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        a = final_weights(stopped)
        differ = sorted(k for k in a if not torch.equal(a[k], b[k]))
        assert set(a) == set(b) and not differ, f"stopped at step {step}, resumed: {differ[:5]} differ"
        assert json.loads((stopped / "card.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_a_signal_during_test_stops_without_a_result(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["model=biharmonic", "task=test", "logger=none", *TINY, "data.eval_crops_per_image=400",
            "+data.eval_batch_size=1", "callbacks.progress_log.every_seconds=0", f"hydra.run.dir={run_dir}"]
    proc = start(args, tmp_path)
    log = run_dir / "run.log"
    wait_for(lambda: log.is_file() and "test: batch 3/" in log.read_text(), proc)  # inside the test loop
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert sum(ln.startswith("stopped by SIGTERM") for ln in err.splitlines()) == 1, err[-3000:]
    assert "Traceback" not in err
    card = json.loads((run_dir / "card.json").read_text())
    assert card["status"] == "interrupted" and card["checkpoint"] is None and card["step"] == 0
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_a_signal_before_training_starts_is_a_clean_stop_too(tmp_path: Path) -> None:
    """Caught outside Lightning's loops (here while the data are set up): the same line, card and status."""
    run_dir = tmp_path / "run"
    proc = start([*FIT, f"hydra.run.dir={run_dir}"], tmp_path)
    wait_for(lambda: (run_dir / ".hydra").is_dir(), proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert sum(ln.startswith("stopped by SIGINT") for ln in err.splitlines()) == 1 and "Traceback" not in err
    assert json.loads((run_dir / "card.json").read_text())["status"] == "interrupted"

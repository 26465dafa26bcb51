"""A resumable Optuna sweep killed with SIGKILL in the middle of a trial continues where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import HANG_GUARD_S, run_cli, tiny

from inpaint.sweepers import INTERRUPTED, derived_seed

SWEEP = ["inpaint.run", "-m", "hparams_search=scnn_lr_optuna", "hydra.sweeper.n_trials=3", *tiny(),
         "logger=none"]


def _rows(sweep: Path) -> list[dict]:
    path = sweep / "trials.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _start_and_kill_in_second_trial(sweep: Path, cwd: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    log = open(cwd / "first.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", *SWEEP, f"hydra.sweep.dir={sweep}"], cwd=cwd, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + HANG_GUARD_S
        # the first trial's row is written, and the second trial's job has started
        while not (_rows(sweep) and (sweep / "1" / ".hydra").is_dir()):
            assert proc.poll() is None, (cwd / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the sweep did not reach its second trial"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(HANG_GUARD_S)
        log.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_killed_sweep_resumes(tmp_path):
    sweep = tmp_path / "sweep"
    _start_and_kill_in_second_trial(sweep, tmp_path)
    assert len(_rows(sweep)) == 1, "the second trial finished before the kill: the test needs a slower trial"
    first_job = sweep / "0" / "metrics.json"
    first_mtime = first_job.stat().st_mtime_ns

    proc = run_cli(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 of 3 trials finished, 2 to run, jobs from #2" in proc.stdout + proc.stderr

    # the study: trial 0 kept, trial 1 failed as interrupted, its parameters run again as trial 2, one new
    study = optuna.load_study(study_name="scnn_lr", storage=f"sqlite:///{sweep}/optuna.db")
    states = [t.state for t in study.trials]
    S = optuna.trial.TrialState
    assert states == [S.COMPLETE, S.FAIL, S.COMPLETE, S.COMPLETE]
    assert study.trials[1].system_attrs[INTERRUPTED] is True
    lr = [t.params["model.optimizer.lr"] for t in study.trials]
    assert lr[2] == lr[1]
    # a re-seeded sampler: the new trial does not repeat the seed's first draw (trial 0's value)
    assert len({lr[0], lr[1], lr[3]}) == 3

    # job directories 0..3, none overwritten; the first trial did not run again
    assert sorted(p.name for p in sweep.iterdir() if p.name.isdigit()) == ["0", "1", "2", "3"]
    assert first_job.stat().st_mtime_ns == first_mtime
    assert all((sweep / j / "metrics.json").is_file() for j in ("0", "2", "3"))
    assert not (sweep / "1" / "metrics.json").exists()

    # the trials table keeps the earlier trial and adds the two new ones
    rows = _rows(sweep)
    assert [r["job"] for r in rows] == [0, 2, 3]
    assert all(r["status"] == "ok" for r in rows)
    assert float(rows[1]["overrides"]["model.optimizer.lr"]) == pytest.approx(lr[1])
    md = (sweep / "trials.md").read_text()
    assert md.startswith("# Trials (3)")

    # the study is complete: running the command once more starts no job
    again = run_cli(*SWEEP, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to run" in again.stdout + again.stderr
    assert len(optuna.load_study(study_name="scnn_lr", storage=f"sqlite:///{sweep}/optuna.db").trials) == 4


def test_derived_seed_is_deterministic_and_fresh_sweeps_keep_the_seed():
    assert derived_seed(42, 0) == 42
    assert derived_seed(42, 3) == derived_seed(42, 3)
    assert len({derived_seed(42, n) for n in range(1, 6)} | {42}) == 6

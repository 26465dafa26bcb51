"""A killed run loses little and resumes exactly: periodic last.ckpt, the resumable data order, RNG states
in the checkpoint, resume into the same run directory, logs that hold the whole story."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import HANG_GUARD_S, run_cli, tiny
from torch.utils.data import Dataset

from inpaint.callbacks import LastCheckpoint, rng_states, set_rng_states
from inpaint.data.resumable import ResumableDataLoader, ResumableSampler, train_sample_rng
from inpaint.loggers import ContinuingCSVLogger
from inpaint.run import build_datamodule, check_accelerator, resume_arguments, run


class _Keys(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key):
        index, epoch, position = key
        return torch.tensor([index, epoch, position, int(train_sample_rng(7, key).integers(1 << 30))])


def _batches(loader) -> list[list[int]]:
    return [b.tolist() for b in loader]


# ------------------------------------------------------------------------------------ data order
def test_sampler_is_a_pure_function_of_seed_and_epoch():
    data = _Keys(10)
    a, b = ResumableSampler(data, seed=3), ResumableSampler(data, seed=3)
    b.set_epoch(1)
    first, second = [k[0] for k in a], [k[0] for k in b]
    assert sorted(first) == list(range(10)) and first != second  # a permutation, reshuffled per epoch
    assert first == [k[0] for k in ResumableSampler(data, seed=3)]
    assert first != [k[0] for k in ResumableSampler(data, seed=4)]


def test_sampler_shards_partition_the_epoch():
    data = _Keys(11)
    shards = []
    for rank in range(3):
        s = ResumableSampler(data, seed=1, drop_last=True)
        s.num_replicas, s.rank = 3, rank
        s.num_samples = len(data) // 3
        s.total_size = s.num_samples * 3
        shards.append([k[2] for k in s])
    positions = sorted(p for shard in shards for p in shard)
    assert positions == list(range(9))  # each position once, the odd two dropped


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_mid_epoch_with_the_same_batches(workers):
    def loader():
        return ResumableDataLoader(_Keys(12), sampler=ResumableSampler(_Keys(12), seed=5), batch_size=4,
                                   num_workers=workers)

    full = loader()
    full.sampler.set_epoch(2)
    reference = _batches(full)
    killed = loader()
    killed.sampler.set_epoch(2)
    it = iter(killed)
    next(it)
    state = killed.state_dict()
    assert state == {"epoch": 2, "batches": 1}
    resumed = loader()
    resumed.load_state_dict(state)
    it = iter(resumed)  # created before the epoch is set, as Lightning does on resume
    resumed.sampler.set_epoch(2)
    assert [b.tolist() for b in it] == reference[1:]
    assert resumed.state_dict() == {"epoch": 2, "batches": 3}


def test_training_samples_do_not_depend_on_the_number_of_workers(make_cfg):
    batches = {}
    for workers in (0, 2):
        dm = build_datamodule(make_cfg(*tiny(), f"data.num_workers={workers}"))
        dm.setup("fit")
        batches[workers] = [b["image"] for b in dm.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(batches[0], batches[2], strict=True))


def test_rng_states_round_trip_through_a_weights_only_checkpoint():
    torch.manual_seed(1)
    np.random.seed(2)
    saved = rng_states()
    buf = io.BytesIO()
    torch.save(saved, buf)
    expected = (torch.rand(3), np.random.rand(3), __import__("random").random())
    torch.manual_seed(9)
    np.random.seed(9)
    set_rng_states(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    again = (torch.rand(3), np.random.rand(3), __import__("random").random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


# ------------------------------------------------------------------------------------ checkpoints
def test_last_checkpoint_is_written_between_validations(make_cfg, monkeypatch):
    """Every 2 steps, validation every 4: the periodic save due at step 4 waits until step 4's validation
    has run (a checkpoint taken before it would resume without it); none twice for one step (the end of
    training at step 6 adds nothing)."""
    cfg = make_cfg(*tiny(), "trainer.max_steps=6", "trainer.val_check_interval=4", "logger=none",
                   "callbacks.checkpoint_every.steps=2", "callbacks.checkpoint_every.minutes=null",
                   "test_after_fit=false")
    events: list[str] = []

    def save(self, trainer):
        events.append(f"save@{trainer.global_step}")
        self._saved_step = trainer.global_step

    monkeypatch.setattr(LastCheckpoint, "save", save)
    from inpaint.models.base import InpaintModule

    original = InpaintModule.on_validation_epoch_end
    monkeypatch.setattr(InpaintModule, "on_validation_epoch_end",
                        lambda self: (events.append(f"val@{self.global_step}"), original(self))[1])
    run(cfg)
    assert events == ["save@2", "val@4", "save@4", "save@6"]


def test_checkpoint_every_rejects_non_positive_values():
    with pytest.raises(ValueError, match=r"callbacks\.checkpoint_every\.steps=0"):
        LastCheckpoint("x", steps=0)


# ------------------------------------------------------------------------------------ resume arguments
def _fake_run(tmp_path: Path, overrides: list[str]) -> Path:
    run_dir = tmp_path / "outputs" / "fit" / "runs" / "r1"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 42\n")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    return run_dir


def test_resume_continues_the_run_with_its_own_overrides(tmp_path):
    run_dir = _fake_run(tmp_path, ["model=isnet", "trainer.max_steps=100", "data.batch_size=2"])
    args = resume_arguments([f"resume={run_dir}", "trainer.max_steps=200"])
    assert args[:3] == ["model=isnet", "data.batch_size=2", "trainer.max_steps=200"]
    assert args[3] == f"ckpt_path='{run_dir / 'checkpoints' / 'last.ckpt'}'"
    assert args[4] == f"hydra.run.dir='{run_dir}'"
    assert (run_dir / ".hydra" / "before_resume_1" / "overrides.yaml").is_file()
    # the long form does the same; task=test and foreign checkpoints are left alone
    long = resume_arguments([f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"])
    assert long[-1] == f"hydra.run.dir='{run_dir}'" and (run_dir / ".hydra" / "before_resume_2").is_dir()
    test = [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "task=test"]
    assert resume_arguments(test) == test
    (tmp_path / "foreign.ckpt").write_bytes(b"x")
    assert resume_arguments([f"ckpt_path={tmp_path / 'foreign.ckpt'}"]) == [f"ckpt_path={tmp_path / 'foreign.ckpt'}"]


def test_resume_errors_name_what_is_missing(tmp_path):
    run_dir = _fake_run(tmp_path, [])
    (run_dir / "checkpoints" / "last.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"no checkpoint to resume in .*r1.*checkpoint_every"):
        resume_arguments([f"resume={run_dir}"])
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        resume_arguments([f"resume={tmp_path / 'nothing'}"])
    with pytest.raises(ValueError, match=r"hydra\.sweep\.dir"):
        resume_arguments(["-m", f"resume={run_dir}"])
    # a DDP worker of a resumed run gets the rewritten arguments plus the run dir again: left as they are
    worker = [f"ckpt_path='{run_dir}/checkpoints/last.ckpt'", f"hydra.run.dir='{run_dir}'", f'hydra.run.dir="{run_dir}"']
    assert resume_arguments(worker) == worker


def test_csv_logger_continues_and_drops_the_killed_tail(tmp_path):
    first = ContinuingCSVLogger(str(tmp_path), name="csv", version="")
    for step in range(6):
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.save()
    second = ContinuingCSVLogger(str(tmp_path), name="csv", version="")  # resumed from step 4
    for step in (4, 5, 6):
        second.log_metrics({"train/loss": 10.0 + step, "val/psnr": 20.0}, step=step)
    second.save()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    assert [float(r["train/loss"]) for r in rows] == [0, 1, 2, 3, 14, 15, 16]
    assert rows[0]["val/psnr"] == "" and rows[-1]["val/psnr"] == "20.0"


def test_gpu_trainer_without_cuda_names_the_build_and_the_fix(make_cfg, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=rf"torch {re.escape(torch.__version__)}.*trainer=cpu"):
        check_accelerator(make_cfg("trainer=gpu"))
    check_accelerator(make_cfg("trainer=cpu"))


# ------------------------------------------------------------------------------------ kill -9
FAULT = [
    *tiny(),
    "data.num_workers=2",
    "trainer.max_steps=24",
    "trainer.val_check_interval=7",
    "callbacks.checkpoint_every.steps=3",
    "callbacks.checkpoint_every.minutes=null",
]


def _launch(run_dir: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "inpaint.run", *FAULT, f"hydra.run.dir={run_dir}"], cwd=cwd,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.xdist_group("fault")
def without_timings(path: Path) -> list[dict]:
    """The rows of a metrics.csv without the wall-clock columns (fill time per image), which no two runs share."""
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in csv.DictReader(open(path))]


@pytest.mark.slow
def test_sigkill_then_resume_matches_the_uninterrupted_run(tmp_path):
    whole = _launch(tmp_path / "whole", tmp_path)
    assert whole.wait(timeout=HANG_GUARD_S) == 0, whole.stderr.read()[-3000:]
    killed = _launch(tmp_path / "killed", tmp_path)
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + HANG_GUARD_S
    while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    # the loggers receive a step's metrics just after the checkpoint of that step; LastCheckpoint flushes
    # them when the next step starts: kill once that row is on disk (any moment after it is fair)
    csv_file = tmp_path / "killed" / "csv" / "metrics.csv"
    step = _state(last)["global_step"]
    while killed.poll() is None and time.monotonic() < deadline and not (
        csv_file.exists() and f",{step - 1}," in csv_file.read_text()
    ):
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=HANG_GUARD_S) == -signal.SIGKILL
    saved_step = _state(last)["global_step"]
    assert 3 <= saved_step < 24  # killed after the first periodic checkpoint, before the end

    resumed = run_cli("inpaint.run", f"resume={tmp_path / 'killed'}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states" in resumed.stdout
    a, b = _state(tmp_path / "whole/checkpoints/last.ckpt"), _state(last)
    assert a["global_step"] == b["global_step"] == 24
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), key  # bit-identical weights
    for key in ("optimizer_states",):
        assert torch.equal(a[key][0]["state"][0]["exp_avg"], b[key][0]["state"][0]["exp_avg"])
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "killed")]
    assert metrics[0]["test"] == metrics[1]["test"] and metrics[0]["last_val"] == metrics[1]["last_val"]
    # one run directory: same CSV rows, grids, a run.log that tells both parts
    rows = [without_timings(tmp_path / d / "csv" / "metrics.csv") for d in ("whole", "killed")]
    assert rows[0] == rows[1] and len(rows[0]) > 3
    assert sorted(p.name for p in (tmp_path / "killed" / "grids").iterdir()) == [
        "step=000007.png", "step=000014.png", "step=000021.png"]
    log = (tmp_path / "killed" / "run.log").read_text()
    assert log.count("GPU available") == 2 and "Restored all states" in log and "| all |" in log


# ------------------------------------------------------------------------------------ logs
@pytest.mark.slow
def test_console_is_clean_and_run_log_holds_the_story(tmp_path):
    proc = run_cli("inpaint.run", *tiny(), "trainer.enable_model_summary=true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    for noise in ("Tip:", "LeafSpec", "on_after_batch_transfer", "Epoch 0/-2", "anonymous"):
        assert noise not in console, noise
    run_dir = Path(proc.stdout.split("Run directory:")[1].split()[0])
    log = (run_dir / "run.log").read_text()
    for story in ("GPU available", "Total params", "`Trainer.fit` stopped", "| all |", "Run directory:"):
        assert story in log, story

    failed = run_cli("inpaint.run", *tiny(), "model.loss_region=nowhere", "hydra.run.dir=failed", cwd=tmp_path)
    assert failed.returncode == 1 and "loss_region" in failed.stderr and "Traceback" not in failed.stderr
    assert "error: model.loss_region must be" in (tmp_path / "failed" / "run.log").read_text()

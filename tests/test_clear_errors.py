"""Nothing silent, nothing slow to start: one line for a wrongly typed override, a checkpoint whose weights do not
fit, a run directory given as a checkpoint, an output that cannot be written; warnings for masks that say less
than they seem; progress lines without a terminal; a command line that does not load Lightning to say --help."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, run_cli, tiny, write_photos
from PIL import Image

from inpaint.checkpoints import CheckpointMismatchError, check_state_dict, resolve_checkpoint
from inpaint.cli import check_override_types
from inpaint.data.datamodule import usable_workers
from inpaint.predict import check_output_dir, predict, read_mask
from inpaint.run import build_model, run


def test_the_command_line_loads_no_heavy_package_before_a_job_starts() -> None:
    code = ("import sys, inpaint.run; print(sorted(m for m in ('lightning', 'torch', 'numpy', 'wandb', 'optuna', "
            "'matplotlib', 'submitit') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_help_and_a_config_error_answer_from_the_real_cli(tmp_path: Path) -> None:
    helped = run_cli("inpaint.run", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "Configuration groups" in helped.stdout
    groups = helped.stdout.split("== Config ==")[0]
    assert "model:" in groups and "predict" not in groups  # inpaint.predict's root lives beside conf/
    typed = run_cli("inpaint.run", "trainer.max_steps=abc", cwd=tmp_path)
    assert typed.returncode == 1 and "Traceback" not in typed.stderr
    assert "trainer.max_steps='abc': trainer.max_steps takes an integer (its default is 300)" in typed.stderr


def test_wrongly_typed_overrides_name_key_value_and_type() -> None:
    with pytest.raises(ValueError, match=r"trainer.max_steps='abc': .* takes an integer"):
        check_override_types(["trainer.max_steps=abc"])
    with pytest.raises(ValueError, match=r"model.optimizer.lr='fast': .* takes a number"):
        check_override_types(["model=isnet", "model.optimizer.lr=fast"])
    with pytest.raises(ValueError, match=r"'x'.* takes a number"):
        check_override_types(["-m", "model.optimizer.lr=1e-3,x"])
    check_override_types(["trainer.max_steps=5", "data.image_size=[32,48]", "model.optimizer.lr=1", "+foo.bar=x"])
    check_override_types(["model=nope", "trainer.max_steps=abc"])  # a bad choice is Hydra's to report


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from hydra import compose, initialize_config_dir

    from inpaint.run import CONF_DIR

    out = tmp_path_factory.mktemp("trained") / "run"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        run(compose("train", overrides=[*tiny(), "logger=none", f"paths.output_dir={out}"]))
    return out


def test_a_checkpoint_whose_weights_do_not_fit_is_one_line(trained: Path, make_cfg) -> None:
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    wider = build_model(make_cfg(*tiny(), "model.net.widths=[16,8,8,8,8]"))
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict(ckpt["state_dict"], wider, "x.ckpt")
    message = str(info.value)
    assert "\n" not in message and "SCNNModule" in message and "wrong shape" in message and "x.ckpt" in message
    state = dict(ckpt["state_dict"])
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"missing 1 key.*unexpected 1 key.*extra.weight"):
        check_state_dict(state, build_model(make_cfg(*tiny())), "y.ckpt")


@pytest.mark.slow
def test_test_and_predict_report_a_misfit_checkpoint_in_one_line(trained: Path, tmp_path: Path) -> None:
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["state_dict"].pop(next(iter(ckpt["state_dict"])))
    broken = tmp_path / "broken.ckpt"
    torch.save(ckpt, broken)
    tested = run_cli("inpaint.run", "task=test", f"ckpt_path={broken}", *tiny(), "logger=none", cwd=tmp_path)
    assert tested.returncode == 1 and "Traceback" not in tested.stderr and "missing 1 key" in tested.stderr
    photo = write_photos(tmp_path / "in", 1)[0]
    mask = tmp_path / "mask.png"
    Image.fromarray(np.pad(np.full((10, 10), 255, np.uint8), ((4, 34), (4, 26)))).save(mask)
    made = run_cli("inpaint.predict", f"ckpt_path={broken}", f"input={photo}", f"mask={mask}",
                   f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert made.returncode == 1 and "Traceback" not in made.stderr and "missing 1 key" in made.stderr


def test_a_run_directory_stands_for_its_checkpoint(trained: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="inpaint.checkpoints"):
        chosen = resolve_checkpoint(trained)
    assert Path(chosen).name in ("best.ckpt", "last.ckpt") and "is a directory: using" in caplog.text
    assert resolve_checkpoint(trained, ("last.ckpt",)) == str(trained / "checkpoints" / "last.ckpt")
    with pytest.raises(FileNotFoundError, match="without best.ckpt or last.ckpt"):
        resolve_checkpoint(trained / "csv" if (trained / "csv").is_dir() else trained.parent)


def test_an_output_that_is_a_file_or_unwritable_is_refused(tmp_path: Path) -> None:
    existing = tmp_path / "out.png"
    existing.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"output=.*out.png is an existing file"):
        check_output_dir(existing)
    with pytest.raises(ValueError, match=r"cannot be written"):
        check_output_dir(existing / "below")  # a folder under a file cannot exist
    check_output_dir(tmp_path / "new" / "deeper")
    assert (tmp_path / "new" / "deeper").is_dir()


def test_masks_that_say_less_than_they_seem_are_warned(make_cfg, tmp_path: Path, caplog) -> None:
    photo = write_photos(tmp_path / "in", 1, size=(24, 20))[0]
    grey = np.zeros((24, 20), np.uint8)
    grey[2:8, 2:8], grey[10:14, 10:14] = 100, 200
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with caplog.at_level(logging.WARNING, logger="inpaint.predict"):
        mask = read_mask(tmp_path / "grey.png")
    assert mask.sum() == 16  # only the 200s reach gray level 128
    assert "52 pixel(s) of intermediate gray" in caplog.text and ">= 128" in caplog.text
    Image.fromarray(np.zeros((24, 20), np.uint8)).save(tmp_path / "none.png")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="inpaint.predict"):
        written = predict(make_cfg("model=biharmonic", f"input={photo}", f"mask={tmp_path / 'none.png'}",
                                   f"output={tmp_path / 'out'}", config="predict"))
    assert "has no hole pixel" in caplog.text and "returned unchanged" in caplog.text
    assert np.array_equal(np.asarray(Image.open(written[0]).convert("RGB")),
                          np.asarray(Image.open(photo).convert("RGB")))


def test_worker_counts_are_capped_by_the_cores(caplog) -> None:
    import os

    cores = len(os.sched_getaffinity(0))
    with caplog.at_level(logging.INFO, logger="inpaint.data.datamodule"):
        assert usable_workers(cores + 3) == cores
    assert "capped" in caplog.text and usable_workers(0) == 0
    with pytest.raises(ValueError, match="num_workers=-1"):
        usable_workers(-1)


def test_progress_lines_without_a_terminal(make_cfg, tmp_path: Path, caplog) -> None:
    cfg = make_cfg(*TINY, "model.net.widths=[8,8,8,8,8]", "model.net.lif.time_steps=2", "logger=none",
                   "callbacks.progress_log.every_seconds=0", "trainer.max_steps=3", "trainer.val_check_interval=3")
    with caplog.at_level(logging.INFO, logger="inpaint.callbacks"):
        run(cfg)
    lines = [r.getMessage() for r in caplog.records if r.name == "inpaint.callbacks"]
    assert any(ln.startswith("train: step 3/3 (100%), loss ") and "steps/s, ETA" in ln for ln in lines), lines
    assert any(ln.startswith("test: batch ") for ln in lines), lines


def test_images_smaller_than_the_crop_follow_the_upscale_rule(make_cfg, tmp_path: Path, caplog) -> None:
    from inpaint.run import build_datamodule

    write_photos(tmp_path / "tiny", 6, size=(8, 8))
    write_photos(tmp_path / "small", 6, size=(20, 24))
    common = ["data=folder", "data.image_size=32", "data.num_workers=0", "logger=none"]
    dm = build_datamodule(make_cfg(*common, f"data.root={tmp_path / 'tiny'}"))
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"image .*\.png is 8x8: it would be enlarged 4\.0x .*data\.upscale=2"):
        dm._dataset("train")[0]
    dm = build_datamodule(make_cfg(*common, f"data.root={tmp_path / 'tiny'}", "data.upscale=4"))
    dm.setup("fit")
    assert dm._dataset("train")[0]["image"].shape == (3, 32, 32)
    dm = build_datamodule(make_cfg(*common, f"data.root={tmp_path / 'small'}"))
    dm.setup("fit")
    with caplog.at_level(logging.WARNING, logger="inpaint.data.datamodule"):
        for i in range(3):
            dm._dataset("train")[i]
    warned = [r.getMessage() for r in caplog.records if "is enlarged 1.60x" in r.getMessage()]
    assert len(warned) == 1 and "(1 such image load(s) in the train split so far" in warned[0]
    with pytest.raises(ValueError, match="data.upscale=0.5 must be >= 1"):
        build_datamodule(make_cfg(*common, f"data.root={tmp_path / 'small'}", "data.upscale=0.5"))


@pytest.mark.slow
def test_shell_completion_of_the_command(tmp_path: Path) -> None:
    """Hydra's bash completion works for the command (what ``eval "$(inpaint-run -sc install=bash)"`` uses)."""
    import os

    env = {**os.environ, "COMP_LINE": "inpaint-run model=bi", "COMP_POINT": "20"}
    proc = subprocess.run([sys.executable, "-m", "inpaint.run", "-sc", "query=bash"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "model=biharmonic" in proc.stdout.split()


def test_tensorboard_hides_the_killed_tail_after_a_resume(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from inpaint.loggers import ContinuingTensorBoardLogger

    first = ContinuingTensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    for step in range(10):  # the killed run got to step 9; its checkpoint was at step 6
        first.log_metrics({"train/loss": float(step)}, step=step)
    first.finalize("failed")
    resumed = ContinuingTensorBoardLogger(save_dir=str(tmp_path), name="tb", version="")
    resumed.log_hyperparams({"lr": 0.1})  # opens the writer early, as Lightning may
    for step in range(6, 12):
        resumed.log_metrics({"train/loss": 100.0 + step}, step=step)
    resumed.finalize("success")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    seen = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in seen] == list(range(12))  # every step once
    assert dict(seen)[5] == 5.0 and dict(seen)[6] == 106.0


def _rank_streams(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from inpaint.callbacks import LastCheckpoint, rng_for_rank

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(100 + rank)  # ranks draw different streams (dropout, sampled fills)
    state = LastCheckpoint(dirpath=out).state_dict()  # a checkpoint save: every rank takes part
    expected = torch.rand(3)
    restored = rng_for_rank(state, rank, world)
    torch.manual_seed(0)
    from inpaint.callbacks import set_rng_states

    set_rng_states(restored)
    torch.save({"expected": expected, "resumed": torch.rand(3), "ranks": len(state["rng_per_rank"])},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_every_ddp_rank_resumes_its_own_random_stream(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank_streams, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for r in results:
        assert r["ranks"] == 2 and torch.equal(r["expected"], r["resumed"])
    assert not torch.equal(results[0]["expected"], results[1]["expected"])


def test_a_checkpoint_without_per_rank_states_restores_rank_zeros(caplog) -> None:
    from inpaint.callbacks import rng_for_rank, rng_states

    old = {"rng": rng_states()}  # written before the states were kept per rank
    with caplog.at_level(logging.WARNING, logger="inpaint.callbacks"):
        assert rng_for_rank(old, 1, 2) is old["rng"]
    assert "every rank restores rank 0's" in caplog.text
    assert rng_for_rank(old, 0, 1) is old["rng"]

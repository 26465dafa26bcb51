"""Results cards and ``python -m inpaint.report``: real short runs of the CLI, then the leaderboard."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HANG_GUARD_S, TINY, tiny

from inpaint.report import find_run_dirs, main

# the images every run here evaluates (test photos of data=sample, 32 px crops, 2 per photo)
DATA = [o for o in TINY if o.startswith("data.")]
BIHARMONIC = ["model=biharmonic", "task=test", *DATA, "logger=none"]
RUNS = {
    "scnn": [*tiny("scnn"), "logger=wandb"],
    "biharmonic": BIHARMONIC,
    "center": [*BIHARMONIC, "mask=center"],
    "size48": [*BIHARMONIC, "data.image_size=48"],
    "per_bucket": [*BIHARMONIC, "eval.per_bucket=true"],
    "failed": [*BIHARMONIC, "data=folder", "data.root=/does-not-exist"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The run directories of :data:`RUNS`, run once through the real command line (in parallel), plus
    ``unfinished``: a run directory whose job has not tested yet (no card)."""
    root = tmp_path_factory.mktemp("runs")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "NETRC": str(root / "no-netrc")}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("WANDB_API_KEY", None)
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "inpaint.run", *over, f"hydra.run.dir={root / name}"],
                               cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, over in RUNS.items()
    }
    # the trained scnn evaluated again from its checkpoint: its steps and time come from the training run
    out, _ = procs["scnn"].communicate(timeout=HANG_GUARD_S)
    assert procs["scnn"].returncode == 0, out[-3000:]
    over = [*tiny("scnn"), "task=test", f"ckpt_path={root / 'scnn' / 'checkpoints' / 'best.ckpt'}", "logger=none"]
    procs["scnn_test"] = subprocess.Popen(
        [sys.executable, "-m", "inpaint.run", *over, f"hydra.run.dir={root / 'scnn_test'}"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=HANG_GUARD_S)
        assert (proc.returncode != 0) == (name == "failed"), out[-3000:]
    unfinished = root / "unfinished"
    shutil.copytree(root / "biharmonic" / ".hydra", unfinished / ".hydra")
    (unfinished / "run.log").write_text("[2026-01-01][inpaint][INFO] - training\n")
    return root


def _report(runs: Path, out: Path, *args: str) -> str:
    assert main([str(runs), "--out", str(out), *args]) == 0
    return (out / "leaderboard.md").read_text()


def _card(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "card.json").read_text())


@pytest.mark.slow
def test_cards_record_the_run(runs):
    card = _card(runs, "scnn")
    assert card["status"] == "ok" and card["model"] == "scnn" and card["task"] == "fit"
    assert card["command"].startswith("python -m inpaint.run") and "trainer.max_steps=2" in card["command"]
    assert card["training"]["steps"] == 2 and card["training"]["seconds"] > 0
    assert card["parameters"]["total"] == card["parameters"]["trainable"] > 0
    # paths are relative to the directory the run started in: a card names no directory of this machine
    assert card["checkpoint"] == "scnn/checkpoints/best.ckpt"
    for name in ("scnn", "scnn_test", "biharmonic"):
        assert str(runs) not in (runs / name / "card.json").read_text(), name
    assert card["seconds_per_image"] > 0 and card["checkpoint"].endswith("best.ckpt")
    assert card["metrics"]["test/count"] == 4 and "test/psnr" in card["metrics"]
    assert card["protocol"]["images"]["count"] == 4 and card["protocol"]["image_size"] == 32
    assert card["protocol"]["mask"]["name"] == "freeform" and len(card["fingerprint"]) == 12
    assert "hydra.run.dir" not in card["settings"] and card["settings"]["trainer.max_steps"] == "2"
    assert card["data"]["name"] == "sample" and card["data"]["config"]["image_size"] == 32
    md = (runs / "scnn" / "card.md").read_text()
    assert "| all | 4 |" in md and card["fingerprint"] in md and "2 steps" in md
    # logger=wandb: the card's leaderboard row as a W&B Table in the (offline) run
    tables = list((runs / "scnn" / "wandb").glob("offline-run-*/files/media/table/test/leaderboard_row_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"][:3] == ["model", "settings", "train steps"] and table["data"][0][0] == "scnn"

    assert card["wandb_url"] is None and card["wandb_run_id"] and "offline" in md  # no W&B account here

    tested = _card(runs, "scnn_test")
    assert tested["task"] == "test" and tested["fingerprint"] == card["fingerprint"]
    assert tested["training"] == card["training"] and "ckpt_path" not in tested["settings"]
    assert tested["metrics"]["test/psnr"] == pytest.approx(card["metrics"]["test/psnr"])

    bih = _card(runs, "biharmonic")
    assert bih["model"] == "biharmonic" and bih["parameters"] == {"total": 0, "trainable": 0}
    assert bih["training"] == {"steps": None, "seconds": None} and bih["checkpoint"] is None
    # the same images and masks, whatever the model: the same protocol
    assert bih["fingerprint"] == card["fingerprint"]
    assert _card(runs, "center")["protocol"]["images"] == bih["protocol"]["images"]
    assert _card(runs, "center")["protocol"]["masks"] != bih["protocol"]["masks"]
    pb = _card(runs, "per_bucket")["protocol"]
    assert set(pb["bucket_digests"]) == {"10-20", "20-30", "30-40", "40-50"}
    assert pb["images"] == bih["protocol"]["images"]  # the same images, four times with other masks
    assert _card(runs, "per_bucket")["metrics"]["test/count"] == 16

    failed = _card(runs, "failed")
    assert failed["status"] == "failed" and "does-not-exist" in failed["error"]


@pytest.mark.slow
def test_leaderboard_groups_ranks_and_lists_failures(runs, tmp_path):
    md = _report(runs, tmp_path / "lb")
    groups = md.split("\n## ")[1:]
    first = groups[0]
    assert first.startswith("Group 1")
    # the short-trained scnn is far below (trained, and tested again from its checkpoint: equal scores)
    assert "| 1 | biharmonic |" in first and "| 2 | scnn |" in first and "| 3 | scnn |" in first
    reasons = {line for g in groups[1:4] for line in g.split("\n") if line.startswith("Differs")}
    assert len(reasons) == 3
    assert "Differs from group 1 in: mask config (mask=center vs freeform), masks hash." in reasons
    assert any(r.startswith("Differs from group 1 in:") and "image size (48 vs 32)" in r for r in reasons)
    assert "Differs from group 1 in: masks hash, metric option per_bucket (true vs false)." in reasons
    assert groups[-1].startswith("Failed or unfinished runs")
    assert "| failed | biharmonic |" in groups[-1] and "does-not-exist" in groups[-1]
    assert "| unfinished | biharmonic |" in groups[-1] and "no card.json: run did not finish testing" in groups[-1]
    assert "![PSNR and SSIM against the hole ratio](leaderboard.png)" in md

    rows = list(csv.DictReader((tmp_path / "lb" / "leaderboard.csv").open()))
    assert [(r["group"], r["rank"], r["model"]) for r in rows[:3]] == [("1", "1", "biharmonic"), ("1", "2", "scnn"),
                                                                       ("1", "3", "scnn")]
    assert rows[1]["train steps"] == "2" and float(rows[0]["psnr"]) > float(rows[1]["psnr"])
    assert {r["status"] for r in rows[-2:]} == {"failed", "unfinished"}
    assert rows[-1]["reason"] != "-"
    assert (tmp_path / "lb" / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_report_is_a_pure_function_of_the_runs(runs, tmp_path):
    _report(runs, tmp_path / "a")
    _report(runs, tmp_path / "b")
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


@pytest.mark.slow
def test_paths_that_are_not_runs_are_refused_by_name(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main([str(runs / "biharmonic"), str(tmp_path / "empty")]) == 2
    assert f"{tmp_path / 'empty'}: not a run directory" in capsys.readouterr().err
    assert main([str(tmp_path / "nope")]) == 2
    assert "nope: no such file or directory" in capsys.readouterr().err
    found, problems = find_run_dirs([str(runs / "[bs]*")])
    assert [p.name for p in found] == ["biharmonic", "scnn", "scnn_test", "size48"] and not problems


@pytest.mark.slow
def test_report_logs_the_leaderboard_to_wandb_offline(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    _report(runs, tmp_path / "lb", "--wandb", "inpaint-test")
    tables = list((tmp_path / "lb" / "wandb").glob("offline-run-*/files/media/table/leaderboard_*.table.json"))
    assert len(tables) == 1
    data = json.loads(tables[0].read_text())
    assert data["columns"][:4] == ["group", "rank", "status", "model"] and len(data["data"]) == 8


@pytest.mark.slow
def test_an_error_metric_ranks_lowest_first(runs, tmp_path):
    md = _report(runs, tmp_path / "lb", "--metric", "mae")
    first = md.split("\n## ")[1]
    assert "Ranked by test MAE" in md and "| 1 | biharmonic |" in first and "| 2 | scnn |" in first


def test_runs_of_one_model_are_told_apart_by_their_differing_settings():
    from inpaint.report import run_labels

    group = [
        {"model": "mganprior", "settings": {"model.attention.type": "none", "task": "test"}},
        {"model": "biharmonic", "settings": {"task": "test"}},
        {"model": "mganprior", "settings": {"model.attention.type": "sa", "task": "test"}},
        {"model": "scnn", "settings": {"seed": "1"}},
        {"model": "scnn", "settings": {"seed": "1"}},
    ]
    assert run_labels(group) == [
        "mganprior (model.attention.type=none)", "biharmonic", "mganprior (model.attention.type=sa)",
        "scnn (run 1 of 2)", "scnn (run 2 of 2)",
    ]

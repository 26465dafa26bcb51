"""A corrupt image in a real run with loader workers: by default one message naming the file and the skip
switch (no worker traceback); with data.on_corrupt=skip each corrupt file is reported once (not per
channel, split or worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY_SCNN, run_cli, write_photos


def _run_with_a_corrupt_photo(tmp_path: Path, *extra: str):
    photos = tmp_path / "photos"
    write_photos(photos / "a", 6, seed=1)
    bad = photos / "a" / "img_002.png"
    bad.write_bytes(b"this is not a png")
    proc = run_cli(
        "inpaint.run", "data=folder", f"data.root={photos}", *extra, "data.image_size=32",
        "data.resize_short=64", "data.batch_size=4", "data.train_samples_per_epoch=8", "data.eval_crops_per_image=2",
        "data.num_workers=2", "trainer.max_steps=6", "trainer.val_check_interval=2", "logger=none",
        "+trainer.enable_progress_bar=false", *TINY_SCNN, cwd=tmp_path,
    )
    return proc, bad


@pytest.mark.slow
def test_a_corrupt_file_read_by_a_worker_is_one_message(tmp_path):
    proc, bad = _run_with_a_corrupt_photo(tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "DataLoader worker" not in proc.stderr, proc.stderr
    message = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(message) == 1 and str(bad) in message[0] and "data.on_corrupt=skip" in message[0]


@pytest.mark.slow
def test_each_skipped_file_is_reported_once_with_two_workers(tmp_path):
    proc, bad = _run_with_a_corrupt_photo(tmp_path, "data.on_corrupt=skip")
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = proc.stdout + proc.stderr
    assert console.count(f"skipping corrupt image '{bad}'") == 1, console[-3000:]
    assert "CorruptImageWarning" not in console
    run_dir = Path(proc.stdout.split("Run directory:")[1].split()[0])
    assert (run_dir / "run.log").read_text().count(f"skipping corrupt image '{bad}'") == 1

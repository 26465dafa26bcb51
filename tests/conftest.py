"""Shared fixtures: compose the real configs with tiny overrides, write real image folders, run the CLI."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from inpaint.config_dir import PREDICT_CONF_DIR
from inpaint.run import CONF_DIR

REPO = Path(__file__).resolve().parents[1]

# A few steps of a narrow net on 32x32 crops: every integration test runs real training on real
# photos through the real configs, fast.
TINY = [
    "data.image_size=32",
    "data.resize_short=64",
    "data.batch_size=4",
    "data.train_samples_per_epoch=8",
    "data.eval_crops_per_image=2",
    "data.num_workers=0",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "trainer.enable_model_summary=false",
    "+trainer.enable_progress_bar=false",
    "eval.grid_samples=2",
]
TINY_SCNN = ["model.net.widths=[8,8,8,8,8]", "model.net.lif.time_steps=2"]
# the smallest full ISNet (19.9 M parameters); no ImageNet VGG file exists on test machines
TINY_ISNET = ["model.generator.blocks=1", "model.loss.vgg=random"]


def tiny(model: str = "scnn") -> list[str]:
    extra = {"scnn": TINY_SCNN, "isnet": TINY_ISNET, "isnet_eq4": TINY_ISNET}
    return TINY + extra.get(model, [])


@pytest.fixture(autouse=True)
def _threads():
    # pytest-xdist runs 2 workers on 2 cores: one thread each avoids oversubscription
    torch.set_num_threads(1)


@pytest.fixture
def make_cfg(tmp_path):
    """``make_cfg(*overrides, config="train")``: the composed real config with the run dir in tmp_path."""

    def _make(*overrides: str, config: str = "train", out: Path | None = None):
        out = out or tmp_path / "run"
        extra = [f"paths.output_dir={out}"] if config == "train" else []
        conf = PREDICT_CONF_DIR if config == "predict" else CONF_DIR
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            return compose(config, overrides=[*overrides, *extra])

    return _make


def write_photos(
    root: Path, n: int = 6, size: tuple[int, int] = (48, 40), seed: int = 0, ext: str = ".png"
) -> list[Path]:
    """Write ``n`` smooth colour images (gradients + blobs, like photos) as real image files."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    for i in range(n):
        base = np.stack(
            [np.sin(3 * xx + rng.uniform(0, 6)) * 0.5 + 0.5 * rng.uniform(0, 1) for _ in range(3)], -1
        )
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) * 40)[..., None] * rng.uniform(0, 1, 3)
        img = np.clip(base * 0.7 + blob, 0, 1)
        p = root / f"img_{i:03d}{ext}"
        Image.fromarray((img * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


@pytest.fixture
def photos(tmp_path) -> Path:
    root = tmp_path / "photos"
    write_photos(root / "a", 4, seed=1)
    write_photos(root / "b", 4, seed=2, ext=".jpg")
    return root


#: the only clock in the suite: a guard against a hung child process, never a speed limit. Machines of one
#: kind differ 2-5x in speed and a busy one is slower still, so no test asserts how long anything takes; a
#: child that is still running after an hour is stuck, and the test says so instead of holding CI to its end
HANG_GUARD_S = 3600


def run_cli(
    *args: str, cwd: Path, timeout: float = HANG_GUARD_S, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python -m ARGS`` in a subprocess (the user's way), returning the completed process."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def photo_like(n: int, seed: int = 0, h: int = 32, w: int | None = None) -> list[np.ndarray]:
    """``n`` smooth colour gradients with a soft blob, ``h`` x ``w`` (square by default): photo-like
    statistics (they compress and decode like photos), every image different."""
    w = h if w is None else w
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    out = []
    for _ in range(n):
        base = np.stack(
            [np.sin(rng.uniform(1, 5) * xx + rng.uniform(1, 5) * yy + rng.uniform(0, 6)) for _ in range(3)],
            -1,
        )
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) * 30)[..., None] * rng.uniform(-1, 1, 3)
        out.append(np.clip((0.5 + 0.35 * base + 0.4 * blob) * 255, 0, 255).astype(np.uint8))
    return out


def write_dataset(name: str, root: Path) -> list[str]:
    """Write a tiny copy of dataset ``name`` in its true on-disk format under ``root``; returns the
    overrides that train on it (``data=NAME data.root=ROOT`` plus small splits)."""
    import fixtures_datasets as fx

    over = [f"data={name}", f"data.root={root}"]
    if name == "cifar10":
        fx.write_cifar10(root, photo_like(10, 0, 32, 32), photo_like(4, 1, 32, 32))
        return [*over, "data.val_size=3", "data.verify_checksums=false"]
    if name == "celeba":
        fx.write_celeba(root, photo_like(10, 0, 218, 178))
        return [*over, "data.verify_checksums=false", "data.center_crop=178", "data.resize_short=40"]
    if name == "places2":
        fx.write_places2(root, photo_like(8, 0, 48, 48), photo_like(3, 1, 48, 48), photo_like(3, 2, 48, 48))
        return over
    if name == "lsdir":
        fx.write_lsdir(root, photo_like(8, 0, 60, 72), photo_like(3, 1, 60, 72))
        return [*over, "data.val_size=2"]
    if name == "lsun":
        fx.write_lsun(root, photo_like(8, 0, 40, 52), category="bedroom", split="train")
        fx.write_lsun(root, photo_like(3, 1, 40, 52), category="bedroom", split="val", seed=1)
        return [*over, "data.category=bedroom", "data.val_size=2", "data.resize_short=40"]
    raise ValueError(f"no fixture writer for data={name}")


DATASETS = ("cifar10", "celeba", "places2", "lsdir", "lsun")


def write_masks(root: Path, n: int = 12, size: int = 64) -> Path:
    """NVIDIA-style mask files: mode-L PNGs, 255 = hole, one rectangle each, hole ratios 5-55 %."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ratio = 0.05 + 0.5 * i / (n - 1)
        side = round(size * ratio**0.5)
        m = np.zeros((size, size), np.uint8)
        m[(i * 3) % (size - side + 1) :][:side, 5 % (size - side + 1) :][:, :side] = 255
        Image.fromarray(m, mode="L").save(root / f"{i:05d}.png")
    return root


@contextlib.contextmanager
def one_skip_report(caplog, pattern: str):
    """Inside the block, exactly one ``skipping corrupt`` warning (``data.on_corrupt=skip``) is logged on
    ``inpaint.data``, and it matches ``pattern``."""
    with caplog.at_level(logging.WARNING, logger="inpaint.data"):
        start = len(caplog.records)
        yield
    got = [r.getMessage() for r in caplog.records[start:] if "skipping corrupt" in r.getMessage()]
    assert len(got) == 1 and re.search(pattern, got[0]), got

"""Every command of the README's cookbook runs (with tiny overrides appended), so the README cannot drift.

Single runs go through the real configs in-process; sweeps (`-m`) and DDP, which start processes of
their own, run as the user types them, in a subprocess. GPU-only commands are composed and checked
when no GPU is present.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATASETS, REPO, run_cli, tiny, write_dataset, write_masks, write_photos
from PIL import Image

from inpaint.predict import predict
from inpaint.prepare import main as prepare_main
from inpaint.run import run


def cookbook() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Cookbook", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip().startswith("python -m inpaint.")]


COMMANDS = cookbook()


def test_cookbook_is_complete():
    joined = "\n".join(COMMANDS)
    for needle in ("task=test", "inpaint.predict", " -m ", "logger=wandb", "logger=tensorboard", "logger=csv",
                   "trainer=cpu", "trainer=gpu", "trainer=ddp ", "trainer=ddp_cpu", "precision=bf16-mixed",
                   "inpaint.prepare", "mask=nvidia", "eval.per_bucket=true", *(f"data={d} " for d in DATASETS)):
        assert needle in joined, needle


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A trained tiny run (RUN), a photo folder (PHOTOS) and one mask of the photos' size (MASKS)."""
    from hydra import compose, initialize_config_dir

    from inpaint.run import CONF_DIR

    root = tmp_path_factory.mktemp("cookbook")
    write_photos(root / "photos", 5, size=(48, 40))
    mask = np.zeros((48, 40), np.uint8)
    mask[10:30, 8:24] = 255
    Image.fromarray(mask).save(root / "mask.png")
    for i, photo in enumerate(sorted((root / "photos").glob("*.png"))):  # TRANSPARENT: holes are alpha 0
        alpha = np.full((48, 40), 255, np.uint8)
        alpha[5 + i : 20 + i, 10:25] = 0
        rgba = np.dstack([np.asarray(Image.open(photo).convert("RGB")), alpha])
        (root / "transparent").mkdir(exist_ok=True)
        Image.fromarray(rgba).save(root / "transparent" / photo.name)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*tiny(), "logger=none", f"paths.output_dir={root / 'run'}"])
    run(cfg)
    # what `python -m inpaint.run` would have recorded, so `resume=RUN` can continue it
    (root / "run" / ".hydra").mkdir()
    (root / "run" / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*tiny(), "logger=none"]))
    # every dataset in its distributed format (DATA/<name>) and a folder of NVIDIA-style masks (NVMASKS)
    root_extras = {name: write_dataset(name, root / "data" / name)[2:] for name in DATASETS}
    # a tiny trained ISNet (ISNET_RUN) and a generator file in the authors' release format (AUTHORS_GEN)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*tiny("isnet"), "model=isnet", "logger=none",
                                          f"paths.output_dir={root / 'isnet_run'}"])
    run(cfg)
    from inpaint.nets.isnet import ISNetGenerator

    torch.manual_seed(0)
    torch.save({"iteration": 1, "generator": ISNetGenerator(blocks=1).state_dict()}, root / "authors_gen.pth")
    write_masks(root / "nvmasks")
    (root / "extras.json").write_text(json.dumps(root_extras))
    return root


def _substitute(cmd: str, ws: Path, out: Path) -> list[str]:
    cmd = (cmd.replace("DATA/", f"{ws / 'data'}/").replace("NVMASKS", str(ws / "nvmasks"))
           .replace("ISNET_RUN", str(ws / "isnet_run")).replace("AUTHORS_GEN", str(ws / "authors_gen.pth"))
           .replace("TRANSPARENT", str(ws / "transparent")).replace("PHOTOS", str(ws / "photos")).replace("MASKS", str(ws / "mask.png"))
           .replace("RUN", str(ws / "run")).replace("OUT", str(out)))
    return shlex.split(cmd)[3:]  # drop "python -m inpaint.X"


def _with_tiny(args: list[str], model: str, ws: Path | None = None) -> list[str]:
    """``args`` plus the tiny-run overrides (and a dataset fixture's small splits) it does not set itself."""
    extras = list(tiny(model))
    data = next((a.split("=", 1)[1] for a in args if a.startswith("data=")), None)
    if ws is not None and data in DATASETS:
        extras = json.loads((ws / "extras.json").read_text())[data] + extras
    out = list(args)
    for o in extras:
        if o.split("=", 1)[0].lstrip("+") not in {a.split("=", 1)[0].lstrip("+") for a in out if "=" in a}:
            out.append(o)
    return out


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.removeprefix("python -m ") for c in COMMANDS])
@pytest.mark.slow
def test_cookbook_command(cmd, workspace, make_cfg, tmp_path, monkeypatch):
    module = cmd.split()[2]
    args = _substitute(cmd, workspace, tmp_path / "out")
    if module == "inpaint.prepare":
        data = next((a.split("=", 1)[1] for a in args if a.startswith("data=")), None)
        extras = json.loads((workspace / "extras.json").read_text()).get(data, [])
        keys = {a.split("=", 1)[0] for a in args}
        assert prepare_main([*args, "--no-download", *(e for e in extras if e.split("=", 1)[0] not in keys)]) == 0
        return
    if module == "inpaint.evaluate":
        from inpaint import evaluate

        args = [a.replace("EXPORTED", str(tmp_path / "exported")).replace("FILLED", str(tmp_path / "filled"))
                for a in args]
        if args[0] == "export":  # the dataset fixture's small splits, as for a run
            args = ["export", *_with_tiny(args[1:], "biharmonic", workspace)]
        else:  # score: the export it reads, and a "method" whose fill is the ground truth
            evaluate.export(_with_tiny(["data=sample"], "biharmonic"), tmp_path / "exported")
            shutil.copytree(tmp_path / "exported" / "gt", tmp_path / "filled")
            if "--metrics" in args:
                args += ["--feature-weights", "random"]  # no weight file on test machines
        assert evaluate.main(args) == 0
        if args[0] == "score":
            card = json.loads((tmp_path / "out" / "card.json").read_text())
            assert card["metrics"]["test/psnr"] == pytest.approx(100.0) and card["source"]["description"]
        return
    if module == "inpaint.predict":
        written = predict(make_cfg(*args, config="predict"))
        assert len(written) == 5 and all(p.is_file() for p in written)
        return
    default = "isnet" if "hparams_search=isnet_loss_weights" in args else "scnn"
    experiment = next((a.split("=", 1)[1] for a in args if a.startswith("experiment=")), None)
    if experiment:  # the model the experiment config selects
        text = (REPO / "conf" / "experiment" / f"{experiment}.yaml").read_text()
        default = re.search(r"override /model: (\w+)", text).group(1)
    model = next((a.split("=", 1)[1] for a in args if a.startswith("model=")), default)
    args = _with_tiny(args, model, workspace)
    if any(a.startswith("eval.metrics=") for a in args):
        args.append("eval.feature_weights=random")  # no LPIPS/Inception weight file on test machines
    if any(a.startswith("resume=") for a in args):  # rewritten by the command line, so run as typed
        proc = run_cli("inpaint.run", *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"Run directory: {workspace / 'run'}" in proc.stdout
        return
    if "-m" in args or "trainer=ddp_cpu" in args:
        proc = run_cli("inpaint.run", *args, "logger=none", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports = sorted(tmp_path.glob("outputs/fit/*/*/**/metrics.json"))
        if "-m" in args:
            if "hparams_search=scnn_lr" in args:
                jobs = 3
            elif "hparams_search=isnet_loss_weights" in args:
                jobs = int(re.search(r"n_trials=(\d+)", cmd).group(1))
            else:
                jobs = len(re.search(r"model.optimizer.lr=(\S+)", cmd).group(1).split(","))
            assert len(reports) == jobs
        else:  # two processes, 2 test photos x 2 crops: each sample counted exactly once
            assert json.loads(reports[0].read_text())["test"]["test/count"] == 4
        return
    if any(a in args for a in ("trainer=gpu", "trainer=ddp")) and not torch.cuda.is_available():
        cfg = make_cfg(*args)
        assert cfg.trainer.accelerator == "gpu"
        pytest.skip("composed only: no GPU here")
    if "logger=wandb" in args:
        monkeypatch.delenv("WANDB_API_KEY", raising=False)
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_SILENT", "true")
    results = run(make_cfg(*args))
    assert math.isfinite(results["test/psnr"])
    if "logger=wandb" in args:
        import wandb

        wandb.finish()

"""The README's "Add your own method" runs as written: its three files are written from the README text into a
folder outside the package, and its commands (with the suite's tiny overrides appended to training runs) train,
test, predict, sweep the learning rate and rank the new method in the leaderboard, with nothing in `inpaint`
edited."""

from __future__ import annotations

import json
import os
import re
import shlex

import numpy as np
import pytest
from conftest import REPO, TINY, run_cli, write_photos
from PIL import Image

SECTION = REPO.joinpath("README.md").read_text().split("## Add your own method", 1)[1].split("\n## ", 1)[0]


def files() -> dict[str, str]:
    """The section's code blocks that start with a ``# path`` comment: path -> text."""
    out = {}
    for lang, body in re.findall(r"```(python|yaml)\n(.*?)```", SECTION, re.S):
        first = body.splitlines()[0]
        assert first.startswith("# "), f"a {lang} block of the tutorial must start with '# PATH': {first!r}"
        out[first[2:].strip()] = body
    return out


def commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", SECTION, re.S).group(1)
    return [ln.strip() for ln in block.splitlines() if ln.strip()]


def test_the_tutorial_is_one_model_file_its_net_and_one_config():
    paths = sorted(files())
    assert paths == ["my_conf/model/conv_fill.yaml", "my_methods/conv_fill.py", "my_methods/nets.py"]
    joined = "\n".join(commands())
    for needle in ("inpaint.run model=conv_fill", "inpaint.predict", " -m ", "model.optimizer.lr=", "inpaint.report"):
        assert needle in joined, needle


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path):
    for rel, text in files().items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "my_methods" / "__init__.py").write_text("")
    write_photos(tmp_path / "photos", 3, size=(40, 48))
    mask = np.zeros((40, 48), np.uint8)
    mask[8:24, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")

    env: dict[str, str] = {}
    for line in commands():
        line = line.replace("$PWD", str(tmp_path))
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value
            continue
        args = shlex.split(line)
        assert args[:2] == ["python", "-m"], line
        args = [a.replace("PHOTOS", str(tmp_path / "photos")).replace("MASKS", str(tmp_path / "mask.png"))
                for a in args[2:]]
        if args[0] == "inpaint.run":
            args += [*TINY, "logger=csv"]
        proc = run_cli(*args, cwd=tmp_path, env={**env, "PYTHONPATH": os.pathsep.join([env["PYTHONPATH"], str(REPO)])})
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-3000:]}"

    # trained, tested, checkpointed; the checkpoint names the user's class, and predict filled the photos
    card = json.loads((tmp_path / "outputs/conv_fill/card.json").read_text())
    assert card["status"] == "ok" and card["metrics"]["test/psnr"] > 0
    filled = sorted((tmp_path / "filled").glob("*.png"))
    assert len(filled) == 3
    photo = np.asarray(Image.open(sorted((tmp_path / "photos").glob("*.png"))[0]).convert("RGB"))
    out = np.asarray(Image.open(filled[0]).convert("RGB"))
    assert out.shape == photo.shape and np.array_equal(out[mask == 0], photo[mask == 0])  # known pixels kept
    # the sweep ran both learning rates, each job with its own optimizer
    jobs = sorted(p for p in (tmp_path / "outputs/conv_fill_lr").iterdir() if (p / "card.json").is_file())
    lrs = sorted(json.loads((j / "card.json").read_text())["config"]["model"]["optimizer"]["lr"] for j in jobs)
    assert lrs == [1e-3, 3e-3]
    # the leaderboard ranks the new method's runs next to biharmonic's, in one group
    board = (tmp_path / "leaderboard" / "leaderboard.md").read_text()
    assert "conv_fill" in board.lower() and "biharmonic" in board.lower()

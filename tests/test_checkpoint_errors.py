"""Files given as ckpt_path= / init_from= that are no checkpoint, unsafe, or of another model class."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from conftest import run_cli, tiny
from hydra import compose, initialize_config_dir

from inpaint.checkpoints import (
    CheckpointMismatchError,
    NotACheckpointError,
    UnsafeCheckpointError,
    load_weights,
    read_checkpoint,
)
from inpaint.config_dir import PREDICT_CONF_DIR
from inpaint.run import CONF_DIR, build_model, run


def _cfg(*overrides: str, out: Path | None = None, config: str = "train"):
    extra = [f"paths.output_dir={out}"] if out is not None else []
    conf = PREDICT_CONF_DIR if config == "predict" else CONF_DIR
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        return compose(config, overrides=[*overrides, *extra])


@pytest.fixture(scope="module")
def scnn_ckpt(tmp_path_factory) -> Path:
    """A real SC-NN checkpoint written by two training steps of inpaint.run."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("scnn")
    run(_cfg(*tiny(), "logger=none", out=out / "run"))
    return out / "run" / "checkpoints" / "last.ckpt"


class _Payload:
    """Pickles as a call of os.getcwd: harmless, but outside torch's weights-only allow-list."""

    def __reduce__(self):
        return (os.getcwd, ())


def _junk_files(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rand = folder / "random.ckpt"
    rand.write_bytes(bytes(range(256)) * 4)
    text = folder / "notes.ckpt"
    text.write_text("these are my training notes, not weights\n")
    empty = folder / "empty.ckpt"
    empty.write_bytes(b"")
    return [rand, text, empty]


def test_non_checkpoints_get_one_short_message(tmp_path, scnn_ckpt):
    model = build_model(_cfg(*tiny()))
    for junk in _junk_files(tmp_path):
        for call, option in ((lambda p: read_checkpoint(p), "ckpt_path"), (lambda p: load_weights(model, p), "init_from")):
            with pytest.raises(NotACheckpointError) as err:
                call(junk)
            msg = str(err.value)
            assert f"{option}={junk} is not a checkpoint" in msg
            assert "weights_only" not in msg and "\n" not in msg


def test_checkpoint_with_a_forbidden_pickle_is_refused_for_safety(tmp_path, scnn_ckpt):
    ckpt = torch.load(scnn_ckpt, weights_only=True)
    ckpt["extra"] = _Payload()
    poisoned = tmp_path / "poisoned.ckpt"
    torch.save(ckpt, poisoned)
    with pytest.raises(UnsafeCheckpointError, match=r"poisoned.ckpt was refused for safety.*getcwd") as err:
        read_checkpoint(poisoned)
    assert "not a checkpoint" not in str(err.value)
    assert isinstance(err.value, ValueError)  # the CLI reports it as one message
    with pytest.raises(UnsafeCheckpointError, match="init_from="):
        load_weights(build_model(_cfg(*tiny())), poisoned)


def test_run_with_junk_ckpt_path_and_init_from(tmp_path, scnn_ckpt):
    rand = _junk_files(tmp_path)[0]
    with pytest.raises(NotACheckpointError, match=r"ckpt_path=.*random.ckpt is not a checkpoint"):
        run(_cfg(*tiny(), "task=test", f"ckpt_path={rand}", "logger=none", out=tmp_path / "a"))
    with pytest.raises(NotACheckpointError, match=r"init_from=.*random.ckpt is not a checkpoint"):
        run(_cfg(*tiny(), "task=test", f"init_from={rand}", "logger=none", out=tmp_path / "b"))


def test_predict_with_junk_ckpt_path(tmp_path):
    from inpaint.predict import load_model

    text = _junk_files(tmp_path)[1]
    with pytest.raises(NotACheckpointError, match=r"ckpt_path=.*notes.ckpt is not a checkpoint"):
        load_model(ckpt_path=str(text))


@pytest.mark.slow
def test_predict_cli_reports_a_junk_checkpoint_in_one_line(tmp_path):
    rand = _junk_files(tmp_path)[0]
    proc = run_cli("inpaint.predict", f"ckpt_path={rand}", f"input={tmp_path}", f"mask={rand}",
                   f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert f"error: ckpt_path={rand} is not a checkpoint" in proc.stderr
    assert "weights_only" not in proc.stderr and "Traceback" not in proc.stderr


def test_init_from_a_checkpoint_of_another_model_class_is_refused(tmp_path, scnn_ckpt):
    with pytest.raises(CheckpointMismatchError, match=r"init_from=.*SCNNModule.*BiharmonicModule.*model=scnn"):
        run(_cfg("model=biharmonic", "task=test", f"init_from={scnn_ckpt}", *tiny("biharmonic"), "logger=none",
                 out=tmp_path / "a"))


def test_init_from_a_foreign_state_dict_still_loads_what_fits(tmp_path, scnn_ckpt):
    state = torch.load(scnn_ckpt, weights_only=True)["state_dict"]
    foreign = tmp_path / "foreign.pth"
    first = next(iter(state))
    torch.save({first: state[first], "head.weight": torch.zeros(3)}, foreign)  # no inpaint class entry
    model = build_model(_cfg(*tiny()))
    report = load_weights(model, foreign)
    assert report["loaded"] == [first] and report["unexpected"] == ["head.weight"]
    assert torch.equal(model.state_dict()[first], state[first])

"""Hydra launchers: submitit_local runs a sweep's jobs in their own processes; the SLURM preset composes
with the DDP trainer and yields the sbatch script submitit would submit (no cluster needed)."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from inpaint.run import CONF_DIR

TINY_TEST = ["model=biharmonic", "task=test", "logger=none", "data.image_size=32", "data.resize_short=64",
             "data.eval_crops_per_image=1", "data.num_workers=0", "+trainer.enable_progress_bar=false"]


def _launcher(*overrides: str, out: str = "/tmp/x"):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"hydra.sweep.dir={out}"], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    node = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    return cfg, instantiate(node)


def test_slurm_preset_follows_the_trainer_and_writes_the_requeue_lines(tmp_path):
    cfg, launcher = _launcher("hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=4",
                              "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=600",
                              out=str(tmp_path / "sweep"))
    assert cfg.hydra.launcher.nodes == 2 and cfg.hydra.launcher.gpus_per_node == 4
    script = launcher.sbatch_script()
    lines = set(script.splitlines())
    for line in ("#SBATCH --partition=gpu", "#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --cpus-per-task=8", "#SBATCH --mem=64GB",
                 "#SBATCH --time=600", "#SBATCH --signal=USR1@120", "#SBATCH --requeue"):
        assert line in lines, f"{line} not in\n{script}"
    assert "USR2" not in script  # submitit's own signal is replaced by the one Lightning listens on
    assert any(ln.startswith("srun ") for ln in lines)
    # Lightning's default SLURM environment requeues on the signal the script asks SLURM to send
    from lightning.fabric.plugins.environments import SLURMEnvironment

    env = SLURMEnvironment()
    assert env.auto_requeue and f"--signal={env.requeue_signal.name.removeprefix('SIG')}@" in script


def test_slurm_preset_refuses_a_gpu_count_slurm_cannot_request(tmp_path):
    with pytest.raises(InstantiationException, match=r"trainer.devices=G"):
        _launcher("hydra/launcher=slurm", "trainer=ddp", out=str(tmp_path))  # trainer=ddp's devices=-1
    with pytest.raises(InstantiationException, match=r"one process \(task\) per GPU"):
        _launcher("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "hydra.launcher.tasks_per_node=1",
                  out=str(tmp_path))


@pytest.mark.slow
def test_submitit_local_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("inpaint.run", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=60",
                   "seed=1,2", *TINY_TEST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads((sweep / j / "metrics.json").read_text()) for j in ("0", "1")]
    assert all(r["test"]["test/count"] > 0 for r in reports)
    # each job ran in a submitit worker process with its own log folder
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2


def _cluster_commands() -> list[str]:
    from conftest import REPO

    section = (REPO / "README.md").read_text().split("## Cluster runs and resumable sweeps", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [ln for ln in block.splitlines() if ln.startswith("python -m inpaint.run")]


@pytest.mark.parametrize("cmd", _cluster_commands())
def test_readme_cluster_commands_compose(cmd, tmp_path):
    """The README's cluster commands need a cluster to run: they are composed, and their launcher built."""
    import shlex

    args = [a for a in shlex.split(cmd)[3:] if a != "-m"]
    args = [a.replace("DATA/", f"{tmp_path}/").replace("NVMASKS", str(tmp_path)) for a in args]
    cfg, launcher = _launcher(*args, out=str(tmp_path / "sweep"))
    if "hydra/launcher=slurm" in args:
        script = launcher.sbatch_script()
        assert f"--nodes={cfg.trainer.get('num_nodes', 1)}" in script
        assert f"--gpus-per-node={cfg.trainer.devices}" in script

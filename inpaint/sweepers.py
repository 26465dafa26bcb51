"""Hydra plugins for long sweeps: an Optuna sweeper that resumes after a kill, a SLURM launcher that checks
its GPU layout against the trainer's.

``hydra/sweeper=optuna_resumable`` (``ResumableOptunaImpl``; the plugin classes themselves are in
``hydra_plugins/inpaint_plugins``, the only place Hydra instantiates plugins from) keeps the study in a
sqlite file inside the sweep directory. Re-running the same command with ``hydra.sweep.dir=<that dir>`` continues the study:

- trials that finished (complete, pruned, or failed on their own) are kept and not run again; the sweep
  runs only ``n_trials`` minus those;
- a trial still marked running was cut off by the kill: it is marked failed (system attr
  ``inpaint:interrupted``) and its parameters are enqueued, so it runs again first;
- job numbers continue after the highest job directory already there, so no job directory is reused;
- a seeded sampler is re-seeded from ``(seed, trials so far)``: a resumed sweep does not redraw the
  parameters of the trials that already ran, and resuming the same sweep twice draws the same values.

``SlurmLauncher`` (``hydra/launcher=slurm``) is hydra-submitit-launcher's, plus a check, before anything is
submitted, that one task per GPU is requested and that nodes / GPUs per node are numbers SLURM accepts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from omegaconf import DictConfig

log = logging.getLogger(__name__)

INTERRUPTED = "inpaint:interrupted"


def _sqlite_path(storage: Any) -> Path | None:
    """The file of a ``sqlite:///PATH`` storage URL, else None."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        return Path(storage[len("sqlite:///") :])
    return None


def _job_dirs(sweep_dir: Path) -> list[int]:
    if not sweep_dir.is_dir():
        return []
    return sorted(int(p.name) for p in sweep_dir.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name))


def derived_seed(seed: int, n_trials_so_far: int) -> int:
    """A seed for the sampler of a sweep resumed after ``n_trials_so_far`` trials (``seed`` for a new one)."""
    if n_trials_so_far == 0:
        return seed
    return int(np.random.SeedSequence([seed, n_trials_so_far]).generate_state(1)[0])


class ResumableOptunaImpl(OptunaSweeperImpl):
    """The sweep of ``hydra_plugins.inpaint_plugins.resumable_optuna.ResumableOptunaSweeper``."""

    def __init__(self, sampler, direction, storage, study_name, *args) -> None:
        if not study_name:
            raise ValueError(
                "hydra.sweeper.study_name is not set: a resumable sweep finds its study by name in "
                "the storage; set hydra.sweeper.study_name=NAME"
            )
        super().__init__(sampler, direction, storage, study_name, *args)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.sampler_cfg = config.hydra.sweeper.get("sampler")

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        from optuna.trial import TrialState

        db = _sqlite_path(self.storage)
        if db is None:
            log.warning(
                "hydra.sweeper.storage=%r is not a sqlite file: this sweep cannot be resumed after a kill "
                "(set hydra.sweeper.storage=sqlite:///${hydra.sweep.dir}/optuna.db)", self.storage
            )
            return super().sweep(arguments)
        db.parent.mkdir(parents=True, exist_ok=True)
        study = optuna.load_study(study_name=self.study_name, storage=self.storage) if db.is_file() and any(
            s.study_name == self.study_name for s in optuna.get_all_study_summaries(self.storage)
        ) else None
        if study is None:
            return super().sweep(arguments)

        trials = study.get_trials(deepcopy=False)
        cut_off = [t for t in trials if t.state == TrialState.RUNNING]
        for t in cut_off:
            study._storage.set_trial_system_attr(t._trial_id, INTERRUPTED, True)
            study._storage.set_trial_state(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(dict(t.params))
            log.warning("trial %d (job %s) was interrupted: marked failed, its parameters %s run again",
                        t.number, t.number, t.params)
        trials = study.get_trials(deepcopy=False)
        finished = [
            t for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.system_attrs.get(INTERRUPTED))
        ]
        started = [t for t in trials if t.state != TrialState.WAITING]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        dirs = _job_dirs(sweep_dir)
        self.job_idx = max(len(started), dirs[-1] + 1 if dirs else 0)
        remaining = max(self.n_trials - len(finished), 0)
        log.info(
            "resuming study %r from %s: %d of %d trials finished, %d to run, jobs from #%d",
            self.study_name, db, len(finished), self.n_trials, remaining, self.job_idx,
        )
        self.n_trials = remaining
        seed = (self.sampler_cfg or {}).get("seed")
        if seed is not None and not str(self.sampler_cfg.get("_target_", "")).endswith("GridSampler"):
            self.sampler = instantiate(self.sampler_cfg, seed=derived_seed(int(seed), len(started)))
        if remaining == 0:
            log.info("all %d trials of study %r are done: nothing to run", len(finished), self.study_name)
        return super().sweep(arguments)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_slurm_layout(params: dict[str, Any]) -> None:
    """Raise a ValueError naming the option to change unless ``params`` (``hydra.launcher``) requests
    whole nodes and GPUs, one task (Lightning DDP process) per GPU."""
    nodes, gpus, tasks = params.get("nodes"), params.get("gpus_per_node"), params.get("tasks_per_node")
    if not _positive_int(nodes):
        raise ValueError(
            f"hydra/launcher=slurm: nodes={nodes!r} is not a node count; set trainer.num_nodes=N "
            "(or hydra.launcher.nodes=N)"
        )
    if gpus is None or gpus == 0:
        return  # a CPU job: tasks_per_node processes, no GPUs requested
    if not _positive_int(gpus):
        raise ValueError(
            f"hydra/launcher=slurm: gpus_per_node={gpus!r} (from trainer.devices) cannot size a SLURM request; "
            "set trainer.devices=G, the number of GPUs per node (e.g. trainer=ddp trainer.devices=4)"
        )
    if tasks != gpus:
        raise ValueError(
            f"hydra/launcher=slurm: tasks_per_node={tasks} but gpus_per_node={gpus}; Lightning's DDP under "
            "SLURM runs one process (task) per GPU: leave hydra.launcher.tasks_per_node at its default "
            "(${trainer.devices}) or set it equal to the GPUs per node"
        )


def sbatch_script(params: dict[str, Any], command: str) -> str:
    """The sbatch text submitit writes for a job of a hydra-submitit SLURM launcher with ``params``
    (the launcher's resolved ``hydra.launcher`` options), built without a cluster: submitit's own
    generic-to-sbatch name mapping and sbatch writer, minus its check that ``srun`` exists."""
    from submitit.slurm.slurm import SlurmExecutor, _convert_mem, _make_sbatch_string

    generic = SlurmExecutor._equivalence_dict()
    launcher_only = {"submitit_folder", "max_num_timeout", "_target_"}
    slurm: dict[str, Any] = {}
    for key, value in params.items():
        if key in launcher_only or value is None:
            continue
        slurm[generic.get(key, key)] = value
    if "mem" in slurm:
        slurm["mem"] = _convert_mem(slurm["mem"])
    return _make_sbatch_string(command=command, folder=params["submitit_folder"], **slurm)

"""``resume=RUN``: the command line of ``python -m inpaint.run`` rewritten to continue an earlier run in its
own directory, and where a run directory keeps the checkpoint to continue from.

:func:`resume_arguments` runs before Hydra composes anything (``inpaint.run.main``), so it reads only the
run directory's files (``.hydra/overrides.yaml``, ``checkpoints/last.ckpt``, ``hpc_ckpt_N.ckpt``); it imports
nothing of the models or of Lightning. ``inpaint.run`` re-exports :func:`resume_arguments` and
:func:`latest_checkpoint`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from inpaint.overrides import override_key

__all__ = ["latest_checkpoint", "resume_arguments"]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest resumable checkpoint in ``run_dir``: ``checkpoints/last.ckpt`` or an ``hpc_ckpt_N.ckpt``
    that Lightning's SLURM environment wrote on a preemption signal."""
    candidates = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    existing = [p for p in candidates if p.is_file()]
    return max(existing, key=lambda p: p.stat().st_mtime) if existing else None


def _override_key(item: str) -> str:
    return override_key(item)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _run_dir_of(ckpt: Path) -> Path | None:
    """The run directory a checkpoint belongs to (``RUN/checkpoints/x.ckpt`` or ``RUN/hpc_ckpt_N.ckpt``
    with ``RUN/.hydra``), else None."""
    for cand in (ckpt.parent.parent, ckpt.parent):
        if (cand / ".hydra" / "overrides.yaml").is_file():
            return cand
    return None


def resume_arguments(argv: list[str]) -> list[str]:
    """Command-line arguments that continue an earlier run in its own directory.

    ``resume=RUN`` (a run directory, or one of its checkpoints) and ``ckpt_path=RUN/checkpoints/last.ckpt``
    (unless ``task=test``) become: the run's own overrides (``RUN/.hydra/overrides.yaml``), then the new
    ones (which win: e.g. a larger ``trainer.max_steps``), ``ckpt_path=`` the checkpoint and
    ``hydra.run.dir=RUN``. Checkpoints, grids, the CSV/TensorBoard/W&B logs and ``run.log`` continue
    there; the previous ``.hydra`` files are kept under ``.hydra/before_resume_N``."""
    items = [a for a in argv if not a.startswith("-")]
    given = {_override_key(a): a.partition("=")[2].strip("'\"") for a in items if "=" in a}
    resume, ckpt = given.get("resume"), given.get("ckpt_path")
    if "hydra.run.dir" in given:
        if resume:
            raise ValueError("resume=RUN continues the run in RUN: leave out hydra.run.dir")
        return argv  # the directory is chosen (e.g. by Lightning for a DDP worker of a resumed run)
    if not resume and not (ckpt and given.get("task", "fit") == "fit"):
        return argv
    if resume and any(a in ("-m", "--multirun") for a in argv):
        raise ValueError(
            "resume= continues one run; to continue an interrupted sweep, repeat its command with "
            "hydra.sweep.dir=SWEEP_DIR"
        )
    target = Path(resume or ckpt).expanduser()
    if resume and target.is_dir():
        run_dir, found = target, latest_checkpoint(target)
        if found is None:
            raise FileNotFoundError(
                f"resume={resume}: no checkpoint to resume in {target} (looked for checkpoints/last.ckpt and "
                "hpc_ckpt_*.ckpt); it is written every callbacks.checkpoint_every.steps/minutes"
            )
        target = found
    else:
        if not target.is_file():
            raise FileNotFoundError(f"{'resume' if resume else 'ckpt_path'}={target}: no such checkpoint file")
        run_dir = _run_dir_of(target)
        if run_dir is None:
            if resume:
                raise ValueError(
                    f"resume={resume}: {target} is not inside a run directory of inpaint.run (no .hydra/ next to "
                    "its checkpoints/ folder); pass it as ckpt_path= to resume in a new directory"
                )
            return argv  # a checkpoint from elsewhere: resume it into a new run directory
    hydra_dir = run_dir / ".hydra"
    if not (hydra_dir / "overrides.yaml").is_file():
        raise ValueError(
            f"resume={resume}: {run_dir} is not a run directory of `python -m inpaint.run` (no .hydra/overrides.yaml); "
            f"pass its checkpoint as ckpt_path={target} to continue in a new directory"
        )
    earlier = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    keep = len(list(hydra_dir.glob("before_resume_*")))
    backup = hydra_dir / f"before_resume_{keep + 1}"
    backup.mkdir()
    for f in hydra_dir.glob("*.yaml"):
        shutil.copy2(f, backup / f.name)
    dropped = {"resume", "ckpt_path", "hydra.run.dir"}
    merged: dict[str, str] = {}
    for item in [*earlier, *items]:
        key = _override_key(item)
        if key not in dropped:
            merged.pop(key, None)
            merged[key] = item
    flags = [a for a in argv if a.startswith("-")]
    return [*flags, *merged.values(), f"ckpt_path={_quote(str(target))}", f"hydra.run.dir={_quote(str(run_dir))}"]

"""``python -m inpaint.run``: compose the config, train, test the best checkpoint, write the report.

  python -m inpaint.run                                   # scnn on the embedded sample photos, CPU
  python -m inpaint.run task=test ckpt_path=RUN/checkpoints/best.ckpt
  python -m inpaint.run model=biharmonic task=test        # non-learned baseline, no checkpoint
  python -m inpaint.run -m model.optimizer.lr=1e-3,1e-4   # sweep

The run directory (printed at the end) holds ``.hydra/`` (the composed config), ``checkpoints/``
(``best.ckpt``, ``last.ckpt``), ``metrics.json``, ``metrics.md``, the results card (``card.json``, ``card.md``:
see :mod:`inpaint.evaluation.card`), ``grids/`` and the logger's files.

This module is the command only: it imports Hydra and the config, not Lightning or torch, so ``--help``, shell
completion and a config error answer at once. The work is :func:`inpaint.runner.run`, imported when a job
starts; its public names (``run``, ``build_model``, ``build_trainer``, ``build_datamodule``, ...) are also
reachable here, loaded on first use.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from inpaint.cli import (
    USER_ERRORS,
    SignalWatch,
    check_override_types,
    guarded,
    report_user_error,
    user_message,
)
from inpaint.config_dir import CONF_DIR
from inpaint.resume import latest_checkpoint, resume_arguments  # noqa: F401  (latest_checkpoint: an old name)

__all__ = ["CONF_DIR", "USER_ERRORS", "main", "user_message"]

#: names served from :mod:`inpaint.runner` on first use (scripts and tests import them from here)
_RUNNER_NAMES = frozenset({"run", "build_model", "build_trainer", "build_datamodule", "build_mask", "callback_config",
                           "check_accelerator", "trainer_precision", "write_report", "FROM_MODEL"})


def __getattr__(name: str) -> Any:
    if name in _RUNNER_NAMES:
        from inpaint import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'inpaint.run' has no attribute {name!r}")


def _fit_or_test(cfg: DictConfig) -> float | None:
    from inpaint.runner import run

    results = run(cfg)
    metric = cfg.get("optimized_metric")
    return results.get(metric) if metric else None


_hydra_main = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")(
    guarded(_fit_or_test, "inpaint.run")
)


def main() -> None:
    """``python -m inpaint.run [overrides]``: a resumed run is rewritten to continue in its directory."""
    try:
        sys.argv[1:] = resume_arguments(sys.argv[1:])
        check_override_types(sys.argv[1:])
    except USER_ERRORS as e:
        sys.exit(report_user_error(e, "inpaint.run"))
    SignalWatch().install()  # from here on SIGTERM / Ctrl-C are a clean stop (inpaint.runner.run reports them)
    _hydra_main()


if __name__ == "__main__":
    main()

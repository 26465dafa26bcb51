"""``hydra/launcher=slurm``: hydra-submitit-launcher's SLURM launcher with the GPU layout checked up front."""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurm


class SlurmLauncher(_SubmititSlurm):
    """Submits each job with sbatch (through submitit); refuses a layout Lightning's DDP cannot use."""

    def __init__(self, **params: Any) -> None:
        from inpaint.sweepers import check_slurm_layout

        check_slurm_layout(params)
        super().__init__(**params)

    def sbatch_script(self, command: str = "python -u -m submitit.core._submit FOLDER") -> str:
        """The sbatch file submitit writes for one job of this launcher (built without a cluster)."""
        from inpaint.sweepers import sbatch_script

        return sbatch_script(self.params, command)

"""``hydra/sweeper=optuna_resumable``: Optuna whose study survives a kill (logic: inpaint/sweepers.py)."""

from __future__ import annotations

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class ResumableOptunaSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's ``OptunaSweeper`` that continues the study found in its sqlite storage."""

    def __init__(self, sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
                 search_space, custom_search_space, params) -> None:
        from inpaint.sweepers import ResumableOptunaImpl

        self.sweeper = ResumableOptunaImpl(sampler, direction, storage, study_name, n_trials, n_jobs,
                                           max_failure_rate, search_space, custom_search_space, params)

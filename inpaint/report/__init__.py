"""Results cards and the leaderboard: ``python -m inpaint.report RUN_DIR...``.

Every test run of ``inpaint.run`` leaves a results card (``card.json``, ``card.md``) in its run directory;
``python -m inpaint.report`` (or ``inpaint-report``) reads the cards of many runs and writes a leaderboard
that ranks runs only against runs evaluated under the same protocol.

- :mod:`inpaint.evaluation.card` (the evaluation package owns the cards): writing them (:func:`write_card`,
  :func:`write_failed_card`, ``write_score_card`` for outputs scored offline), the protocol and its fingerprint
  (:func:`protocol_of`, :mod:`inpaint.evaluation.protocol`), :func:`relative_paths`, and a card's leaderboard row
  (:func:`leaderboard_row`), re-exported here;
- :mod:`inpaint.report.leaderboard`: finding run directories and reading their cards, grouping by fingerprint,
  ranking, the protocol differences in words and the runs' labels;
- :mod:`inpaint.report.render`: ``leaderboard.md`` / ``.csv`` / ``.png`` and the W&B Table;
- :mod:`inpaint.report.cli`: the command (:func:`main`).
"""

from inpaint.evaluation.card import (
    CARD_JSON,
    CARD_MD,
    PATH_KEYS,
    PATH_PREFIXES,
    card_markdown,
    leaderboard_row,
    protocol_of,
    relative_paths,
    settings_of,
    write_card,
    write_failed_card,
)
from inpaint.evaluation.protocol import combine_digests, fingerprint_of
from inpaint.report.cli import main
from inpaint.report.leaderboard import (
    LOWER_IS_BETTER,
    build_leaderboard,
    find_run_dirs,
    group_runs,
    protocol_differences,
    read_run,
    run_labels,
)
from inpaint.report.render import (
    CSV_FLOAT,
    log_leaderboard_to_wandb,
    render_csv,
    render_markdown,
    render_plot,
    write_leaderboard,
)

__all__ = [
    "CARD_JSON",
    "CARD_MD",
    "CSV_FLOAT",
    "LOWER_IS_BETTER",
    "PATH_KEYS",
    "PATH_PREFIXES",
    "build_leaderboard",
    "card_markdown",
    "combine_digests",
    "find_run_dirs",
    "fingerprint_of",
    "group_runs",
    "leaderboard_row",
    "log_leaderboard_to_wandb",
    "main",
    "protocol_differences",
    "protocol_of",
    "read_run",
    "relative_paths",
    "render_csv",
    "render_markdown",
    "render_plot",
    "run_labels",
    "settings_of",
    "write_card",
    "write_failed_card",
    "write_leaderboard",
]

"""``python -m inpaint.report RUN_DIR... [--out DIR]`` (also the ``inpaint-report`` console script).

Run directories, their parents or sweep directories (searched recursively), or quoted glob patterns: the
command reads the runs' cards and writes ``leaderboard.md``, ``leaderboard.csv`` and ``leaderboard.png`` (PSNR
and SSIM against the hole-ratio bucket, one line per run). Runs are grouped by fingerprint and ranked by PSNR
only inside a group; failed and unfinished runs are listed with the reason. The files are a pure function of
the cards: a rerun writes the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from inpaint.report.leaderboard import find_run_dirs
from inpaint.report.render import log_leaderboard_to_wandb, write_leaderboard


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inpaint.report",
        description="Leaderboard of inpaint.run test runs, from their results cards (card.json).",
    )
    parser.add_argument("runs", nargs="+", help="run directories, folders holding them (searched recursively) "
                                                "or glob patterns")
    parser.add_argument("--out", default="leaderboard", help="output folder (default: ./leaderboard)")
    parser.add_argument("--metric", default="psnr", help="test metric ranked on, best first: highest, or lowest for an error "
                        "(mae, l2, mse_hole, l2_paper, l2_paper_255) (default: psnr)")
    parser.add_argument("--wandb", metavar="PROJECT", default=None,
                        help="also log the leaderboard as a W&B Table in one run of PROJECT (offline without "
                             "credentials)")
    args = parser.parse_args(argv)
    run_dirs, problems = find_run_dirs(args.runs)
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    if not run_dirs:
        print(f"error: no run directories found in {' '.join(args.runs)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    board = write_leaderboard(run_dirs, out, args.metric)
    n_ok = sum(len(g) for g in board["groups"])
    print(f"{len(run_dirs)} run(s): {n_ok} ranked in {len(board['groups'])} protocol group(s), "
          f"{len(board['others'])} failed or unfinished -> {out / 'leaderboard.md'}")
    if args.wandb:
        started = time.perf_counter()
        url = log_leaderboard_to_wandb(board, args.wandb, out)
        print(f"W&B: leaderboard logged to project {args.wandb} ({url or 'offline run under ' + str(out / 'wandb')},"
              f" {time.perf_counter() - started:.1f} s)")
    return 0

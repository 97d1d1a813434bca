"""``alignzoo demo`` (``make demo``): the zoo sweep on the embedded task, then the leaderboard's table.

Runs every registered optimizer that fits the task plus the SFT reference row, x 3 seeds at ``budget=quick``
(one Hydra multirun, so stages are built once and shared), then prints the board's own ranked table of the sweep's
records (``alignzoo/board``: mean over seeds with its Student-t or BCa interval, ranks from Holm-corrected tests,
comparisons with the SFT row, Pareto stars), row for row what the sweep's board callback writes into
``<out>/board/LEADERBOARD.md``: one set of statistics, not two.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from alignzoo.board.aggregate import group_records
from alignzoo.board.collect import collect
from alignzoo.board.tables import legend as board_legend
from alignzoo.board.tables import track_table, track_title
from alignzoo.errors import AlignzooError


def demo_algos(registries: Any, task: str = "sentiment") -> list[str]:
    """Optimizers that can run on the task (all built-ins do on the embedded one); the SFT row last."""
    names = [n for n in registries["algo"].names() if n != "sft"]
    return names + ["sft"]


def results_table(records: list[dict[str, Any]]) -> str:
    """The board's Markdown table of ``records`` (the same grouping, statistics, ranks and cells as
    LEADERBOARD.md), one per task/model/budget track under its title."""
    tracks: dict[tuple[str, str, str], list[Any]] = {}
    for g in group_records(records):
        tracks.setdefault(g.track, []).append(g)
    return "\n\n".join("\n".join([track_title(track), "", *track_table(members)]) for track, members in tracks.items())


def legend() -> str:
    """How to read the table: the board's own legend (the lines LEADERBOARD.md and the page print)."""
    return "\n".join(board_legend())  # its last line says what ★ marks


def main(args: list[str]) -> int:
    from alignzoo import plugins

    parser = argparse.ArgumentParser(prog="alignzoo demo", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="quick", help="smoke | quick | standard (default: quick)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--out", default=None, help="sweep directory (default: outputs/demo/<time>)")
    parser.add_argument("--no-wandb", action="store_true", help="do not mirror runs to offline W&B")
    parser.add_argument("--jobs", type=int, default=2, help="jobs run at once (default 2: one per core; 1: in order)")
    ns, overrides = parser.parse_known_args(args)
    algos = demo_algos(plugins.load().registries)
    out = Path(ns.out or f"outputs/demo/{dt.datetime.now():%Y-%m-%d_%H-%M-%S}")
    loggers = "[console,jsonl]" if ns.no_wandb else "[console,jsonl,wandb]"
    cmd = [sys.executable, "-m", "alignzoo", "run", "-m", f"algo={','.join(algos)}", f"seed={ns.seeds}",
           f"budget={ns.budget}", "task=sentiment", f"logger={loggers}", f"hydra.sweep.dir={out}", *overrides]
    if ns.jobs > 1:
        cmd += ["launcher=joblib", f"hydra.launcher.n_jobs={ns.jobs}"]
    print(f"alignzoo demo: {len(algos)} algorithms x {len(ns.seeds.split(','))} seeds at budget={ns.budget}\n  "
          + " ".join(cmd[2:]), flush=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    code = subprocess.call(cmd, env=env)
    try:
        records = collect([out]).records
    except AlignzooError as exc:
        print(f"alignzoo demo: no results to show: {exc}", file=sys.stderr)
        return code or 1
    print(f"\nResults at budget={ns.budget}.\n{legend()}\n")
    print(results_table(records))
    print(f"\nRecords: {out}/*/record.json")
    if (out / "board" / "index.html").is_file():
        print(f"Leaderboard: {out}/board/index.html (also LEADERBOARD.md, leaderboard.json, runs.csv)")
    if not ns.no_wandb:
        print(f"W&B offline runs: {out}/*/wandb/offline-run-*  (upload with `wandb sync <dir>`)")
    return code

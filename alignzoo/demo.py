"""``alignzoo demo`` (``make demo``): the zoo sweep on the embedded task, a short verifiable-track sweep, then the
leaderboard's tables.

Runs every registered optimizer that fits the task plus the SFT reference row, x 3 seeds at ``budget=quick``
(one Hydra multirun, so stages are built once and shared), then a few optimizers on ``task=arithmetic`` at
``budget=smoke`` (``VERIFIABLE``: the checker as the reward, ``labeler=verifier`` for DPO; ``--no-verifiable``
skips it), then prints the board's own ranked table of the records (``alignzoo/board``: mean over seeds with its
Student-t or BCa interval, ranks from Holm-corrected tests, comparisons with the SFT row, Pareto stars), one per
track, row for row what the sweeps' board callback writes into ``<out>/board/LEADERBOARD.md``: one set of
statistics, not two.
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


#: the verifiable-track sweep: optimizers (those registered run; the SFT row last) and its settings. Smoke-sized
#: (about 3 minutes on 2 cores): it shows the track, +experiment=verifiable measures it.
VERIFIABLE_ALGOS = {"ppo": "ppo_rlvr", "grpo": "grpo_rlvr", "dpo": "dpo_rlvr", "sft": "sft"}  # algo -> its preset
#: (the *_rlvr presets carry the lr picked for this task: at the defaults the tiny policy loses accuracy)
VERIFIABLE = ["budget=smoke", "task=arithmetic", "labeler=verifier", "seed=0,1", "task.sft_size=6000",
              "pipeline.pretrain_steps=300", "pipeline.sft_steps=1500", "pipeline.sft_lr=1e-3",
              "pipeline.completions_per_prompt=4", "budget.eval_max_new_tokens=16",
              "evaluator=[accuracy,pass_at_k,format_rate,format_hack_rate,length_generalisation,gold_reward,kl,length]"]


def verifiable_algos(registries: Any) -> list[str]:
    known = set(registries["algo"].names())
    return [preset for algo, preset in VERIFIABLE_ALGOS.items() if algo in known]


#: variants the demo leaves out, with the row that runs their code path (the GRPO family's other losses and
#: estimators, the cheaper ILQL): `make demo` stays within 15 minutes on 2 cores; +experiment=zoo runs them all
DEMO_VARIANTS = {"dr_grpo": "grpo", "gspo": "grpo", "cispo": "grpo", "reinforce_pp": "grpo", "ilql_light": "ilql"}


def demo_algos(registries: Any, task: str = "sentiment") -> list[str]:
    """Optimizers that can run on the task (all built-ins do on the embedded one) except ``DEMO_VARIANTS``; the
    SFT row last."""
    names = [n for n in registries["algo"].names() if n != "sft" and n not in DEMO_VARIANTS]
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
    parser.add_argument("--no-verifiable", action="store_true", help="skip the verifiable-track sweep")
    ns, overrides = parser.parse_known_args(args)
    registries = plugins.load().registries
    algos = demo_algos(registries)
    out = Path(ns.out or f"outputs/demo/{dt.datetime.now():%Y-%m-%d_%H-%M-%S}")
    loggers = "[console,jsonl]" if ns.no_wandb else "[console,jsonl,wandb]"
    launcher = ["launcher=joblib", f"hydra.launcher.n_jobs={ns.jobs}"] if ns.jobs > 1 else []
    cmd = [sys.executable, "-m", "alignzoo", "run", "-m", f"algo={','.join(algos)}", f"seed={ns.seeds}",
           f"budget={ns.budget}", "task=sentiment", f"logger={loggers}", f"hydra.sweep.dir={out}", *overrides,
           *launcher]
    left_out = sorted(set(registries["algo"].names()) & set(DEMO_VARIANTS))
    print(f"alignzoo demo: {len(algos)} algorithms x {len(ns.seeds.split(','))} seeds at budget={ns.budget}\n  "
          + " ".join(cmd[2:]), flush=True)
    if left_out:
        print(f"  (left out: {', '.join(left_out)}, variants of rows above; `alignzoo run -m +experiment=zoo` "
              "runs every optimizer)", flush=True)
    env = {**os.environ, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    code = subprocess.call(cmd, env=env)
    verifiable = verifiable_algos(registries)
    if verifiable and not ns.no_verifiable:
        # its own sweep folder inside the demo's: the records are collected with the zoo's, one table per track
        cmd = [sys.executable, "-m", "alignzoo", "run", "-m", f"algo={','.join(verifiable)}", *VERIFIABLE,
               f"logger={loggers}", f"hydra.sweep.dir={out / 'verifiable'}", *launcher]
        print(f"\nalignzoo demo: the verifiable track, {len(verifiable)} algorithms on task=arithmetic\n  "
              + " ".join(cmd[2:]), flush=True)
        code = subprocess.call(cmd, env=env) or code
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

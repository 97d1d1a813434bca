"""``alignzoo demo`` (``make demo``): the zoo sweep on the embedded task, then a table over seeds.

Runs every registered optimizer that fits the task plus the SFT reference row, x 3 seeds at ``budget=quick``
(one Hydra multirun, so stages are built once and shared), then prints gold reward, KL and win rate per algorithm
with 95% confidence intervals over seeds, and the gain over the SFT reference (paired per prompt and seed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from alignzoo.stats import mean_ci

COLUMNS = [("eval/gold_reward", "gold reward"), ("eval/gold_reward_vs_reference", "gain over SFT"),
           ("eval/kl", "KL (nats)"), ("eval/win_rate", "win rate"), ("eval/length", "length"),
           ("eval/eos_share", "EOS share")]


def demo_algos(registries: Any, task: str = "sentiment") -> list[str]:
    """Optimizers that can run on the task (all built-ins do on the embedded one); the SFT row last."""
    names = [n for n in registries["algo"].names() if n != "sft"]
    return names + ["sft"]


def load_records(sweep_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(sweep_dir).rglob("record.json"))]


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per algorithm: mean and 95% CI over seeds of each column, counts of ok and failed runs."""
    by_algo: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_algo[r.get("algo") or "?"].append(r)
    rows = []
    for algo, recs in by_algo.items():
        ok = [r for r in recs if r["status"] == "ok"]
        row: dict[str, Any] = {"algo": algo, "n": len(ok), "failed": len(recs) - len(ok)}
        for key, _ in COLUMNS:
            row[key] = mean_ci([r["metrics"][key] for r in ok if key in r["metrics"]])
        rows.append(row)
    rows.sort(key=lambda r: -r["eval/gold_reward"][0] if r["n"] else float("inf"))
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["algo", "n"] + [label for _, label in COLUMNS] + ["failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["algo"], str(r["n"])]
        for key, _ in COLUMNS:
            m, lo, hi = r[key]
            cells.append("n/a" if m != m else f"{m:.3f} [{lo:.3f}, {hi:.3f}]")
        cells.append(str(r["failed"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    records = load_records(out)
    if not records:
        print(f"alignzoo demo: no records were written under {out}", file=sys.stderr)
        return code or 1
    print(f"\nResults on task=sentiment, budget={ns.budget} (mean [95% CI] over seeds; gain over SFT is paired):\n")
    print(format_table(summarize(records)))
    print(f"\nRecords: {out}/*/record.json")
    if not ns.no_wandb:
        print(f"W&B offline runs: {out}/*/wandb/offline-run-*  (upload with `wandb sync <dir>`)")
    return code

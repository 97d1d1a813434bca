"""Interleaved repetitions in fresh processes, and the statistics the report quotes.

A comparison runs its cases round by round: round 0 in the listed order, round 1 reversed, and so on (A B B A
A B ...), each case in a fresh process (``bench/worker.py``), so slow drifts in the machine's load hit every case
alike. Each process reports the median of its timed steps; a case's figure is the median over rounds with the
min-max beside it, and a ratio is the median of the same-round ratios (A_i / B_i).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Comparison:
    name: str  # key in the results file
    title: str  # heading in BENCHMARKS.md
    cases: list[str]  # worker cases, interleaved round by round
    ratios: list[tuple[str, str]]  # (numerator, denominator) same-round ratios to report
    warmup: int = 2  # steps dropped at the start of each process
    measure: int = 5  # steps timed in each process
    per_token: bool = False  # also report time per completion token (online RL)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # keyword arguments per case
    reps: Optional[int] = None  # rounds; None: the run's --reps
    timeout_s: int = 600  # per process


def schedule(cases: list[str], reps: int) -> list[tuple[int, str]]:
    """(round, case) in run order: even rounds in the given order, odd rounds reversed."""
    out = []
    for r in range(reps):
        order = cases if r % 2 == 0 else list(reversed(cases))
        out.extend((r, c) for c in order)
    return out


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def case_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of each process's median step time, min-max, peak memory, tokens per step."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"failed": len(runs), "errors": [r.get("error") for r in runs]}
    out: dict[str, Any] = {"peak_rss_mib": median([r["peak_rss_mib"] for r in ok]),
                           "working_rss_mib": median([r["peak_rss_mib"] - r["baseline_rss_mib"] for r in ok]),
                           "failed": len(runs) - len(ok)}
    tokens = [r.get("completion_tokens_per_step") for r in ok]
    for prefix, key in (("", "step_times"), ("cpu_", "cpu_step_times")):
        if not all(key in r for r in ok):
            continue
        per_round = [median(r[key]) for r in ok]
        out.update({f"{prefix}median_s": median(per_round), f"{prefix}min_s": min(per_round),
                    f"{prefix}max_s": max(per_round), f"{prefix}rounds_s": per_round})
        if all(t for t in tokens):
            per_token = [median(r[key]) / r["completion_tokens_per_step"] for r in ok]
            out[f"{prefix}ms_per_completion_token"] = 1000 * median(per_token)
            out[f"{prefix}completion_tokens_per_s"] = median([1 / t for t in per_token])
    if all(t for t in tokens):
        out["completion_tokens_per_step"] = median(tokens)
    return out


def same_round_ratios(runs: dict[str, list[dict[str, Any]]], num: str, den: str, *, per_token: bool = False,
                      key: str = "step_times") -> dict[str, Any]:
    """Ratios num/den of the per-process median step times (or times per completion token) within each round;
    ``key="cpu_step_times"`` takes CPU time instead of wall-clock time."""
    def value(r: dict[str, Any]) -> float:
        t = median(r[key])
        return t / r["completion_tokens_per_step"] if per_token else t

    by_round = {side: {r["round"]: value(r) for r in runs.get(side, []) if "error" not in r} for side in (num, den)}
    rounds = sorted(set(by_round[num]) & set(by_round[den]))
    values = [by_round[num][i] / by_round[den][i] for i in rounds]
    if not values:
        return {"rounds": 0}
    return {"median": median(values), "min": min(values), "max": max(values), "values": values,
            "rounds": len(values)}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_worker(case: str, warmup: int, measure: int, params: dict[str, Any], timeout_s: int) -> dict[str, Any]:
    """One case in a fresh Python process (one torch thread, W&B disabled, no plugins); never raises."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "ALIGNZOO_PLUGINS": "", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT),
           "TRANSFORMERS_VERBOSITY": "error", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="alignzoo-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench.worker", case, "--warmup", str(warmup), "--measure", str(measure),
               "--params", json.dumps(params), "--out", str(out)]
        load = loadavg()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"case": case, "error": f"timed out after {timeout_s} s", "loadavg": load}
        wall = round(time.perf_counter() - t0, 2)
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
            return {"case": case, "error": f"exit {proc.returncode}: " + "\n".join(tail), "loadavg": load}
        result = json.loads(out.read_text())
    result.update(loadavg=load, wall_s=wall)
    return result


def run_comparison(comp: Comparison, reps: int, *, runner: Callable[..., dict[str, Any]] = run_worker,
                   log: Callable[[str], None] = lambda m: print(m, flush=True)) -> dict[str, Any]:
    """Every round of ``comp``; returns per-case summaries, same-round ratios and the raw runs."""
    reps = comp.reps or reps
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in comp.cases}
    order = schedule(comp.cases, reps)
    for i, (rnd, case) in enumerate(order, 1):
        result = runner(case, comp.warmup, comp.measure, comp.params.get(case, {}), comp.timeout_s)
        result["round"] = rnd
        runs[case].append(result)
        if "error" in result:
            log(f"  [{comp.name} {i}/{len(order)}] {case}: FAILED {result['error'].splitlines()[0]}")
        else:
            log(f"  [{comp.name} {i}/{len(order)}] {case}: {median(result['step_times']):.3f} s/step, "
                f"{median(result['cpu_step_times']):.3f} CPU s/step (load {result['loadavg'][0]})")
    ratios = {}
    for suffix, key in (("", "step_times"), (" cpu", "cpu_step_times")):
        for a, b in comp.ratios:
            ratios[f"{a}/{b}{suffix}"] = same_round_ratios(runs, a, b, key=key)
            if comp.per_token:
                ratios[f"{a}/{b} per token{suffix}"] = same_round_ratios(runs, a, b, per_token=True, key=key)
    return {"title": comp.title, "reps": reps, "warmup": comp.warmup, "measure": comp.measure,
            "cases": {c: case_summary(rs) for c, rs in runs.items()}, "ratios": ratios, "runs": runs}

"""``python -m bench.run`` (``make bench``): every comparison, interleaved in fresh processes, then
``bench/results/<date>.json`` and ``BENCHMARKS.md`` regenerated from it.

Options: ``--reps N`` rounds per comparison (default 5, or ``$BENCH_REPS``), ``--quick`` (2 rounds, fewer steps:
a smoke test of the whole pipeline, not numbers to quote), ``--only dpo,online,scaling,parity``,
``--report-only FILE`` (re-render BENCHMARKS.md from a results file).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import SHAPES
from bench.harness import ROOT, Comparison, loadavg, median, run_comparison

RESULTS = ROOT / "bench" / "results"

#: DPO response lengths and batch sizes of the scaling table (prompt 16 tokens)
SCALING_GRID = [{"batch": 8, "response_len": 32}, {"batch": 8, "response_len": 64}, {"batch": 8, "response_len": 128},
                {"batch": 4, "response_len": 32}, {"batch": 16, "response_len": 32}]


def comparisons(quick: bool) -> list[Comparison]:
    steps = {"warmup": 1, "measure": 2} if quick else {}
    return [
        Comparison("dpo", "DPO step (8 pairs, prompt 16 + response 32 + EOS, policy and reference forwards)",
                   ["alignzoo_dpo", "bare_dpo", "trl_dpo"],
                   ratios=[("alignzoo_dpo", "bare_dpo"), ("trl_dpo", "alignzoo_dpo"), ("trl_dpo", "bare_dpo")],
                   **({"warmup": 2, "measure": 8} if not quick else steps)),
        Comparison("online", "Online RL step (16 completions x 64 new tokens, VADER reward, reference model, "
                             "beta 0.04) and sampling alone",
                   ["hf_generate", "alignzoo_rollout", "alignzoo_ppo", "alignzoo_a2c", "trl_grpo", "trl_rloo"],
                   ratios=[("alignzoo_rollout", "hf_generate"),
                           ("alignzoo_ppo", "hf_generate"), ("alignzoo_a2c", "hf_generate"),
                           ("trl_grpo", "hf_generate"), ("trl_rloo", "hf_generate"),
                           ("trl_grpo", "alignzoo_ppo"), ("trl_grpo", "alignzoo_a2c"),
                           ("trl_rloo", "alignzoo_ppo"), ("trl_rloo", "alignzoo_a2c")],
                   per_token=True, **({"warmup": 1, "measure": 3} if not quick else steps)),
        Comparison("scaling", "DPO step time vs response length and batch size",
                   ["alignzoo_dpo", "bare_dpo"], ratios=[("alignzoo_dpo", "bare_dpo")],
                   params={"alignzoo_dpo": {"grid": SCALING_GRID}, "bare_dpo": {"grid": SCALING_GRID}},
                   reps=2 if quick else 3, **({"warmup": 2, "measure": 4} if not quick else steps)),
    ]


def scaling_table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per grid point: the median over rounds of each case's step time, and of the same-round ratio."""
    rows = []
    for i, point in enumerate(SCALING_GRID):
        row: dict[str, Any] = dict(point)
        for suffix, key in (("", "step_times"), ("_cpu", "cpu_step_times")):
            by_round: dict[str, dict[int, float]] = {}
            for case, runs in result["runs"].items():
                times = {r["round"]: median(r["grid"][i][key]) for r in runs if "grid" in r}
                by_round[case] = times
                row[case + suffix] = median(list(times.values())) if times else None
            a, b = by_round.get("alignzoo_dpo", {}), by_round.get("bare_dpo", {})
            both = sorted(set(a) & set(b))
            row["ratio" + suffix] = median([a[r] / b[r] for r in both]) if both else None
        row["tokens_per_step"] = 2 * point["batch"] * (SHAPES.prompt_len + point["response_len"] + 1)
        rows.append(row)
    return rows


def parity(timeout_s: int = 600) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "ALIGNZOO_PLUGINS": "",
           "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.parity"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"alignzoo_loss"')]
    if proc.returncode != 0 or not lines:
        return {"error": "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])}
    return json.loads(lines[-1])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    flags = ""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem, "avx512": "avx512f" in flags,
            "platform": platform.platform(), "python": platform.python_version(), "torch_threads": 1,
            "dtype": "float32", "gpu": None}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("alignzoo", "torch", "transformers", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_sha() -> str | None:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return f"load average: {loadavg()}"


def acceptance(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's acceptance lines, evaluated on the measured ratios (medians of same-round ratios)."""
    comps = results.get("comparisons", {})

    def ratio(comp: str, key: str) -> tuple[float | None, float | None]:
        ratios = comps.get(comp, {}).get("ratios", {})
        return ratios.get(key, {}).get("median"), ratios.get(f"{key} cpu", {}).get("median")

    lines = [
        ("alignzoo DPO step <= 1.15x the bare PyTorch loop", ratio("dpo", "alignzoo_dpo/bare_dpo"), "<=", 1.15),
        ("alignzoo DPO step >= 2x faster than TRL DPOTrainer", ratio("dpo", "trl_dpo/alignzoo_dpo"), ">=", 2.0),
        ("alignzoo PPO step <= 1.6x bare generation (HF generate) of its rollouts",
         ratio("online", "alignzoo_ppo/hf_generate"), "<=", 1.6),
        ("PPO faster per completion token than TRL GRPOTrainer (GRPO / PPO time per token)",
         ratio("online", "trl_grpo/alignzoo_ppo per token"), ">", 1.0),
        ("A2C faster per completion token than TRL GRPOTrainer (GRPO / A2C time per token)",
         ratio("online", "trl_grpo/alignzoo_a2c per token"), ">", 1.0),
        ("rollout engine at least as fast as HF generate at 16 x 64 (engine / generate time per token)",
         ratio("online", "alignzoo_rollout/hf_generate per token"), "<=", 1.0),
    ]
    par = results.get("parity", {})
    out = []

    def met(value: float | None, op: str, target: float) -> bool | None:
        if value is None:
            return None
        return value <= target if op == "<=" else value >= target if op == ">=" else value > target

    for text, (wall, cpu), op, target in lines:
        out.append({"line": text, "value": wall, "met": met(wall, op, target), "value_cpu": cpu,
                    "met_cpu": met(cpu, op, target), "target": f"{op} {target}"})
    if par:
        diff = par.get("abs_diff")
        ok = None if diff is None else bool(diff <= 1e-5 and par.get("same_token_ids"))
        out.append({"line": "DPO loss parity with TRL (absolute difference, same weights and batch)", "value": diff,
                    "met": ok, "value_cpu": None, "met_cpu": None, "target": "<= 1e-05"})
    return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One results file from parts run separately (e.g. ``--only dpo,online`` and, at the same time, ``--only
    scaling``): the first part's header, every part's comparisons and parity, the load of each part, acceptance
    re-evaluated."""
    out = {**parts[0], "comparisons": {}, "parts": []}
    for part in parts:
        out["comparisons"].update(part.get("comparisons", {}))
        if "parity" in part:
            out["parity"] = part["parity"]
        out["parts"].append({"date": part["date"], "only": sorted(part.get("comparisons", {})), "load": part["load"],
                             "wall_s": part.get("wall_s")})
    out["load"] = {"uptime_start": min((p["load"]["uptime_start"] for p in parts), key=lambda u: u[:8]),
                   "uptime_end": max((p["load"]["uptime_end"] for p in parts), key=lambda u: u[:8])}
    out["wall_s"] = max(p.get("wall_s") or 0 for p in parts)
    out["acceptance"] = acceptance(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "5")),
                        help="rounds per comparison (default 5 or $BENCH_REPS)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, few steps: checks the pipeline end to end")
    parser.add_argument("--only", default="dpo,online,scaling,parity", help="comma-separated parts to run")
    parser.add_argument("--out", default=None, help="results file (default bench/results/<date>.json)")
    parser.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"), help="report to regenerate")
    parser.add_argument("--report-only", default=None, metavar="FILE", help="only re-render the report from FILE")
    parser.add_argument("--merge", nargs="+", default=None, metavar="FILE",
                        help="combine results files of parts run separately (--only) into --out, then re-render")
    parser.add_argument("--note", action="append", default=[], help="a note for the results file and the report "
                                                                      "(with --merge or --report-only; repeatable)")
    args = parser.parse_args(argv)
    from bench.report import render

    if args.merge:
        results = merge([json.loads(Path(f).read_text()) for f in args.merge])
        results["notes"] = results.get("notes", []) + args.note
        out = Path(args.out) if args.out else RESULTS / f"{results['date'][:10]}.json"
        out.write_text(json.dumps(results, indent=1) + "\n")
        args.report_only = str(out)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        if args.note and not args.merge:  # notes added to an existing results file
            results["notes"] = results.get("notes", []) + args.note
            Path(args.report_only).write_text(json.dumps(results, indent=1) + "\n")
        Path(args.markdown).write_text(render(results, source=Path(args.report_only)))
        print(f"wrote {args.markdown}")
        return 0
    try:
        import trl  # noqa: F401
    except ImportError:
        print("bench: TRL is not installed; `make bench` installs it (pip install -c constraints.txt '.[bench]')",
              file=sys.stderr)
        return 2
    reps = 2 if args.quick else args.reps
    if reps < 1:
        print(f"bench: --reps must be >= 1 (got {reps})", file=sys.stderr)
        return 2
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.time()
    results: dict[str, Any] = {
        "schema": 1, "date": started.isoformat(timespec="seconds"), "quick": args.quick, "reps": reps,
        "machine": machine(), "versions": versions(), "git": git_sha(), "shapes": dataclasses.asdict(SHAPES),
        "load": {"uptime_start": uptime()}, "comparisons": {},
    }
    for comp in comparisons(args.quick):
        if comp.name not in parts:
            continue
        print(f"bench: {comp.name} ({comp.reps or reps} rounds of {', '.join(comp.cases)})", flush=True)
        res = run_comparison(comp, reps)
        if comp.name == "scaling":
            res["table"] = scaling_table(res)
        results["comparisons"][comp.name] = res
    if "parity" in parts:
        print("bench: DPO loss parity with TRL", flush=True)
        results["parity"] = parity()
    results["load"]["uptime_end"] = uptime()
    results["wall_s"] = round(time.time() - t0, 1)
    results["acceptance"] = acceptance(results)
    out = Path(args.out) if args.out else RESULTS / f"{started:%Y-%m-%d}{'-quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    Path(args.markdown).write_text(render(results, source=out))
    print(f"bench: wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out} and {args.markdown} "
          f"in {results['wall_s']:.0f} s")
    for line in results["acceptance"]:
        mark = {True: "MET", False: "MISSED", None: "n/a"}[line["met"]]
        value = "n/a" if line["value"] is None else f"{line['value']:.3g}"
        cpu = "" if line["value_cpu"] is None else f"; CPU time {line['value_cpu']:.3g}"
        print(f"  {mark:6s} {line['line']}: {value} (target {line['target']}){cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

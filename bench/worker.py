"""One benchmark case in a fresh process: ``python -m bench.worker CASE --warmup W --measure M [--params JSON]
--out FILE``. Writes a JSON object: step times (seconds, after the warm-up), peak and baseline memory, and
what the case reports (final loss, tokens per step, ...). The harness (``bench/harness.py``) starts these."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable


def _case(name: str) -> Callable[..., dict[str, Any]]:
    from bench import az, bare

    cases: dict[str, Callable[..., dict[str, Any]]] = {
        "alignzoo_dpo": az.dpo,
        "bare_dpo": bare.dpo,
        "alignzoo_ppo": lambda steps, clock, **kw: az.online("ppo", steps, clock, epochs=1, **kw),
        "alignzoo_ppo_4epochs": lambda steps, clock, **kw: az.online("ppo", steps, clock, epochs=4, **kw),
        "alignzoo_a2c": lambda steps, clock, **kw: az.online("a2c", steps, clock, **kw),
        "alignzoo_rollout": az.rollout_engine,
        "bare_kv_loop": bare.kv_loop,
        "hf_generate": bare.hf_generate,
    }
    if name.startswith("trl_"):
        from bench import trl_runners

        cases.update(trl_runners.CASES)
    if name not in cases:
        raise SystemExit(f"unknown benchmark case {name!r}; known: {', '.join(sorted(cases))}, trl_dpo, trl_grpo, "
                         "trl_rloo")
    return cases[name]


def run_case(name: str, warmup: int, measure: int, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one case in this process and return its result (the caller owns the process: call it once)."""
    from bench.common import StepClock, peak_rss_mib, pin_threads, rss_mib, steps_needed

    pin_threads()
    import torch

    t0 = time.perf_counter()
    params = dict(params or {})
    grid = params.pop("grid", None)  # several shapes one after another in this process (the scaling table)
    fn = _case(name)
    baseline = rss_mib()  # after imports, before models and data
    points = []
    for point in grid or [{}]:
        clock = StepClock(warmup)
        extra = fn(steps_needed(warmup, measure), clock, **params, **point)
        if len(clock.step_times) != measure:
            raise RuntimeError(f"{name}: expected {measure} timed steps, the clock has {len(clock.step_times)}")
        points.append({"params": point, "step_times": clock.step_times, "cpu_step_times": clock.cpu_step_times,
                       "torch_threads": torch.get_num_threads(), **extra})
    out = {"case": name, **points[0], "params": {**params, **points[0]["params"]}, "peak_rss_mib": peak_rss_mib(), "baseline_rss_mib": baseline,
           "process_s": round(time.perf_counter() - t0, 2)}
    if grid:
        out["grid"] = points
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("case")
    parser.add_argument("--warmup", type=int, default=2, help="steps timed but dropped at the start")
    parser.add_argument("--measure", type=int, default=5, help="timed steps kept")
    parser.add_argument("--params", default="{}", help="JSON keyword arguments for the case")
    parser.add_argument("--out", default="-", help="result file (JSON); - prints it")
    args = parser.parse_args(argv)
    result = run_case(args.case, args.warmup, args.measure, json.loads(args.params))
    text = json.dumps(result)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

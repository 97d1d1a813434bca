"""The GPU benchmark, prepared for when a GPU is lent: ``python -m bench.gpu --device cuda``.

bf16 autocast (alignzoo's ``run.precision=bf16`` engine; ``torch.autocast`` around the bare loops; TRL's
``bf16=True``) on a GPT-2 of 12 layers, 12 heads, width 768 and a 32000-row vocabulary (about 110M parameters)
built from a config: DPO steps of 16 pairs (prompt 128 + response 256 + EOS), rollouts of 64 completions x 128
new tokens, and a PPO step on them. The cases run in this process, interleaved over ``--reps`` rounds, with the
clock synchronised with the GPU; peak GPU memory per case. ``--device cpu --tiny`` runs the same code on the tiny
CPU shapes in seconds (the test suite does). Writes a JSON results file (``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

from bench.common import SHAPES, Shapes, StepClock, pin_threads

GPU_SHAPES = Shapes(n_layer=12, n_head=12, n_embd=768, vocab=4096, model_vocab=32000, n_positions=1024,
                    dpo_pairs=16, prompt_len=128, response_len=256, completions=64, new_tokens=128,
                    dataset_pairs=128, dataset_prompts=128)


def cases(device: str, precision: str, with_trl: bool) -> dict[str, Callable[[int, StepClock, Shapes], dict]]:
    import torch

    from bench import az, bare

    def autocast() -> Any:
        if precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def bare_case(fn: Callable[..., dict]) -> Callable[[int, StepClock, Shapes], dict]:
        def run(steps: int, clock: StepClock, shapes: Shapes) -> dict:
            with autocast():
                return fn(steps, clock, shapes=shapes, device=device)
        return run

    out: dict[str, Callable[[int, StepClock, Shapes], dict]] = {
        "alignzoo_dpo": lambda n, c, s: az.dpo(n, c, shapes=s, device=device, precision=precision),
        "bare_dpo": bare_case(bare.dpo),
        "alignzoo_rollout": lambda n, c, s: az.rollout_engine(n, c, shapes=s, device=device, precision=precision),
        "hf_generate": bare_case(bare.hf_generate),
        "alignzoo_ppo": lambda n, c, s: az.online("ppo", n, c, shapes=s, epochs=1, device=device,
                                                  precision=precision),
    }
    if with_trl:
        from bench import trl_runners

        out["trl_dpo"] = lambda n, c, s: trl_runners.dpo(n, c, shapes=s, device=device)
    return out


RATIOS = [("alignzoo_dpo", "bare_dpo"), ("trl_dpo", "alignzoo_dpo"), ("alignzoo_rollout", "hf_generate"),
          ("alignzoo_ppo", "hf_generate")]


def run(device: str, *, tiny: bool, reps: int, warmup: int, measure: int, with_trl: bool,
        only: list[str] | None = None) -> dict[str, Any]:
    import torch

    from bench.common import steps_needed

    pin_threads()
    shapes = SHAPES if tiny else GPU_SHAPES
    precision = "fp32" if device == "cpu" else "bf16"
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("bench.gpu: --device cuda but torch sees no GPU (torch.cuda.is_available() is False); "
                         "use --device cpu --tiny for the CPU smoke run")
    todo = cases(device, precision, with_trl)
    if only:
        unknown = sorted(set(only) - set(todo))
        if unknown:
            raise SystemExit(f"bench.gpu: unknown case(s) {', '.join(unknown)}; the cases are {', '.join(todo)}")
        todo = {name: fn for name, fn in todo.items() if name in only}
    times: dict[str, list[float]] = {name: [] for name in todo}
    memory: dict[str, float] = {}
    for r in range(reps):
        order = list(todo) if r % 2 == 0 else list(reversed(todo))
        for name in order:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            clock = StepClock(warmup, sync=torch.cuda.synchronize if cuda else None)
            todo[name](steps_needed(warmup, measure), clock, shapes)
            times[name].append(statistics.median(clock.step_times))
            if cuda:
                memory[name] = max(memory.get(name, 0.0), torch.cuda.max_memory_allocated() / 2**20)
            print(f"  round {r} {name}: {times[name][-1]:.4f} s/step", flush=True)
    ratios = {}
    for a, b in RATIOS:
        if times.get(a) and times.get(b):
            values = [x / y for x, y in zip(times[a], times[b])]
            ratios[f"{a}/{b}"] = {"median": statistics.median(values), "values": values}
    return {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": device,
            "gpu": torch.cuda.get_device_name() if cuda else None, "precision": precision, "tiny": tiny,
            "reps": reps, "warmup": warmup, "measure": measure, "shapes": dataclasses.asdict(shapes),
            "versions": {"torch": torch.__version__},
            "cases": {k: {"median_s": statistics.median(v), "rounds_s": v, "peak_gpu_mib": memory.get(k)}
                      for k, v in times.items()},
            "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny CPU shapes (a smoke run of the same code)")
    parser.add_argument("--reps", type=int, default=None, help="interleaved rounds (default 3; 1 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="steps dropped per case (default 3; 1 with --tiny)")
    parser.add_argument("--measure", type=int, default=None, help="timed steps per case (default 10; 2 with --tiny)")
    parser.add_argument("--no-trl", action="store_true", help="skip TRL's DPOTrainer (run by default when installed)")
    parser.add_argument("--only", default=None, help="comma-separated cases to run (default: all)")
    parser.add_argument("--out", default=None, help="results file (default bench/results/gpu-<date>.json; with "
                                                    "--tiny: printed only)")
    args = parser.parse_args(argv)
    try:
        import trl  # noqa: F401
        have_trl = True
    except ImportError:
        have_trl = False
    with_trl = have_trl and not args.no_trl and not args.tiny
    def pick(value: int | None, tiny: int, full: int) -> int:
        return value if value is not None else tiny if args.tiny else full

    result = run(args.device, tiny=args.tiny, reps=pick(args.reps, 1, 3), warmup=pick(args.warmup, 1, 3),
                 measure=pick(args.measure, 2, 10), with_trl=with_trl,
                 only=args.only.split(",") if args.only else None)
    text = json.dumps(result, indent=1)
    out = args.out or (None if args.tiny else
                       str(Path(__file__).parent / "results" / f"gpu-{dt.date.today():%Y-%m-%d}.json"))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
        print(f"bench.gpu: wrote {out}")
    for key, r in result["ratios"].items():
        print(f"  {key}: {r['median']:.3f}")
    if not out:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""BENCHMARKS.md from a results file (``bench/results/<date>.json``): nothing in the report is typed by hand
except the descriptions below; ``python -m bench.run --report-only FILE`` re-renders it."""

from __future__ import annotations

import json

import re

from pathlib import Path
from typing import Any

from bench.harness import ROOT

DESCRIPTIONS = {
    "alignzoo_dpo": "alignzoo `algos.dpo.train` (its collate, one concatenated policy forward, one reference "
                    "forward, sigmoid loss, metrics, AdamW, clipping, logging) on a Hydra-composed `RunContext`",
    "bare_dpo": "a bare PyTorch loop: pre-tokenized tensors, policy and reference forwards, log_softmax + gather, "
                "sigmoid loss, backward, clipping, AdamW",
    "trl_dpo": "TRL `DPOTrainer` (bf16 and gradient checkpointing off, explicit reference model, logging every 10 "
               "steps, its default)",
    "hf_generate": "`model.generate(do_sample=True)`: bare generation, the denominator of the online ratios",
    "alignzoo_rollout": "alignzoo's rollout engine `rollout.generate` (KV cache, per-row EOS stop, per-token "
                        "log-probs)",
    "bare_kv_loop": "a plain KV-cache sampling loop (no EOS bookkeeping, no padding support)",
    "alignzoo_ppo": "alignzoo PPO (`algos.ppo.train` on `training.loop`: sample, VADER score, policy/value and "
                    "reference forwards, KL-shaped rewards, GAE, one clipped update: epochs=1 to match GRPO's one "
                    "step per batch)",
    "alignzoo_ppo_4epochs": "alignzoo PPO with its default 4 epochs per batch (four updates per rollout batch)",
    "alignzoo_a2c": "alignzoo A2C (`algos.a2c`: the same experience, one unclipped update)",
    "trl_grpo": "TRL `GRPOTrainer` (4 prompts x 4 generations, num_iterations=1, beta 0.04)",
    "trl_rloo": "TRL `RLOOTrainer` (4 prompts x 4 generations, beta 0.04)",
}


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _range(summary: dict[str, Any]) -> str:
    return f"{summary['min_s']:.3f}-{summary['max_s']:.3f}"


def _ratio(r: dict[str, Any] | None) -> str:
    if not r or not r.get("rounds"):
        return "n/a"
    return f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})"


def _failed(name: str, s: dict[str, Any]) -> str:
    errors = "; ".join((e or "").splitlines()[0] for e in s.get("errors", []))
    return f"| {name} | failed in every round: {errors} |"


def _dpo(comp: dict[str, Any]) -> list[str]:
    out = ["| implementation | s/step (median) | min-max over rounds | pairs/s | ratio to bare loop (median, "
           "min-max) | CPU s/step | CPU-time ratio to bare | peak RSS MiB | RSS growth MiB |",
           "|---|---|---|---|---|---|---|---|---|"]
    pairs = 8
    for case, s in comp["cases"].items():
        if "median_s" not in s:
            out.append(_failed(case, s))
            continue
        base = case == "bare_dpo"
        ratio = "1.00" if base else _ratio(comp["ratios"].get(f"{case}/bare_dpo"))
        cpu_ratio = "1.00" if base else _ratio(comp["ratios"].get(f"{case}/bare_dpo cpu"))
        out.append(f"| `{case}` | {s['median_s']:.3f} | {_range(s)} | {pairs / s['median_s']:.1f} | {ratio} | "
                   f"{_f(s.get('cpu_median_s'))} | {cpu_ratio} | {s['peak_rss_mib']:.0f} | "
                   f"{s['working_rss_mib']:.0f} |")
    return out


def _conditions(uptime: str | None) -> str:
    """A sentence on contention, from the 1-minute load average at the start (``uptime``'s output)."""
    match = re.search(r"load average:\s*([\d.]+)", uptime or "")
    if match and float(match.group(1)) < 1.5:
        return ("Nothing else ran on the machine's 2 cores (the benchmark runs one process at a time), but step "
                "times on a shared VM still vary between rounds: interleaving keeps the same-round ratios fair.")
    return ("The machine has 2 cores and was shared while this ran (see the load averages above and the "
            "per-process load in the results file). Contention inflates every step time and widens the min-max "
            "ranges; interleaving keeps the same-round ratios fair, but treat absolute times as upper bounds.")


def _online(comp: dict[str, Any]) -> list[str]:
    out = ["| implementation | s/step (median) | min-max over rounds | completion tokens/step | ms per completion "
           "token | completion tokens/s | ratio to HF generate (median, min-max) | CPU s/step | CPU-time ratio to "
           "HF generate | peak RSS MiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for case, s in comp["cases"].items():
        if "median_s" not in s:
            out.append(_failed(case, s))
            continue
        base = case == "hf_generate"
        ratio = "1.00" if base else _ratio(comp["ratios"].get(f"{case}/hf_generate"))
        cpu_ratio = "1.00" if base else _ratio(comp["ratios"].get(f"{case}/hf_generate cpu"))
        out.append(f"| `{case}` | {s['median_s']:.3f} | {_range(s)} | {_f(s.get('completion_tokens_per_step'), 0)} "
                   f"| {_f(s.get('ms_per_completion_token'), 3)} | {_f(s.get('completion_tokens_per_s'), 0)} | "
                   f"{ratio} | {_f(s.get('cpu_median_s'))} | {cpu_ratio} | {s['peak_rss_mib']:.0f} |")
    return out


def _ratios(comp: dict[str, Any]) -> list[str]:
    out = ["| ratio (numerator / denominator, time) | median | min | max | rounds |", "|---|---|---|---|---|"]
    for key, r in comp["ratios"].items():
        if r.get("rounds"):
            out.append(f"| {key} | {r['median']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {r['rounds']} |")
    return out


def _scaling(comp: dict[str, Any]) -> list[str]:
    out = ["| pairs | response tokens | tokens per step (policy forward) | alignzoo s/step | bare s/step | "
           "alignzoo / bare | alignzoo CPU s/step | bare CPU s/step | CPU-time ratio |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in comp.get("table", []):
        out.append(f"| {row['batch']} | {row['response_len']} | {row['tokens_per_step']} | "
                   f"{_f(row.get('alignzoo_dpo'))} | {_f(row.get('bare_dpo'))} | {_f(row.get('ratio'), 2)} | "
                   f"{_f(row.get('alignzoo_dpo_cpu'))} | {_f(row.get('bare_dpo_cpu'))} | "
                   f"{_f(row.get('ratio_cpu'), 2)} |")
    return out


def gpu_section(results_dir: Path) -> list[str]:
    """The newest ``gpu-*.json`` in ``results_dir`` as a table (its cases, same-round ratios and notes), or a line
    saying there is none."""
    files = sorted(results_dir.glob("gpu-*.json"))
    if not files:
        return ["No GPU run has been recorded yet (`bench/results/gpu-*.json`): there are no GPU numbers here."]
    g = json.loads(files[-1].read_text())
    lines = [f"Latest GPU run: `{files[-1].relative_to(ROOT) if files[-1].is_relative_to(ROOT) else files[-1]}` "
             f"({g['date']}, {g.get('gpu')}, {g['precision']}, torch {g['versions'].get('torch')}, {g['reps']} "
             f"interleaved rounds of {g['measure']} timed steps after {g['warmup']} warm-up steps).",
             "", "| case | median s/step | rounds (s/step) | peak GPU memory (MiB) |", "|---|---|---|---|"]
    for name, c in g["cases"].items():
        rounds = ", ".join(_f(x, 4) for x in c["rounds_s"])
        lines.append(f"| {name} | {_f(c['median_s'], 4)} | {rounds} | {_f(c.get('peak_gpu_mib'), 0)} |")
    lines += ["", "| ratio (same round) | median | rounds |", "|---|---|---|"]
    for name, r in g["ratios"].items():
        lines.append(f"| {name} | {_f(r['median'])} | {', '.join(_f(x) for x in r['values'])} |")
    return lines + ([""] + [f"- {note}" for note in g.get("notes", [])] if g.get("notes") else [])


def render(results: dict[str, Any], *, source: Path | None = None) -> str:
    m, v, load = results["machine"], results["versions"], results["load"]
    comps = results.get("comparisons", {})
    src = source.relative_to(ROOT) if source and source.is_absolute() and source.is_relative_to(ROOT) else source
    src = src or "a results file"
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` from `{src}` (do not edit by hand; `python -m bench.run --report-only "
        f"{src}` re-renders it). alignzoo against TRL and against bare-PyTorch loops, on the tiny models and data "
        "shapes of the project's reference environment: a GPT-2 of 2 layers, 4 heads, width 128 and a "
        "4096-word vocabulary (random init, the same weights for every implementation), one torch thread, fp32.",
        "",
        "Method: every comparison runs its implementations interleaved (A B C, C B A, A B C, ...) over "
        f"{results['reps']} rounds, each in a fresh process; a process times "
        "every step from one step's end to the next (whatever the loop does in between counts), drops the first "
        "steps as warm-up and reports the median. A figure below is the median over rounds (min-max beside it); a "
        "ratio is the median of the same-round ratios.",
        "" if not results.get("quick") else "\n**Quick run (`--quick`): too few steps and rounds to quote.**\n",
        "## Machine and conditions",
        "",
        "| | |", "|---|---|",
        f"| date (UTC) | {results['date']} |",
        f"| CPU | {m['cpu']} ({m['cores']} cores{', AVX-512' if m.get('avx512') else ', no AVX-512'}) |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| platform | {m['platform']}, Python {m['python']} |",
        f"| threads / dtype | {m['torch_threads']} torch thread, {m['dtype']} |",
        "| versions | " + ", ".join(f"{k} {val}" for k, val in v.items()) + " |",
        f"| git | {results.get('git')} |",
        f"| load at start | `{load.get('uptime_start')}` |",
        f"| load at end | `{load.get('uptime_end')}` |",
        f"| wall time of the run | {results.get('wall_s')} s |",
        "",
        _conditions(load.get("uptime_start")),
        "",
        *[f"- {note}" for note in results.get("notes", [])],
        "" if results.get("notes") else None,
        "## Acceptance",
        "",
        "| line | target | measured (wall clock) | met | measured (CPU time) | met on CPU time |",
        "|---|---|---|---|---|---|",
    ]

    def val(x: Any) -> str:
        return "n/a" if x is None else (f"{x:.2e}" if x < 1e-3 else f"{x:.3f}")

    for a in results.get("acceptance", []):
        yes = {True: "yes", False: "**no**", None: "n/a"}
        lines.append(f"| {a['line']} | {a['target']} | {val(a['value'])} | {yes[a['met']]} | "
                     f"{val(a.get('value_cpu'))} | {yes[a.get('met_cpu')]} |")
    if "dpo" in comps:
        c = comps["dpo"]
        lines += ["", f"## {c['title']}", "", f"{c['reps']} rounds x {c['measure']} timed steps after "
                  f"{c['warmup']} warm-up steps per process.", "", *_dpo(c), "", *_ratios(c)]
    if "online" in comps:
        c = comps["online"]
        lines += ["", f"## {c['title']}", "",
                  f"{c['reps']} rounds x {c['measure']} timed steps after {c['warmup']} warm-up steps per process. "
                  "TRL 1.16 has no PPOTrainer, so PPO and A2C are compared with GRPOTrainer and RLOOTrainer on equal "
                  "work: the same 16 completions of up to 64 tokens per step, one optimizer step per batch, the "
                  "reference model every step. \"Per completion token\" divides each process's step time by the "
                  "completion tokens it sampled per step (a sequence that samples EOS stops early). The rollout "
                  "engine is compared with HF generate on the same rows.", "", *_online(c), "", *_ratios(c)]
    if "scaling" in comps:
        c = comps["scaling"]
        lines += ["", f"## {c['title']}", "",
                  f"Prompt 16 tokens; {c['reps']} rounds x {c['measure']} timed steps per shape, all shapes in one "
                  "process per round. Tokens per step: chosen and rejected rows, prompt + response + EOS.", "",
                  *_scaling(c)]
    par = results.get("parity")
    if par:
        lines += ["", "## DPO loss parity with TRL", ""]
        if "error" in par:
            lines.append(f"Failed: `{par['error'].splitlines()[-1] if par['error'] else 'no output'}`")
        else:
            lines += [f"Two different random initialisations as policy and reference, the benchmark's first "
                      f"{par['pairs']} pairs tokenized by each library (same token ids: {par['same_token_ids']}), "
                      f"sigmoid loss, beta {par['beta']}, fp32, TRL {par['trl']}:", "",
                      "| alignzoo loss | TRL DPOTrainer loss | abs difference |", "|---|---|---|",
                      f"| {par['alignzoo_loss']:.7f} | {par['trl_loss']:.7f} | {par['abs_diff']:.1e} |"]
    lines += ["", "## What is measured", "", "| case | what it runs |", "|---|---|"]
    seen = [c for comp in comps.values() for c in comp["cases"]]
    for case in dict.fromkeys(seen):
        lines.append(f"| `{case}` | {DESCRIPTIONS.get(case, '')} |")
    lines += [
        "",
        "Every implementation uses AdamW at a constant learning rate of 5e-4 with no weight decay and clips the "
        "gradient norm at 1.0; the DPO implementations see the same pairs (alignzoo and the bare loop even the same "
        "batch order: their losses agree step by step).",
        "",
        "## Where the time goes (profiling notes)",
        "",
        "From cProfile runs with a CPU-time clock on this machine while the targets were being met (alignzoo's "
        "changes are in `alignzoo/rollout.py`, `alignzoo/algos/online.py` (now `alignzoo/experience.py`), `ppo.py`, "
        "`dpo.py`, `ops.py`; none changes "
        "a loss or the sampled distribution):",
        "",
        "- `torch.multinomial` on a CPU draws an exponential variate for every vocabulary entry: about 2 ms per "
        "decoding step for 16 x 4096 probabilities, a quarter of the tiny model's decoding time (HF generate pays it "
        "too). The rollout engine now samples by inverse CDF with one uniform per row (`rollout.draw`: the same "
        "distribution, never a filtered token; a test checks both), and sharded rollouts draw the same uniforms.",
        "- With a 4096-word vocabulary and width 128, the LM head and the vocabulary-wide log-softmax cost about as "
        "much as the two transformer blocks. alignzoo now runs the LM head only on the positions that predict "
        "completion tokens (`logits_to_keep`): DPO skips the prompt positions, PPO/A2C and reference scoring skip "
        "the prompt, decoding's prefill keeps the last position only.",
        "- PPO's experience collection computed an entropy it discarded, and its update back-propagated through an "
        "entropy term whose coefficient is 0: the entropy is now computed only where it is used, without a gradient "
        "when it is only logged. The decoding loop no longer runs a forward after the last token.",
        "- PPO/A2C ran the policy and value forward twice over the same rows at the same weights: once without "
        "gradients for the old log-probs and values, once in the first update. With one minibatch (A2C, and PPO's "
        "default) collection now runs the first update's forward itself (training mode, gradients, the update's row "
        "order) and the update reuses it: one forward fewer per iteration, the same numbers (a test compares fused "
        "and separate runs; the leaderboard's PPO and A2C records are bit-identical on this machine).",
        "- What is left in generation is per-step module and dispatch overhead of the HF model (a few ms per step "
        "for 2 layers), shared with HF generate. TRL's DPOTrainer spends its extra time in its chunked fused "
        "LM-head log-prob code and per-step extra metrics; GRPO/RLOO in HF generate plus their scoring forwards.",
        "",
        "## GPU benchmark",
        "",
        "`bench/gpu.py` times alignzoo's DPO step against the bare loop (and TRL's DPOTrainer when installed) and the "
        "rollout engine against HF generate in bf16 autocast on a larger model built from a config (a GPT-2 of "
        "12 layers, width 768, vocabulary 32000: about 110M parameters):",
        "",
        "```",
        "python -m bench.gpu --device cuda --out bench/results/gpu-<date>.json",
        "python -m bench.gpu --device cpu --tiny   # a seconds-long smoke run of the same code (tested)",
        "```",
        "",
        *gpu_section(ROOT / "bench" / "results"),
        "",
        "## Reproduce",
        "",
        "```",
        "make bench                      # installs the bench extra (trl==1.16.0) into .venv, then runs everything",
        "make bench BENCH_REPS=3         # fewer rounds",
        "make bench BENCH_ARGS=--quick   # a pipeline check in a few minutes (numbers not to quote)",
        "```",
        "",
    ]
    return "\n".join(line for line in lines if line is not None)

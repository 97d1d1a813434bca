"""The benchmark harness (bench/): interleaving, statistics, report, the acceptance lines; that alignzoo's DPO step
and the bare loop do the same work; DPO loss parity with TRL; the GPU script's CPU smoke run; and the rollout
engine's sampler (the same distribution as torch.multinomial)."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from bench.harness import Comparison, case_summary, run_comparison, same_round_ratios, schedule


def _run(case: str, rnd: int, times: list[float], tokens: float | None = None, **extra) -> dict:
    out = {"case": case, "round": rnd, "step_times": times, "cpu_step_times": [t / 2 for t in times],
           "peak_rss_mib": 500.0 + rnd, "baseline_rss_mib": 400.0, **extra}
    if tokens is not None:
        out["completion_tokens_per_step"] = tokens
    return out


def test_rounds_interleave_and_alternate_their_order():
    assert schedule(["A", "B", "C"], 3) == [(0, "A"), (0, "B"), (0, "C"), (1, "C"), (1, "B"), (1, "A"),
                                          (2, "A"), (2, "B"), (2, "C")]
    assert schedule(["A", "B"], 0) == []


def test_case_summary_takes_the_median_over_rounds_of_each_process_median():
    runs = [_run("a", 0, [1.0, 3.0, 2.0], tokens=100), _run("a", 1, [4.0, 4.0, 5.0], tokens=200),
            _run("a", 2, [0.5, 0.7, 0.6], tokens=100), {"case": "a", "round": 3, "error": "exit 1: boom"}]
    s = case_summary(runs)
    assert (s["median_s"], s["min_s"], s["max_s"]) == (2.0, 0.6, 4.0)
    assert s["rounds_s"] == [2.0, 4.0, 0.6] and s["failed"] == 1
    assert (s["cpu_median_s"], s["cpu_min_s"], s["cpu_max_s"]) == (1.0, 0.3, 2.0)
    assert s["peak_rss_mib"] == 501.0 and s["working_rss_mib"] == 101.0
    assert s["ms_per_completion_token"] == pytest.approx(1000 * 0.02)  # median of 2/100, 4/200, 0.6/100
    assert s["completion_tokens_per_step"] == 100
    assert case_summary([{"case": "a", "round": 0, "error": "x"}]) == {"failed": 1, "errors": ["x"]}


def test_ratios_pair_the_runs_of_the_same_round_only():
    runs = {"a": [_run("a", 0, [2.0], tokens=64), _run("a", 1, [3.0], tokens=64), _run("a", 2, [9.0], tokens=64)],
            "b": [_run("b", 0, [1.0], tokens=32), _run("b", 1, [2.0], tokens=32),
                  {"case": "b", "round": 2, "error": "timed out"}]}
    r = same_round_ratios(runs, "a", "b")
    assert r["values"] == [2.0, 1.5] and r["rounds"] == 2  # round 2 has no partner
    assert (r["median"], r["min"], r["max"]) == (1.75, 1.5, 2.0)
    per_token = same_round_ratios(runs, "a", "b", per_token=True)
    assert per_token["values"] == [1.0, 0.75]  # a samples twice the tokens per step
    assert same_round_ratios(runs, "a", "b", key="cpu_step_times")["values"] == [2.0, 1.5]
    assert same_round_ratios(runs, "a", "missing") == {"rounds": 0}


def test_a_comparison_runs_its_cases_interleaved_and_reports_same_round_ratios():
    calls = []

    def fake(case, warmup, measure, params, timeout_s):
        calls.append((case, params))
        rnd = sum(1 for c, _ in calls if c == case) - 1
        base = {"fast": 1.0, "slow": 3.0}[case] * (1 + rnd)  # the machine slows down round by round
        return _run(case, rnd, [base] * measure, loadavg=[1.0, 1.0, 1.0])

    comp = Comparison("t", "title", ["fast", "slow"], ratios=[("slow", "fast")], measure=3,
                      params={"slow": {"batch": 4}})
    out = run_comparison(comp, 3, runner=fake, log=lambda m: None)
    assert [c for c, _ in calls] == ["fast", "slow", "slow", "fast", "fast", "slow"]
    assert calls[1][1] == {"batch": 4} and calls[0][1] == {}
    assert out["ratios"]["slow/fast"]["values"] == [3.0, 3.0, 3.0]  # the drift cancels within each round
    assert out["cases"]["slow"]["median_s"] == 6.0 and out["reps"] == 3


def test_acceptance_lines_and_the_report_come_from_the_results():
    from bench.harness import ROOT
    from bench.report import gpu_section, render
    from bench.run import acceptance

    def ratio(m):
        return {"median": m, "min": m * 0.9, "max": m * 1.1, "values": [m], "rounds": 1}

    dpo_cases = {c: {"median_s": t, "min_s": t, "max_s": t, "cpu_median_s": t / 2, "peak_rss_mib": 600.0,
                     "working_rss_mib": 80.0, "failed": 0}
                 for c, t in (("alignzoo_dpo", 0.2), ("bare_dpo", 0.19), ("trl_dpo", 0.55))}
    results = {
        "date": "2026-11-27T15:00:00+00:00", "reps": 5, "quick": False, "git": "abc", "wall_s": 1.0,
        "machine": {"cpu": "EPYC", "cores": 2, "memory_gib": 24, "avx512": False, "platform": "linux",
                    "python": "3.11", "torch_threads": 1, "dtype": "float32"},
        "versions": {"torch": "2.13.0", "trl": "1.16.0"}, "load": {"uptime_start": "load 2.0", "uptime_end": "3.0"},
        "comparisons": {"dpo": {"title": "DPO step", "reps": 5, "warmup": 3, "measure": 10, "cases": dpo_cases,
                                "ratios": {"alignzoo_dpo/bare_dpo": ratio(1.05), "alignzoo_dpo/bare_dpo cpu":
                                           ratio(0.9), "trl_dpo/alignzoo_dpo": ratio(2.75),
                                           "trl_dpo/alignzoo_dpo cpu": ratio(1.9)}}},
        "parity": {"alignzoo_loss": 0.65, "trl_loss": 0.6500004, "abs_diff": 4e-7, "same_token_ids": True,
                   "pairs": 8, "beta": 0.1, "trl": "1.16.0"},
    }
    lines = {a["line"]: a for a in acceptance(results)}
    dpo_bare = lines["alignzoo DPO step <= 1.15x the bare PyTorch loop"]
    assert (dpo_bare["value"], dpo_bare["met"], dpo_bare["value_cpu"], dpo_bare["met_cpu"]) == (1.05, True, 0.9, True)
    trl = lines["alignzoo DPO step >= 2x faster than TRL DPOTrainer"]
    assert (trl["met"], trl["met_cpu"]) == (True, False)
    assert lines["alignzoo PPO step <= 1.6x bare generation (HF generate) of its rollouts"]["met"] is None  # not run
    assert lines["DPO loss parity with TRL (absolute difference, same weights and batch)"]["met"] is True
    results["acceptance"] = list(lines.values())
    md = render(results)
    assert "| `alignzoo_dpo` | 0.200 | 0.200-0.200 | 40.0 | 1.05 (0.95-1.16) | 0.100 |" in md
    assert "| alignzoo DPO step >= 2x faster than TRL DPOTrainer | >= 2.0 | 2.750 | yes | 1.900 | **no** |" in md
    assert "| 0.6500000 | 0.6500004 | 4.0e-07 |" in md
    assert "## GPU benchmark" in md and "load 2.0" in md
    assert "\n".join(gpu_section(ROOT / "bench" / "results")) in md  # the newest GPU run's table (or its absence)


def test_alignzoo_dpo_step_and_the_bare_loop_do_the_same_work():
    """Same weights, pairs, batch order and optimizer: the losses agree step by step, so the timing compares
    like with like (alignzoo's loop runs on a Hydra-composed RunContext, as a run does)."""
    from bench import az, bare
    from bench.common import StepClock

    ours = az.dpo(3, StepClock(0))
    theirs = bare.dpo(3, StepClock(0))
    assert ours["final_loss"] == pytest.approx(theirs["final_loss"], abs=1e-5)
    assert abs(ours["final_loss"] - math.log(2)) > 1e-3  # the policy moved away from the reference


def test_a_worker_times_every_point_of_a_grid():
    from bench.worker import run_case

    out = run_case("bare_dpo", 1, 2, {"grid": [{"batch": 2, "response_len": 4}, {"batch": 4, "response_len": 8}]})
    assert [p["params"] for p in out["grid"]] == [{"batch": 2, "response_len": 4}, {"batch": 4, "response_len": 8}]
    assert all(len(p["step_times"]) == 2 and min(p["step_times"]) > 0 for p in out["grid"])
    assert out["torch_threads"] == 1 and out["peak_rss_mib"] >= out["baseline_rss_mib"] > 0
    with pytest.raises(SystemExit, match="unknown benchmark case 'nope'"):
        run_case("nope", 0, 1)


@pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                    reason="TRL is not installed (`make bench` installs the bench extra: trl==1.16.0)")
def test_dpo_loss_equals_trls_on_the_same_weights_and_batch():
    from bench.parity import dpo_loss_parity

    out = dpo_loss_parity()
    assert out["same_token_ids"]
    assert abs(out["alignzoo_loss"] - math.log(2)) > 0.01  # different policy and reference: not the trivial log 2
    assert out["abs_diff"] <= 1e-5, out


def test_the_gpu_script_runs_on_the_cpu_with_tiny_shapes(tmp_path):
    from bench import gpu

    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--tiny", "--reps", "1", "--warmup", "0", "--measure", "1",
                     "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["precision"] == "fp32" and result["tiny"] and result["gpu"] is None
    assert set(result["cases"]) == {"alignzoo_dpo", "bare_dpo", "alignzoo_rollout", "hf_generate", "alignzoo_ppo"}
    assert all(c["median_s"] > 0 for c in result["cases"].values())
    assert set(result["ratios"]) == {"alignzoo_dpo/bare_dpo", "alignzoo_rollout/hf_generate",
                                     "alignzoo_ppo/hf_generate"}


def test_the_rollout_sampler_draws_the_softmax_distribution_and_never_a_filtered_token():
    from alignzoo import rollout as ro

    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(0)) * 2
    logits[:, 5:15] = float("-inf")  # what top-k / top-p filtering leaves behind
    probs = torch.softmax(logits, -1)
    n = 20000
    gen = torch.Generator().manual_seed(1)
    picks = ro.draw(probs.repeat_interleave(n, 0), ro.uniforms(3 * n, gen, "cpu")).view(3, n)
    freq = torch.nn.functional.one_hot(picks, 40).float().mean(1)
    assert int(freq[:, 5:15].sum() * n) == 0
    # every frequency within 5 standard errors of its probability
    se = (probs * (1 - probs) / n).sqrt()
    assert bool(((freq - probs).abs() <= 5 * se + 1e-4).all())
    again = ro.draw(probs.repeat_interleave(n, 0), ro.uniforms(3 * n, torch.Generator().manual_seed(1), "cpu"))
    assert torch.equal(again.view(3, n), picks)  # same generator state, same tokens
    assert torch.equal(ro.draw(torch.tensor([[0.0, 1.0, 0.0]]), torch.tensor([0.999])), torch.tensor([1]))


def test_parts_run_separately_merge_into_one_results_file():
    from bench.run import merge

    main = {"date": "2026-11-27T14:50:00+00:00", "reps": 5, "wall_s": 900.0,
            "load": {"uptime_start": "14:50:56 up 3:00", "uptime_end": "15:40:00 up 3:50"},
            "comparisons": {"dpo": {"ratios": {"alignzoo_dpo/bare_dpo": {"median": 1.1, "rounds": 5}}}},
            "parity": {"abs_diff": 2e-7, "same_token_ids": True}}
    side = {"date": "2026-11-27T14:51:00+00:00", "reps": 3, "wall_s": 400.0,
            "load": {"uptime_start": "14:51:00 up 3:01", "uptime_end": "15:05:00 up 3:15"},
            "comparisons": {"scaling": {"ratios": {}}}}
    merged = merge([main, side])
    assert sorted(merged["comparisons"]) == ["dpo", "scaling"] and merged["reps"] == 5
    assert merged["load"] == {"uptime_start": "14:50:56 up 3:00", "uptime_end": "15:40:00 up 3:50"}
    assert [p["only"] for p in merged["parts"]] == [["dpo"], ["scaling"]] and merged["wall_s"] == 900.0
    lines = {a["line"]: a["met"] for a in merged["acceptance"]}
    assert lines["alignzoo DPO step <= 1.15x the bare PyTorch loop"] is True
    assert lines["DPO loss parity with TRL (absolute difference, same weights and batch)"] is True


def test_the_report_renders_the_newest_gpu_results_file_or_says_there_is_none(tmp_path):
    import json

    from bench.report import gpu_section

    assert "no GPU numbers" in gpu_section(tmp_path)[0]
    case = {"median_s": 0.5, "rounds_s": [0.5, 0.6], "peak_gpu_mib": 1024.4}
    for day, median in (("2026-01-01", 9.0), ("2026-02-01", 1.25)):
        (tmp_path / f"gpu-{day}.json").write_text(json.dumps({
            "date": day, "gpu": "Some GPU", "precision": "bf16", "versions": {"torch": "2.x"}, "reps": 2,
            "warmup": 1, "measure": 3, "cases": {"alignzoo_dpo": case, "bare_dpo": case},
            "ratios": {"alignzoo_dpo/bare_dpo": {"median": median, "values": [median]}}, "notes": ["idle machine"]}))
    text = "\n".join(gpu_section(tmp_path))
    assert "gpu-2026-02-01.json" in text and "2026-01-01" not in text
    assert "| alignzoo_dpo | 0.5000 | 0.5000, 0.6000 | 1024 |" in text
    assert "| alignzoo_dpo/bare_dpo | 1.250 | 1.250 |" in text and "- idle machine" in text

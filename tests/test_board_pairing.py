"""Paired comparisons over seeds x prompts (issue 19): the bootstrap's numbers, when the board uses it, its coverage,
and the per-prompt scores a run records for it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alignzoo.board import build_board
from alignzoo.board.aggregate import compare_rows, group_records
from alignzoo.board.stats import PAIRED_BOOTSTRAP, paired_bootstrap
from alignzoo.evaluators.gold import per_prompt_scores, prompt_id
from alignzoo.testing import run_tiny
from tests.test_board import record, write_records

PROMPTS = [f"p{i}" for i in range(6)]


def _reference(a, b, resamples, seed=0, level=0.95):
    """The scheme of stats.paired_bootstrap written out loop by loop, with the same generator and draw order."""
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.shape[0], size=(resamples, a.shape[0]))
    ib = rng.integers(0, b.shape[0], size=(resamples, b.shape[0]))
    ip = rng.integers(0, a.shape[1], size=(resamples, a.shape[1]))
    boot = np.array([(a[ia[r]].mean(axis=0) - b[ib[r]].mean(axis=0))[ip[r]].mean() for r in range(resamples)])
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    p = min(1.0, 2 * (min((boot <= 0).sum(), (boot >= 0).sum()) + 1) / (resamples + 1))
    return a.mean() - b.mean(), lo, hi, p


def test_bootstrap_matches_a_loop_reimplementation_on_hand_made_data():
    a = np.array([[0.5, 0.1, 0.9, 0.3, 0.7], [0.6, 0.2, 0.8, 0.2, 0.9], [0.4, 0.0, 1.0, 0.4, 0.6]])
    b = np.array([[0.4, 0.1, 0.7, 0.3, 0.5], [0.3, 0.0, 0.8, 0.1, 0.6]])
    c = paired_bootstrap(a, b, resamples=500)
    diff, lo, hi, p = _reference(a, b, 500)
    assert c.test == PAIRED_BOOTSTRAP == "paired bootstrap (seeds x prompts)"
    assert c.n == 5
    assert c.diff == pytest.approx(diff, abs=1e-12) and c.diff == pytest.approx(7.6 / 15 - 3.8 / 10, abs=1e-12)
    assert (c.lo, c.hi, c.p) == pytest.approx((lo, hi, p), abs=1e-12)
    assert 0 < c.lo < c.diff < c.hi


def test_bootstrap_p_is_never_degenerate_and_equal_rows_give_one():
    a = np.tile([0.2, 0.4, 0.6], (3, 1))
    assert paired_bootstrap(a, a + 0.1, resamples=999).p == pytest.approx(2 / 1000)  # every resample below 0
    same = paired_bootstrap(a, a.copy(), resamples=999)
    assert (same.diff, same.lo, same.hi, same.p) == (0.0, 0.0, 0.0, 1.0)


def test_bootstrap_needs_the_same_prompts_and_two_seeds():
    with pytest.raises(ValueError, match=r"same prompts, got \(2, 3\) and \(2, 4\)"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 4)))
    assert paired_bootstrap(np.zeros((1, 3)), np.zeros((2, 3))) is None


def test_interval_covers_the_true_difference_at_three_seeds_and_200_prompts():
    rng, truth, groups, covered = np.random.default_rng(7), 0.1, 300, 0
    for _ in range(groups):
        prompt_effect = rng.normal(0.0, 1.0, 200)  # shared by both rows: pairing removes it
        a = prompt_effect + truth + rng.normal(0.0, 0.03, (3, 1)) + rng.normal(0.0, 0.5, (3, 200))
        b = prompt_effect + rng.normal(0.0, 0.03, (3, 1)) + rng.normal(0.0, 0.5, (3, 200))
        c = paired_bootstrap(a, b, resamples=500)
        covered += c.lo <= truth <= c.hi
    assert covered / groups >= 0.93


def _scored(run_id, algo, seed, scores, prompts=PROMPTS, **kw):
    gold = float(np.mean(scores))
    return record(run_id, algo=algo, seed=seed, gold=gold,
                  per_prompt={"eval/gold_reward": dict(zip(map(prompt_id, prompts), scores))}, **kw)


def _sft(seed, scores, **kw):
    return _scored(f"sft{seed}", "sft", seed, scores, config={"seed": seed, "algo": {"name": "sft"}},
                   overrides=["algo=sft", f"seed={seed}"], **kw)


BASE = np.array([0.1, 0.3, -0.2, 0.5, 0.0, 0.2])


def _records(dpo_prompts=PROMPTS):
    recs = [_sft(s, list(BASE + 0.01 * s)) for s in range(3)]
    recs += [_scored(f"dpo{s}", "dpo", s, list(BASE + 0.2 + 0.02 * s), prompts=dpo_prompts) for s in range(3)]
    return recs


def test_rows_with_per_prompt_scores_on_the_same_prompts_use_the_bootstrap():
    dpo, sft = sorted(group_records(_records()), key=lambda g: g.algo)
    c = compare_rows(dpo, sft)
    assert c.test == PAIRED_BOOTSTRAP and c.n == 6 and c.diff == pytest.approx(0.21)
    assert dpo.vs_sft["test"] == PAIRED_BOOTSTRAP


def test_different_prompt_sets_fall_back_to_the_per_seed_paired_t():
    dpo, sft = sorted(group_records(_records([f"q{i}" for i in range(6)])), key=lambda g: g.algo)
    assert compare_rows(dpo, sft).test == "paired t"
    assert dpo.vs_sft["test"] == "paired t"


def test_an_old_record_without_per_prompt_falls_back():
    recs = _records()
    del recs[-1]["per_prompt"]
    dpo, sft = sorted(group_records(recs), key=lambda g: g.algo)
    assert dpo.per_prompt() is None and dpo.vs_sft["test"] == "paired t"


def test_a_malformed_per_prompt_falls_back_instead_of_crashing():
    recs = _records()
    recs[-1]["per_prompt"] = {"eval/gold_reward": "oops"}
    dpo, _ = sorted(group_records(recs), key=lambda g: g.algo)
    assert dpo.vs_sft["test"] == "paired t"


def test_a_built_board_names_the_bootstrap_in_json_and_markdown(tmp_path):
    write_records(tmp_path / "runs", _records())
    build_board([tmp_path / "runs"], tmp_path / "board")
    board = json.loads((tmp_path / "board" / "leaderboard.json").read_text())
    dpo, sft = board["groups"]  # dpo ranks first, so the SFT row is compared with it as the row above
    assert (dpo["algo"], sft["algo"]) == ("dpo", "sft")
    assert dpo["vs_sft"]["test"] == sft["vs_above"]["test"] == PAIRED_BOOTSTRAP
    assert "paired bootstrap over seeds x prompts" in board["comparisons"]
    md = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    dpo_row = next(line for line in md.splitlines() if line.startswith("| ") and " dpo " in line)
    sft_row = next(line for line in md.splitlines() if line.startswith("| ") and " sft " in line)
    assert "+0.210 [" in dpo_row and " bootstrap" in dpo_row
    assert "-0.210 [" in sft_row and " bootstrap" in sft_row
    assert ("the cell names its test: bootstrap = paired bootstrap over seeds x prompts (2000 resamples of each "
            "row's seeds, then of the prompts, the same for both rows)") in md
    assert "else Welch; significant only where p_holm ≤ 0.05; – where" in md


def test_per_prompt_scores_average_each_prompts_completions_and_round():
    scores = per_prompt_scores(["a", "b", "a"], [1.0, 0.1234567, 0.0])
    assert scores == {prompt_id("a"): 0.5, prompt_id("b"): 0.123457}
    assert prompt_id("a") == "86f7e437faa5" and len(prompt_id("any prompt")) == 12


def test_a_tiny_run_records_per_prompt_scores_of_its_headline(tmp_path, stage_cache):
    rec = run_tiny(["algo=sft", f"run.cache_dir={stage_cache}"], tmp_path / "job")
    assert rec.status == "ok", rec.error
    on_disk = json.loads((tmp_path / "job" / "record.json").read_text())
    scores = on_disk["per_prompt"]["eval/gold_reward"]
    assert list(on_disk["per_prompt"]) == ["eval/gold_reward"]  # sentiment: its headline only
    assert len(scores) == 8  # TINY_RUN: eval.num_prompts=8
    assert scores and all(len(k) == 12 for k in scores)
    assert np.mean(list(scores.values())) == pytest.approx(on_disk["metrics"]["eval/gold_reward"], abs=1e-5)


def test_an_arithmetic_run_records_per_prompt_accuracy(tmp_path, stage_cache):
    from tests.test_arithmetic import SMALL

    rec = run_tiny([*SMALL, "algo=sft", f"run.cache_dir={stage_cache}"], tmp_path / "job")
    assert rec.status == "ok", rec.error
    scores = json.loads((tmp_path / "job" / "record.json").read_text())["per_prompt"]["eval/accuracy"]
    assert len(scores) == rec.config["eval"]["num_prompts"] == 8  # TINY_RUN: eval.num_prompts=8, distinct problems
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert np.mean(list(scores.values())) == pytest.approx(rec.metrics["eval/accuracy"], abs=1e-6)

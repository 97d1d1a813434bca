"""RLAIF end to end on the embedded task at the smoke budget: AI feedback from a critic (labeler=critic), algo=rlaif
with DPO and PPO inside, the critique-revision (SL-CAI) stage, and the judge win rate in a run."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from alignzoo.testing import run_algo

FAST = ["train.steps=3", "train.batch_size=8", "eval.num_prompts=16", "eval.max_new_tokens=8"]
SIMULATED_COLUMNS = {"prompt", "chosen", "rejected", "chosen_gold", "rejected_gold", "chosen_ended", "rejected_ended",
                     "annotator", "completions", "gold", "ended", "ranking"}


def _feedback_dir(record):
    note = next(n for n in record.notes if n.startswith("stage feedback_ai:"))
    return note[note.index("(") + 1:note.rindex(")")]


def test_rlaif_dpo_labels_feedback_with_the_default_rule_critic(tmp_path, stage_cache):
    rec = run_algo("rlaif", tmp_path / "a", stage_cache, FAST)
    assert rec.status == "ok", rec.error
    assert rec.config["labeler"]["name"] == "critic"  # forced by algo=rlaif
    assert rec.config["critic"]["name"] == "rule" and rec.config["critic"]["constitution"]["name"] == "sentiment"
    agreement = rec.metrics["feedback/agreement_with_gold"]
    assert 0.7 < agreement <= 1.0  # the rule critic's scorers are close to (not the same as) the gold reward
    assert rec.metrics["feedback/position_bias"] == pytest.approx(0.5)  # a rule critic is symmetric
    assert any(n.startswith("feedback: 128 pairs labelled by critic rule (constitution sentiment") for n in rec.notes)
    assert "train/rewards/accuracies" in rec.metrics  # DPO ran on the AI pairs

    data = datasets.load_from_disk(_feedback_dir(rec) + "/data")
    assert SIMULATED_COLUMNS | {"chosen_prob", "rejected_prob"} == set(data.column_names)
    p, q = np.array(data["chosen_prob"]), np.array(data["rejected_prob"])
    assert np.all((p >= 0.5) & (p <= 1)) and np.allclose(p + q, 1.0)
    c, r = np.array(data["chosen_gold"]), np.array(data["rejected_gold"])
    decided = c != r
    assert np.mean(c[decided] > r[decided]) == pytest.approx(agreement)

    again = run_algo("rlaif", tmp_path / "b", stage_cache, FAST)  # cached by critic + constitution + SFT
    assert any(n.startswith("stage feedback_ai: reused") for n in again.notes)
    assert again.metrics["feedback/agreement_with_gold"] == agreement
    other = run_algo("rlaif", tmp_path / "c", stage_cache, [*FAST, "critic=rule", "critic.temperature=0"])
    assert any(n.startswith("stage feedback_ai: built") for n in other.notes)  # another critic: another stage
    data0 = datasets.load_from_disk(_feedback_dir(other) + "/data")
    sixths = np.array(data0["chosen_prob"]) * 6  # three hard principles averaged: multiples of 1/6, at least 1/2
    assert np.allclose(sixths, np.round(sixths), atol=1e-9) and sixths.min() >= 3 - 1e-9


def test_labeler_critic_needs_a_critic_and_rlaif_refuses_human_labels(tmp_path, stage_cache):
    rec = run_algo("dpo", tmp_path / "a", stage_cache, [*FAST, "labeler=critic"])
    assert rec.status == "failed" and rec.error["user_error"]
    assert "labeler=critic needs a critic: add critic=rule" in rec.error["message"]
    ok = run_algo("dpo", tmp_path / "b", stage_cache, [*FAST, "labeler=critic", "critic=rule"])
    assert ok.status == "ok", ok.error
    assert "feedback/agreement_with_gold" in ok.metrics
    bad = run_algo("rlaif", tmp_path / "c", stage_cache, [*FAST, "labeler=human", "labeler.path=/nowhere"])
    assert bad.status == "failed" and "algo=rlaif learns from AI feedback" in bad.error["message"]
    wrong = run_algo("rlaif", tmp_path / "d", stage_cache, [*FAST, "algo.inner=reinforce"])
    assert wrong.status == "failed" and "algo.inner must be one of dpo, ppo, none" in wrong.error["message"]


def test_rlaif_ppo_learns_a_reward_model_on_ai_labels(tmp_path, stage_cache):
    rec = run_algo("rlaif", tmp_path / "a", stage_cache, [*FAST, "algo.inner=ppo"])
    assert rec.status == "ok", rec.error
    assert any(n.startswith("rlaif: inner=ppo learns a reward model") for n in rec.notes)
    assert "reward/heldout_accuracy" in rec.metrics and "train/kl" in rec.metrics
    assert "eval/rm_accuracy" in rec.metrics and "eval/proxy_reward" in rec.metrics  # re-attached evaluators


def test_critique_revision_improves_gold_and_sl_cai_policy_is_evaluated(tmp_path, stage_cache):
    rec = run_algo("rlaif", tmp_path / "a", stage_cache,
                   [*FAST, "algo.sl_cai=true", "algo.inner=none", "algo.revision.prompts=96", "algo.revision.steps=10"])
    assert rec.status == "ok", rec.error
    assert rec.metrics["sl_cai/revision_gold"] > rec.metrics["sl_cai/original_gold"]
    assert [h["step"] for h in rec.history] == [0, 1]  # the SFT policy, then the SL-CAI policy
    assert rec.history[1]["eval/kl"] > 0
    assert any(n.startswith("critique-revision (SL-CAI, critic rule") for n in rec.notes)


def test_judge_win_rate_of_the_reference_against_itself_is_one_half(tmp_path, stage_cache):
    rec = run_algo("sft", tmp_path / "a", stage_cache, [*FAST, "evaluator=[gold_reward,judge_win_rate]"])
    assert rec.status == "ok", rec.error
    assert rec.metrics["eval/judge_win_rate"] == 0.5 and rec.metrics["eval/judge_preference"] == 0.5
    assert rec.config["critic"]["name"] == "rule"


def test_lm_judge_labels_feedback_in_a_run(tmp_path, stage_cache, tiny_policy):
    tiny_policy.save(tmp_path / "judge")
    rec = run_algo("rlaif", tmp_path / "a", stage_cache,
                   [*FAST, "critic=lm_judge", f"critic.path={tmp_path / 'judge'}",
                    "critic.chat=false", "critic/constitution=hh"])
    assert rec.status == "ok", rec.error
    assert rec.config["critic"]["name"] == "lm_judge" and rec.config["critic"]["constitution"]["name"] == "hh"
    assert 0.0 <= rec.metrics["feedback/agreement_with_gold"] <= 1.0
    assert 0.0 < rec.metrics["feedback/position_bias"] < 1.0

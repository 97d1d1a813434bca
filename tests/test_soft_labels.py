"""Issue 19 (fidelity): soft AI labels as loss targets, a gating split separate from early stopping, and SL-CAI
with a rule critic named as the rejection sampling it is."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from alignzoo.algos.dpo import DPOConfig, dpo_loss
from alignzoo.errors import AlignzooError
from alignzoo.rewards.learned import LearnedRewardConfig, quality_gate
from alignzoo.rewards.losses import bradley_terry_loss
from alignzoo.stages.critique_revision import METHODS, method_note
from alignzoo.stages.reward_model import Group, soft_targets, split_heldout, train_reward_model
from alignzoo.testing import run_algo

FAST = ["train.steps=3", "train.batch_size=8", "eval.num_prompts=16", "eval.max_new_tokens=8"]


# -- oracles: the soft-target losses by hand -------------------------------------------------------------------

def test_soft_bradley_terry_by_hand():
    rc, rr, p = torch.tensor([1.0, 0.0]), torch.tensor([0.5, 2.0]), torch.tensor([0.9, 0.7])
    m = rc - rr  # 0.5, -2
    by_hand = (-(0.9 * math.log(torch.sigmoid(m[0]).item()) + 0.1 * math.log(torch.sigmoid(-m[0]).item()))
               - (0.7 * math.log(torch.sigmoid(m[1]).item()) + 0.3 * math.log(torch.sigmoid(-m[1]).item()))) / 2
    assert bradley_terry_loss(rc, rr, target=p)[0].item() == pytest.approx(by_hand, rel=1e-6)
    # p = 1 is today's hard loss exactly (bit for bit), with a margin too
    for margin in (None, 0.3):
        hard = bradley_terry_loss(rc, rr, margin=margin)[0]
        assert torch.equal(bradley_terry_loss(rc, rr, margin=margin, target=torch.ones(2))[0], hard)


def test_soft_losses_have_zero_gradient_at_a_tie_when_p_is_half():
    m = torch.zeros(3, requires_grad=True)
    bradley_terry_loss(m, torch.zeros(3), target=torch.full((3,), 0.5))[0].backward()
    assert torch.equal(m.grad, torch.zeros(3))
    logp = torch.zeros(3, requires_grad=True)  # policy log-probs equal to the reference: h = 0
    loss, _ = dpo_loss(logp, torch.zeros(3), torch.zeros(3), torch.zeros(3), beta=0.1,
                       label_smoothing=1 - torch.full((3,), 0.5))
    loss.backward()
    assert torch.equal(logp.grad, torch.zeros(3)) and loss.item() == pytest.approx(math.log(2))


def test_soft_dpo_loss_by_hand_and_p_one_is_dpo():
    pc, pr, rc, rr = (torch.tensor(v) for v in ([-1.0, -2.0], [-3.0, -1.5], [-1.5, -2.0], [-2.0, -2.0]))
    beta, p = 0.5, torch.tensor([0.8, 0.6])
    h = (pc - rc) - (pr - rr)  # 1.5, 0.5
    by_hand = sum(-(pi * F.logsigmoid(beta * hi) + (1 - pi) * F.logsigmoid(-beta * hi)).item()
                  for pi, hi in zip(p, h)) / 2
    assert dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=1 - p)[0].item() == pytest.approx(by_hand, rel=1e-6)
    assert torch.equal(dpo_loss(pc, pr, rc, rr, beta=beta, label_smoothing=1 - torch.ones(2))[0],
                       dpo_loss(pc, pr, rc, rr, beta=beta)[0])


def test_soft_label_settings_are_validated():
    assert any("soft_labels needs variant=sigmoid" in p for p in DPOConfig(variant="ipo", soft_labels=True).problems())
    assert any("soft_labels needs loss=bt" in p for p in LearnedRewardConfig(loss="pl", soft_labels=True).problems())
    assert any("gate_fraction must be in (0, 1)" in p for p in LearnedRewardConfig(gate_fraction=1.0).problems())
    groups = [Group("p", ["a", "b"], [True, True], None, cp) for cp in (0.75, None)]
    assert soft_targets(groups).tolist() == [0.75, 1.0]  # no soft label: the hard target


# -- the gating split ------------------------------------------------------------------------------------------

def test_heldout_split_is_disjoint_and_sized():
    train, stop, gate = split_heldout(100, 0.2, 0.5, seed=0)
    assert (len(train), len(stop), len(gate)) == (80, 10, 10)
    assert not (set(train) & set(stop) or set(train) & set(gate) or set(stop) & set(gate))
    assert sorted(train + stop + gate) == list(range(100))
    assert [len(x) for x in split_heldout(10, 0.05, 0.5, seed=0)] == [8, 1, 1]  # at least one each way
    with pytest.raises(AlignzooError, match=r"2 feedback groups cannot make .* collect more feedback"):
        train_reward_model(None, groups=[Group("p", ["a", "b"], [True, True], None)] * 2, model=None, inputs=None,
                           cfg=LearnedRewardConfig(), seed=0, device="cpu")


class _Ctx:
    def __init__(self):
        self.extra_metrics = {}


def test_quality_gate_reads_the_gating_split():
    meta = {"heldout": {"accuracy": 0.55}, "early_stopping": {"accuracy": 0.95}}  # as the stage writes them
    reward = SimpleNamespace(quality=dict(meta["heldout"]), meta=meta, gate=LearnedRewardConfig(min_accuracy=0.6,
                                                                                                 min_gold_spearman=0.0))
    ctx = _Ctx()
    with pytest.raises(AlignzooError, match=r"held-out accuracy 0.550 < reward.min_accuracy=0.6"):
        quality_gate(reward, ctx, online=True)
    assert ctx.extra_metrics["reward/heldout_accuracy"] == 0.55


# -- end to end: rlaif with soft labels; the reward stage's two splits -------------------------------------------

def test_rlaif_dpo_trains_on_soft_labels(tmp_path, stage_cache):
    rec = run_algo("rlaif", tmp_path / "a", stage_cache, FAST)
    assert rec.status == "ok", rec.error
    assert any(n.startswith("dpo: soft labels: 128 of 128 pairs use the feedback's chosen_prob") for n in rec.notes)
    assert 0.5 <= rec.metrics["train/soft_label_mean"] <= 1.0
    assert math.isfinite(rec.metrics["train/loss"]) and rec.metrics["train/loss"] > 0
    hard = run_algo("rlaif", tmp_path / "b", stage_cache, [*FAST, "algo.soft_labels=false"])
    assert hard.status == "ok" and not any("soft labels" in n for n in hard.notes)


def test_rlaif_reward_model_records_two_disjoint_splits(tmp_path, stage_cache):
    rec = run_algo("rlaif", tmp_path / "a", stage_cache, [*FAST, "algo.inner=ppo"])
    assert rec.status == "ok", rec.error
    stage = next(n.split("(")[-1].rstrip(")") for n in rec.notes if n.startswith("stage reward_model:"))
    meta = json.loads(open(f"{stage}/reward_model.json").read())
    stop, gate = meta["splits"]["early_stopping"], meta["splits"]["gate"]
    assert stop and gate and not set(stop) & set(gate)
    assert (meta["early_stopping_groups"], meta["gate_groups"]) == (len(stop), len(gate))
    assert meta["soft_labels"] is True and "accuracy" in meta["early_stopping"]
    assert rec.metrics["reward/heldout_accuracy"] == meta["heldout"]["accuracy"]  # the gating split
    assert meta["heldout"]["groups"] == len(gate)


# -- SL-CAI naming ---------------------------------------------------------------------------------------------

def test_sl_cai_with_a_rule_critic_is_named_rejection_sampling(tmp_path, stage_cache):
    rec = run_algo("rlaif", tmp_path / "a", stage_cache,
                   [*FAST, "algo.sl_cai=true", "algo.inner=none", "algo.revision.prompts=16", "algo.revision.steps=2"])
    assert rec.status == "ok", rec.error
    assert any(n.startswith("SL-CAI with critic rule is rejection sampling, not critique -> revision") and
               "best of 5 policy samples" in n and "critic=lm_judge" in n for n in rec.notes)
    assert method_note({"method": METHODS[True], "critic": "lm_judge"}, 4) == \
        "SL-CAI with critic lm_judge: critique -> revision written by the critic"

"""The GRPO family's tables against hand values (docs/algorithms.md#grpo-family): advantage estimators, policy
losses, aggregations, DAPO's shaping and dynamic sampling, and the invariance of every loss to train.grad_accum."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from types import SimpleNamespace

import pytest
import torch

from alignzoo.algos.group import sampling
from alignzoo.algos.group import PRESETS, GroupBatch, micro_losses
from alignzoo.algos.group.advantages import ADVANTAGES, STD_EPS
from alignzoo.algos.group.losses import AGGREGATIONS, POLICY_LOSSES
from alignzoo.algos.group.shaping import informative_groups, overlong_penalty
from alignzoo.training import Stepper, optimizer_step


def adv(name, rewards):
    return ADVANTAGES[name].fn(torch.tensor(rewards, dtype=torch.float32))


# -- advantages ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "reinforce_pp"])
def test_identical_rewards_give_zero_advantages(name):
    assert torch.allclose(adv(name, [[0.7] * 4] * 3), torch.zeros(3, 4), atol=1e-6)


def test_dr_grpo_differs_from_grpo_by_the_std_only():
    centred = adv("dr_grpo", [[1.0, 2.0, 3.0, 6.0]])
    assert centred[0].tolist() == pytest.approx([-2.0, -1.0, 0.0, 3.0])
    std = math.sqrt((4 + 1 + 0 + 9) / 3)  # unbiased
    assert adv("grpo", [[1.0, 2.0, 3.0, 6.0]])[0].tolist() == pytest.approx(
        [-2 / (std + STD_EPS), -1 / (std + STD_EPS), 0.0, 3 / (std + STD_EPS)], abs=1e-6)


def test_rloo_baseline_excludes_the_sample_itself():
    want = [1 - (2 + 3 + 6) / 3, 2 - (1 + 3 + 6) / 3, 3 - (1 + 2 + 6) / 3, 6 - (1 + 2 + 3) / 3]
    assert adv("rloo", [[1.0, 2.0, 3.0, 6.0]])[0].tolist() == pytest.approx(want)


def test_reinforce_pp_uses_the_statistics_of_the_whole_batch_not_the_group():
    std = math.sqrt((9 + 1 + 1 + 9) / 3)  # the four rewards' unbiased std around their mean 4
    got = adv("reinforce_pp", [[1.0, 3.0], [5.0, 7.0]])
    assert got.flatten().tolist() == pytest.approx([x / (std + STD_EPS) for x in (-3, -1, 1, 3)], abs=1e-6)
    assert not torch.allclose(got, adv("grpo", [[1.0, 3.0], [5.0, 7.0]]))  # per group both would be -/+0.707


# -- aggregations ---------------------------------------------------------------------------------------------------

RAGGED = torch.tensor([[1.0, 2.0, 3.0], [4.0, 9.0, 9.0]]), torch.tensor([[1, 1, 1], [1, 0, 0]])


def test_token_mean_counts_every_token_of_the_batch_once():  # DAPO
    assert AGGREGATIONS["token_mean"].reduce(*RAGGED, 1.0).item() == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_seq_mean_token_mean_averages_each_sequence_first():  # GRPO's paper
    assert AGGREGATIONS["seq_mean_token_mean"].reduce(*RAGGED, 1.0).item() == pytest.approx((2 + 4) / 2)


def test_seq_sum_divides_token_sums_by_the_constant():  # Dr. GRPO, RLOO
    assert AGGREGATIONS["seq_sum"].reduce(*RAGGED, 3.0).item() == pytest.approx((6 / 3 + 4 / 3) / 2)


# -- policy losses --------------------------------------------------------------------------------------------------

def test_gspo_ratio_is_the_length_normalised_sequence_ratio():
    old = torch.zeros(2, 3)
    lp = torch.tensor([[0.1, 0.3, 5.0], [-0.2, 0.0, 0.0]], requires_grad=True)  # 5.0 is padding: never counts
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    a = torch.tensor([[1.0], [-1.0]])
    loss, clipped = POLICY_LOSSES["gspo"](lp, old, a, mask, 10.0, 10.0)  # wide clip: the raw ratio
    s = [math.exp((0.1 + 0.3) / 2), math.exp(-0.2 / 3)]
    assert loss[:, 0].tolist() == pytest.approx([-s[0], s[1]]) and torch.equal(loss[:, 0:1].expand(2, 3), loss)
    assert clipped.sum() == 0
    loss, clipped = POLICY_LOSSES["gspo"](lp, old, a, mask, 3e-4, 4e-4)  # GSPO's range: both sequences clipped
    assert loss[:, 0].tolist() == pytest.approx([-(1 + 4e-4), 1 - 3e-4])
    assert clipped.tolist() == [[1.0] * 3] * 2


def test_cispo_weight_is_clipped_and_carries_no_gradient():
    old = torch.zeros(1, 3)
    lp = torch.tensor([[0.5, 0.0, -0.5]], requires_grad=True)
    a = torch.tensor([[2.0]])
    loss, clipped = POLICY_LOSSES["cispo"](lp, old, a, torch.ones(1, 3), 0.2, 0.28)
    weight = [1.28, 1.0, 0.8]  # clip(e^0.5) = 1.28, e^0 = 1, clip(e^-0.5) = 0.8
    assert loss[0].tolist() == pytest.approx([-w * 2 * x for w, x in zip(weight, [0.5, 0.0, -0.5])])
    loss.sum().backward()
    assert lp.grad[0].tolist() == pytest.approx([-2 * w for w in weight])  # d/dlp of -sg(w) A lp: no d w / d lp
    assert clipped[0].tolist() == [1.0, 0.0, 1.0]


def test_clip_higher_clips_asymmetrically():
    ratios = torch.tensor([[1.25, 1.3], [0.79, 0.85]])
    a = torch.tensor([[1.0], [-1.0]])
    loss, clipped = POLICY_LOSSES["clip"](torch.log(ratios), torch.zeros(2, 2), a, torch.ones(2, 2), 0.2, 0.28)
    # A > 0: the gain stops at 1 + eps_high = 1.28 (1.25 is inside); A < 0: at 1 - eps_low = 0.8
    assert loss.tolist() == [pytest.approx([-1.25, -1.28]), pytest.approx([0.8, 0.85])]
    assert clipped.tolist() == [[0.0, 1.0], [1.0, 0.0]]
    _, symmetric = POLICY_LOSSES["clip"](torch.log(ratios), torch.zeros(2, 2), a, torch.ones(2, 2), 0.2, 0.2)
    assert symmetric.tolist() == [[1.0, 1.0], [1.0, 0.0]]


# -- DAPO's shaping and dynamic sampling ------------------------------------------------------------------------

def test_overlong_penalty_is_a_linear_ramp_over_the_buffer():
    got = overlong_penalty(torch.tensor([10, 16, 17, 18, 20]), max_new_tokens=20, buffer=4)
    assert got.tolist() == pytest.approx([0.0, 0.0, -0.25, -0.5, -1.0])
    assert overlong_penalty(torch.tensor([20]), max_new_tokens=20, buffer=0).tolist() == [0.0]


def test_informative_groups_are_those_with_reward_variance():
    r = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.5]])
    assert informative_groups(r).tolist() == [False, True, False, True]


def _round(rewards, width):
    """A fake sampling round: G=2 completions per row pair, ``width`` completion columns, rewards as given."""
    from alignzoo.rollout import Rollout

    n = len(rewards)
    ids = torch.arange(n).unsqueeze(-1).expand(n, width).clone()
    r = Rollout(torch.ones(n, 2, dtype=torch.long), torch.ones(n, 2, dtype=torch.long), ids,
                torch.ones(n, width, dtype=torch.long), torch.zeros(n, width), torch.ones(n, dtype=torch.bool))
    t = torch.tensor(rewards, dtype=torch.float32)
    return sampling.Round(r, torch.zeros(n, width), torch.zeros(n, width), t, t, torch.zeros(n))


def test_dynamic_sampling_drops_zero_variance_groups_and_samples_more(monkeypatch):
    cfg = dataclasses.replace(PRESETS["dapo"], group_size=2, max_sampling_rounds=3)
    later = iter([_round([5.0, 5.0, 0.0, 1.0], 4), _round([2.0, 3.0, 7.0, 7.0], 2)])
    monkeypatch.setattr(sampling, "sample_round", lambda *a: next(later))
    ctx = SimpleNamespace(policy=SimpleNamespace(pad_id=99))
    first = _round([1.0, 1.0, 0.0, 2.0], 3)  # group 0 uniform, group 1 informative
    merged, metrics = sampling.dynamic_batch(cfg, ctx, itertools.repeat([]), None, 2, first)
    # kept: round 0 group 1, round 1 group 1; dropped: round 0 group 0, round 1 group 0
    assert merged.rewards.tolist() == [0.0, 2.0, 0.0, 1.0]
    assert metrics == {"dynamic/dropped_groups": 2.0, "dynamic/kept_uninformative": 0.0, "dynamic/rounds": 2.0}
    assert merged.rollout.completion_ids.shape == (4, 4)  # padded to the widest round, mask 0 and pad_id there
    assert merged.rollout.completion_ids[0].tolist() == [2, 2, 2, 99] and merged.rollout.completion_mask[0, 3] == 0


def test_dynamic_sampling_is_bounded_and_fills_with_dropped_groups(monkeypatch):
    cfg = dataclasses.replace(PRESETS["dapo"], group_size=2, max_sampling_rounds=2)
    monkeypatch.setattr(sampling, "sample_round", lambda *a: _round([4.0, 4.0, 4.0, 4.0], 3))
    first = _round([1.0, 1.0, 0.0, 2.0], 3)
    ctx = SimpleNamespace(policy=SimpleNamespace(pad_id=0))
    merged, metrics = sampling.dynamic_batch(cfg, ctx, itertools.repeat([]), None, 2, first)
    assert metrics == {"dynamic/dropped_groups": 3.0, "dynamic/kept_uninformative": 1.0, "dynamic/rounds": 2.0}
    assert merged.rewards.tolist() == [1.0, 1.0, 0.0, 2.0]  # round 0's two groups: one kept, one to fill the batch


# -- invariance to train.grad_accum -------------------------------------------------------------------------------

def _group_batch(seed=0):
    """A tiny GPT-2 and 8 sampled completions of different lengths (2 groups of 4), with old log-probs off the
    current ones (ratios != 1, some clipped) and random per-sequence advantages."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo import rollout as ro

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=48, n_embd=16, n_layer=1, n_head=2,
                                       resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    prompts = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]] * 2
    r = ro.generate(model, prompts, eos_id=0, pad_id=39, max_new_tokens=10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lp = ro.completion_logprobs(model, r)
    gen = torch.Generator().manual_seed(1)
    old = lp + 0.1 * torch.randn(lp.shape, generator=gen) * r.completion_mask
    ref = lp + 0.1 * torch.randn(lp.shape, generator=gen) * r.completion_mask
    return model, GroupBatch(r, old, ref, torch.randn(8, generator=gen))


def _sgd_step(model, batch, cfg, micro_batches, weights=None):
    """Parameter change of one plain-SGD step (lr 1, no clipping: minus the gradient) through optimizer_step."""
    model = copy.deepcopy(model)
    train = SimpleNamespace(optimizer="sgd", weight_decay=0.0, scheduler="constant", warmup_steps=0, steps=1,
                            max_grad_norm=0.0)
    stepper = Stepper.create(model.parameters(), 1.0, train)
    before = [p.detach().clone() for p in model.parameters()]
    micros = list(micro_losses(model, batch, cfg, micro_batches))
    assert len(micros) == micro_batches
    for micro, w in zip(micros, weights or []):
        micro.weight = w
    metrics = optimizer_step(stepper, micros, step=1, micro_batches=micro_batches)
    return [p.detach() - b for p, b in zip(model.parameters(), before)], metrics


#: every (policy loss, aggregation) pairing a registered algorithm uses, with one preset that uses it
PAIRINGS = {(c.policy_loss, c.aggregation): name for name, c in reversed(list(PRESETS.items()))}


def test_the_pairings_cover_every_table_entry_the_presets_name():
    assert sorted(PAIRINGS) == sorted({("clip", "token_mean"), ("clip", "seq_sum"), ("gspo", "seq_mean_token_mean"),
                                       ("cispo", "token_mean"), ("reinforce", "seq_sum")})


@pytest.mark.parametrize("pairing", sorted(PAIRINGS), ids=lambda p: f"{p[0]}-{p[1]}")
def test_grad_accum_four_gives_the_gradient_of_grad_accum_one(pairing):
    cfg = PRESETS[PAIRINGS[pairing]]
    if cfg.policy_loss == "gspo":  # GSPO's default range clips almost every sequence: widen it to test the ratio
        cfg = dataclasses.replace(cfg, eps_low=0.2, eps_high=0.2)
    model, batch = _group_batch()
    one, m1 = _sgd_step(model, batch, cfg, 1)
    four, m4 = _sgd_step(model, batch, cfg, 4)
    assert max(float((a - b).abs().max()) for a, b in zip(one, four)) <= 1e-6
    assert max(float(a.abs().max()) for a in one) > 1e-3  # the step moved the weights
    for key in ("loss", "kl_k3", "clipfrac"):
        assert m4[key] == pytest.approx(m1[key], abs=1e-6), key
    if cfg.aggregation == "token_mean":  # (sequence means over equal micro-batches have equal weights anyway)
        # unequal token counts per micro-batch: unweighted micro-batch means would be another gradient
        naive, _ = _sgd_step(model, batch, cfg, 4, weights=[1.0] * 4)
        assert max(float((a - b).abs().max()) for a, b in zip(one, naive)) > 1e-5


def test_dynamic_sampling_under_a_launcher_is_refused_before_training(monkeypatch):
    from alignzoo.errors import AlignzooError

    monkeypatch.setattr(sampling.distributed, "current", lambda: SimpleNamespace(world_size=2))
    ctx = SimpleNamespace(train=SimpleNamespace(grad_accum=1))
    sampling.check_batch(PRESETS["grpo"], ctx, 8)  # no dynamic sampling: 8 rows split over 2 processes
    with pytest.raises(AlignzooError, match="algo=dapo: algo.dynamic_sampling=true runs in one process only "
                                            r"\(2 were launched\); set algo.dynamic_sampling=false"):
        sampling.check_batch(PRESETS["dapo"], ctx, 8)

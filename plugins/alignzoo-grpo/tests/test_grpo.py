"""alignzoo-grpo: the advantage oracles and the conformance suite for grpo and rloo."""

import pytest
import torch

from alignzoo_grpo import grpo_advantages, group_loss, rloo_advantages

from alignzoo.testing import check_algorithm, run_algo


def test_identical_rewards_give_zero_advantages():
    assert torch.equal(grpo_advantages(torch.full((3, 4), 0.7)), torch.zeros(3, 4))
    assert torch.allclose(rloo_advantages(torch.full((3, 4), 0.7)), torch.zeros(3, 4))


def test_rloo_baseline_excludes_the_sample_itself():
    r = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    want = [1 - (2 + 3 + 6) / 3, 2 - (1 + 3 + 6) / 3, 3 - (1 + 2 + 6) / 3, 6 - (1 + 2 + 3) / 3]
    assert rloo_advantages(r)[0].tolist() == pytest.approx(want)


def test_grpo_standardizes_within_each_group():
    r = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]])
    a = grpo_advantages(r)
    assert a.mean(-1).abs().max() < 1e-6 and torch.allclose(a.std(-1), torch.ones(2), atol=1e-3)


def test_loss_at_ratio_one_without_kl_is_minus_mean_advantage():
    lp = torch.randn(2, 3)
    adv = torch.tensor([0.5, -1.5])
    loss, m = group_loss(lp, lp, lp, adv, torch.ones(2, 3), clip_range=0.2, beta=0.1)
    assert loss.item() == pytest.approx(0.5) and m["kl_k3"].item() == 0 and m["clipfrac"].item() == 0


@pytest.mark.parametrize("name", ["grpo", "rloo"])
def test_conformance(name, tmp_path, stage_cache):
    check_algorithm(name, tmp_path, stage_cache, bad_override="algo.group_size=1",
                    bad_message="algo.group_size must be >= 2")


def _group_batch(seed=0):
    """A tiny GPT-2 and 8 sampled completions of different lengths (2 groups of 4), with old log-probs off the
    current ones (ratios != 1, some clipped) and random per-sequence advantages."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo import rollout as ro
    from alignzoo_grpo import GroupBatch

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=48, n_embd=16, n_layer=1, n_head=2,
                                       resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    prompts = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]] * 2
    r = ro.generate(model, prompts, eos_id=0, pad_id=39, max_new_tokens=10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lp = ro.completion_logprobs(model, r)
    gen = torch.Generator().manual_seed(1)
    old = lp + 0.3 * torch.randn(lp.shape, generator=gen) * r.completion_mask
    ref = lp + 0.1 * torch.randn(lp.shape, generator=gen) * r.completion_mask
    return model, GroupBatch(r, old, ref, torch.randn(8, generator=gen))


def _sgd_step(model, batch, micro_batches, weights=None):
    """Parameter change of one plain-SGD step (lr 1, no clipping: the change is minus the gradient) through
    alignzoo's optimizer step, and its metrics."""
    import copy
    from types import SimpleNamespace

    from alignzoo_grpo import GroupConfig, micro_losses

    from alignzoo.training import Stepper, optimizer_step

    model = copy.deepcopy(model)
    train = SimpleNamespace(optimizer="sgd", weight_decay=0.0, scheduler="constant", warmup_steps=0, steps=1,
                            max_grad_norm=0.0)
    stepper = Stepper.create(model.parameters(), 1.0, train)
    before = [p.detach().clone() for p in model.parameters()]
    micros = list(micro_losses(model, batch, GroupConfig(), micro_batches))
    assert len(micros) == micro_batches
    if weights is not None:
        for micro, w in zip(micros, weights):
            micro.weight = w
    metrics = optimizer_step(stepper, micros, step=1, micro_batches=micro_batches)
    return [p.detach() - b for p, b in zip(model.parameters(), before)], metrics


def test_grad_accum_gives_the_gradient_of_the_whole_batch():
    model, batch = _group_batch()
    halves = batch.rollout.completion_mask.chunk(2)
    assert halves[0].sum() != halves[1].sum()  # micro-batches of different token counts: the weights matter
    one, m1 = _sgd_step(model, batch, 1)
    two, m2 = _sgd_step(model, batch, 2)
    assert max(float((a - b).abs().max()) for a, b in zip(one, two)) <= 1e-6
    assert max(float(a.abs().max()) for a in one) > 1e-3  # the step moved the weights
    for key in ("loss", "kl_k3", "clipfrac", "grad_norm"):
        assert m2[key] == pytest.approx(m1[key], abs=1e-6), key
    # averaging the two micro-batches' token means unweighted would be another gradient: the check above can fail
    naive, _ = _sgd_step(model, batch, 2, weights=[1.0, 1.0])
    assert max(float((a - b).abs().max()) for a, b in zip(one, naive)) > 1e-4


def test_a_run_splits_each_update_into_grad_accum_micro_batches(tmp_path, stage_cache, monkeypatch):
    import alignzoo_grpo

    rows = []
    real = alignzoo_grpo.ro.completion_logprobs

    def forward(model, r, **kw):  # the rows of every training forward (with gradients)
        if torch.is_grad_enabled():
            rows.append(len(r.completion_ids))
        return real(model, r, **kw)

    monkeypatch.setattr(alignzoo_grpo.ro, "completion_logprobs", forward)
    args = ["train.steps=2", "train.batch_size=8", "algo.epochs=2", "budget.eval_every=0", "eval.num_prompts=8"]
    one = run_algo("grpo", tmp_path / "one", stage_cache, args)
    assert one.status == "ok", one.error
    assert rows == [8, 8] * 2  # per step: one forward of the whole batch per epoch
    rows.clear()
    two = run_algo("grpo", tmp_path / "two", stage_cache, [*args, "train.grad_accum=2"])
    assert two.status == "ok", two.error
    assert rows == [4, 4, 4, 4] * 2  # each epoch's step from two micro-batches of 4 completions
    train = [k for k in one.metrics if k.startswith("train/")]
    assert {"train/loss", "train/kl_k3", "train/reward", "train/grad_norm"} <= set(train)
    for key in train:
        assert two.metrics[key] == pytest.approx(one.metrics[key], rel=1e-4, abs=1e-5), key


def test_a_batch_that_does_not_split_into_micro_batches_is_refused_before_training(tmp_path, stage_cache):
    rec = run_algo("grpo", tmp_path, stage_cache, ["train.batch_size=8", "algo.group_size=3", "train.grad_accum=4"])
    assert rec.status == "failed" and rec.error["user_error"]
    assert ("a step samples 6 completions" in rec.error["message"]
            and "make train.batch_size a multiple of algo.group_size x 4" in rec.error["message"])
    assert not [h for h in rec.history if h["step"] > 0]

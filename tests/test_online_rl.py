"""PPO, A2C and best-of-N against the oracles of docs/algorithms.md#ppo, docs/algorithms.md#a2c,
docs/algorithms.md#best-of-n and docs/algorithms.md#over-optimization."""

import math
from dataclasses import dataclass

import pytest
import torch

from alignzoo import hookimpl, plugins
from alignzoo.algos.best_of_n import analytic_kl
from alignzoo.experience import AdaptiveKLController, policy_loss, value_loss
from alignzoo.evaluators.overopt import overoptimization
from alignzoo.ops import gae, masked_whiten
from alignzoo.testing import run_tiny

SMOKE = ["task=sentiment", "budget=smoke", "logger=[jsonl]"]


def _gae(r, v, lam, gamma=1.0, mask=None):
    r, v = torch.tensor([r]), torch.tensor([v])
    mask = torch.ones_like(r) if mask is None else torch.tensor([mask])
    return gae(r, v, mask, gamma=gamma, lam=lam)


@pytest.mark.parametrize("lam,want", [(0.95, [0.45125, 0.475, 0.5]), (1.0, [0.5, 0.5, 0.5]), (0.0, [0.0, 0.0, 0.5])])
def test_gae_worked_vectors(lam, want):
    adv, ret = _gae([0.0, 0.0, 1.0], [0.5, 0.5, 0.5], lam)
    assert adv[0].tolist() == pytest.approx(want)
    assert ret[0].tolist() == pytest.approx([a + 0.5 for a in want])


def test_gae_lambda_one_is_reward_to_go_minus_value():
    g = torch.Generator().manual_seed(0)
    r, v = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    adv, ret = gae(r, v, torch.ones(4, 6), gamma=1.0, lam=1.0)
    to_go = r.flip(-1).cumsum(-1).flip(-1)
    assert torch.allclose(ret, to_go, atol=1e-5) and torch.allclose(adv, to_go - v, atol=1e-5)


def test_gae_masked_positions_never_leak_and_end_is_terminal():
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    r = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0]])
    v = torch.tensor([[0.5, 0.5, 0.5, 0.0, 0.0]])
    adv, ret = gae(r, v, mask, gamma=1.0, lam=0.95)
    junk_r = r.clone(); junk_r[0, 3:] = 100.0
    junk_v = v.clone(); junk_v[0, 3:] = -50.0
    adv2, ret2 = gae(junk_r, junk_v, mask, gamma=1.0, lam=0.95)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)
    assert adv[0, :3].tolist() == pytest.approx([0.45125, 0.475, 0.5]) and adv[0, 3:].tolist() == [0.0, 0.0]


def test_gae_score_only_gives_score_minus_value():
    v = torch.tensor([[0.1, 0.2, 0.3]])
    adv, _ = gae(torch.tensor([[0.0, 0.0, 2.0]]), v, torch.ones(1, 3), gamma=1.0, lam=1.0)
    assert adv[0].tolist() == pytest.approx([1.9, 1.8, 1.7])


def test_clipped_objective_at_ratio_one_is_vanilla_policy_gradient():
    logp = torch.randn(2, 5, requires_grad=True)
    adv = torch.randn(2, 5)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    loss, m = policy_loss(logp, logp.detach(), adv, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(-(adv * mask).sum().item() / mask.sum().item(), abs=1e-6)
    assert m["clipfrac"].item() == 0 and m["approx_kl"].item() == 0
    loss.backward()
    assert torch.allclose(logp.grad, -adv * mask / mask.sum(), atol=1e-7)


@pytest.mark.parametrize("adv,log_ratio,zero", [(1.0, math.log(1.5), True), (-1.0, math.log(0.5), True),
                                                 (1.0, math.log(0.5), False)])
def test_clipped_samples_have_zero_gradient(adv, log_ratio, zero):
    logp = torch.tensor([[log_ratio]], requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1), clip_range=0.2)
    loss.backward()
    assert (logp.grad.abs().item() == 0) is zero


def test_value_loss_without_active_clipping_is_half_mse():
    v, old, ret = torch.tensor([[0.5, 1.0]]), torch.tensor([[0.45, 1.1]]), torch.tensor([[1.0, 0.0]])
    loss, m = value_loss(v, old, ret, torch.ones(1, 2), clip_range=0.2)
    assert loss.item() == pytest.approx(0.5 * ((0.5 - 1) ** 2 + 1.0) / 2) and m["vf_clipfrac"].item() == 0


def test_adaptive_kl_controller_arithmetic():
    for kl, want in ((12.0, 0.201024), (3.0, 0.198976), (6.0, 0.2)):
        c = AdaptiveKLController(0.2, 6.0, 10000)
        assert c.update(kl, 256) == pytest.approx(want)
        assert c.value == pytest.approx(want)


def test_whitening():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 7, generator=g) * 4 + 2
    mask = torch.ones(3, 7)
    mask[0, 5:] = 0
    w = masked_whiten(x, mask)
    vals = w[mask.bool()]
    assert vals.mean().item() == pytest.approx(0, abs=1e-5) and vals.var(unbiased=True).item() == pytest.approx(1, abs=1e-4)
    assert (w[~mask.bool()] == 0).all()


def test_best_of_n_analytic_kl():
    for n, want in ((1, 0.0), (2, 0.1931), (4, 0.6363), (16, 1.8351), (64, 3.1745)):
        assert analytic_kl(n) == pytest.approx(want, abs=1e-4)


def test_a2c_equals_ppo_with_one_epoch_one_minibatch_and_no_clipping():
    """Same batch, same weights: PPO's clipped loss (ratio 1, V = V_old) and A2C's unclipped loss give the same
    gradient."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo import rollout as ro
    from alignzoo.experience import ValueHead, policy_forward

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                       resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    head = ValueHead(16)
    torch.nn.init.normal_(head.linear.weight)
    r = ro.generate(model, [[1, 2, 3], [4, 5]], eos_id=0, pad_id=29, max_new_tokens=6,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        old_lp, old_v, _ = policy_forward(model, head, r, 1.0)
    adv, ret = torch.randn_like(old_lp), torch.randn_like(old_lp)
    grads = []
    for clip in (0.2, float("inf")):
        model.zero_grad(); head.zero_grad()
        lp, v, _ = policy_forward(model, head, r, 1.0)
        pg, _ = policy_loss(lp, old_lp, adv, r.completion_mask, clip_range=clip)
        vf, _ = value_loss(v, old_v, ret, r.completion_mask, clip_range=clip)
        (pg + 0.1 * vf).backward()
        grads.append([p.grad.clone() for p in list(model.parameters()) + list(head.parameters()) if p.grad is not None])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_overoptimization_flag_logic():
    rising_proxy_falling_gold = [{"step": s, "eval/proxy_reward": p, "eval/gold_reward": g}
                                 for s, p, g in ((0, 0.0, 0.1), (10, 0.5, 0.4), (20, 1.0, 0.3), (30, 1.5, 0.1))]
    flag = overoptimization(rising_proxy_falling_gold)
    assert flag["overoptimized"] == 1.0 and flag["gold_peak_step"] == 10.0
    assert flag["gold_drop_from_peak"] == pytest.approx(0.3)
    stall = [{"step": s, "eval/proxy_reward": p, "eval/gold_reward": 0.2} for s, p in ((0, 0.0), (5, 0.5), (9, 0.9))]
    assert overoptimization(stall)["overoptimized"] == 1.0
    healthy = [{"step": s, "eval/proxy_reward": p, "eval/gold_reward": p / 2} for s, p in ((0, 0.0), (5, 0.4), (9, 0.8))]
    assert overoptimization(healthy)["overoptimized"] == 0.0
    assert overoptimization(healthy[:2]) is None


@pytest.mark.parametrize("algo", ["ppo", "a2c", "best_of_n"])
def test_online_algorithms_run_on_the_embedded_task(algo, tmp_path, smoke_cache):
    rec = run_tiny([*SMOKE, f"algo={algo}", f"run.cache_dir={smoke_cache}", "budget.eval_every=5"], tmp_path,
                   tiny=False)
    assert rec.status == "ok", rec.error
    for key in ("eval/gold_reward", "eval/kl", "eval/proxy_reward", "reward/heldout_accuracy"):
        assert key in rec.metrics, key
    if algo == "best_of_n":
        assert rec.metrics["eval/kl"] == pytest.approx(analytic_kl(4))
    else:
        for key in ("train/reward", "train/kl", "train/entropy", "train/value_loss", "train/clipfrac",
                    "train/advantages/mean", "train/length", "train/eos_share"):
            assert key in rec.metrics, key
        assert [h["step"] for h in rec.history] == [0, 5, 10]
        assert "eval/overoptimized" in rec.metrics and any(n.startswith("over-optimization") for n in rec.notes)


class NaNReward:
    @hookimpl
    def alignzoo_register_rewards(self, register):
        @dataclass
        class NaNConfig:
            name: str = "nan_reward"

        class R:
            def __init__(self, cfg, ctx):
                pass

            def score(self, prompts, completions, ended=None):
                return torch.full((len(completions),), float("nan"))

        register("nan_reward", R, NaNConfig)


def test_nan_reward_stops_the_run_with_step_and_quantity(tmp_path, smoke_cache):
    plugins.load(extra_plugins=[("nan", NaNReward())])
    try:
        rec = run_tiny([*SMOKE, "algo=ppo", "reward=nan_reward", f"run.cache_dir={smoke_cache}"], tmp_path,
                       tiny=False)
    finally:
        plugins.load(reload=True)
    assert rec.status == "failed" and rec.error["type"] == "TrainingDivergedError"
    assert "at step 1" in rec.error["message"] and "train/" in rec.error["message"]
    assert rec.history and rec.history[0]["step"] == 0  # the step-0 evaluation is kept


def test_rollout_log_probs_match_hf_generate():
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo import rollout as ro

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=64, n_embd=32, n_layer=2, n_head=2,
                                       resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)).eval()
    prompts = [[3, 4, 5, 6], [7, 8]]
    r = ro.generate(model, prompts, eos_id=39, pad_id=38, max_new_tokens=8, temperature=0)
    ids, mask = ro.left_pad(prompts, 38)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=39,
                         pad_token_id=38, output_scores=True, return_dict_in_generate=True)
    hf_tokens = out.sequences[:, ids.size(1):]
    hf_lp = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1)
    for b in range(2):
        n = int(r.completion_mask[b].sum())
        assert r.completion_ids[b, :n].tolist() == hf_tokens[b, :n].tolist()
        want = hf_lp[b, torch.arange(n), hf_tokens[b, :n]]
        assert torch.allclose(r.logprobs[b, :n], want, atol=1e-4)


@pytest.mark.parametrize("algo,extra", [("a2c", []), ("ppo", ["algo.epochs=2", "algo.ent_coef=0.01"])])
def test_first_update_reuses_the_collection_forward_with_the_same_results(algo, extra, tmp_path, smoke_cache,
                                                                          monkeypatch):
    """With one minibatch, collect runs the first optimizer step's forward (training mode, gradients, the step's
    row order) and the step reuses it: one policy forward fewer per iteration, the same training."""
    from alignzoo import experience

    calls = []
    forward = experience.policy_forward
    monkeypatch.setattr(experience, "policy_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    overrides = [*SMOKE, f"algo={algo}", *extra, f"run.cache_dir={smoke_cache}", "train.steps=4"]
    fused = run_tiny(overrides, tmp_path / "fused", tiny=False)
    fused_calls, calls[:] = len(calls), []
    monkeypatch.setattr(experience, "fuses_first_update", lambda *a: False)
    separate = run_tiny(overrides, tmp_path / "separate", tiny=False)
    epochs = 2 if algo == "ppo" else 1
    assert fused.status == separate.status == "ok"
    assert (fused_calls, len(calls)) == (4 * epochs, 4 * (epochs + 1))
    train = [k for k in separate.metrics if k.startswith("train/")]
    assert len(train) > 10
    for key in [*train, "eval/gold_reward", "eval/kl"]:
        assert fused.metrics[key] == pytest.approx(separate.metrics[key], rel=1e-5, abs=1e-7), key
    assert fused.metrics["train/ratio"] != 1.0 or epochs == 1  # the second pass saw moved weights


def test_first_update_fusion_needs_one_minibatch_and_no_dropout():
    from alignzoo.algos.a2c import A2CConfig
    from alignzoo.algos.ppo import PPOConfig
    from alignzoo.experience import fuses_first_update

    plain, dropout = torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    assert fuses_first_update(PPOConfig(), plain, None)
    assert not fuses_first_update(PPOConfig(minibatches=2), plain, None)
    assert not fuses_first_update(PPOConfig(), plain, dropout)  # e.g. a separate critic with dropout
    assert fuses_first_update(PPOConfig(), torch.nn.Sequential(torch.nn.Dropout(0.0)))
    assert fuses_first_update(A2CConfig(), plain, None)  # A2C always takes the whole batch
    assert not fuses_first_update(A2CConfig(), dropout)

"""ILQL against the oracles of docs/algorithms.md#ilql, its training loop, and one tiny run."""

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch

from alignzoo.algos import ilql
from alignzoo.algos.ilql import (ILQLDecoding, ILQLHeads, collate, cql_loss, decode_scores, expectile_loss, ilql_loss,
                                 polyak_update, q_targets, standardize, tokenize)
from alignzoo.rollout import filter_logits

HP = dict(gamma=0.99, tau=0.7, cql_scale=0.1, awac_scale=1.0, beta_awac=0.0)


def _batch(seed=0, b=3, n=5, v=7, heads=2):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 0, 1, 0, 0]], dtype=torch.float)[:b, :n]
    rewards = torch.zeros(b, n)
    for i in range(b):
        rewards[i, int(mask[i].nonzero().max())] = float(r(1))
    return dict(q_logits=[r(b, n, v) for _ in range(heads)], target_q_logits=[r(b, n, v) for _ in range(heads)],
                values=r(b, n + 1), lm_logits=r(b, n, v), actions=torch.randint(0, v, (b, n), generator=g),
                rewards=rewards, mask=mask)


# -- expectile ---------------------------------------------------------------------------------------------------

def test_expectile_at_half_is_half_the_squared_error():
    u = torch.randn(100)
    assert torch.allclose(expectile_loss(u, tau=0.5), 0.5 * u ** 2)


@pytest.mark.parametrize("tau", [0.6, 0.7, 0.9])
def test_expectile_weights_positive_by_tau_and_negative_by_one_minus_tau(tau):
    u = torch.tensor([2.0, -2.0, 0.5, -0.5])
    assert torch.allclose(expectile_loss(u, tau=tau), torch.tensor([tau, 1 - tau, tau, 1 - tau]) * u ** 2)
    assert torch.allclose(expectile_loss(u, tau=tau), expectile_loss(-u, tau=1 - tau))  # asymmetry oracle


def test_expectile_minimizer_is_above_the_mean_and_tends_to_the_max():
    q = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    grid = torch.linspace(-2, 3, 5001)

    def argmin(tau):
        return float(grid[expectile_loss(q[None] - grid[:, None], tau=tau).mean(1).argmin()])

    assert argmin(0.5) == pytest.approx(float(q.mean()), abs=1e-3)
    assert float(q.mean()) < argmin(0.7) < argmin(0.9) < argmin(0.999) <= float(q.max()) + 1e-3
    assert argmin(0.999) == pytest.approx(float(q.max()), abs=0.05)


# -- CQL ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("vocab", [7, 1024, 50257])
def test_cql_is_log_vocab_when_q_is_uniform(vocab):
    q = torch.full((2, 3, vocab), 0.37)
    loss = cql_loss(q, torch.randint(0, vocab, (2, 3)), torch.ones(2, 3))
    assert loss.item() == pytest.approx(math.log(vocab), rel=1e-6)


def test_cql_is_the_masked_cross_entropy_of_softmax_q():
    d = _batch(1)
    q, a, m = d["q_logits"][0], d["actions"], d["mask"]
    ce = torch.nn.functional.cross_entropy(q.reshape(-1, q.size(-1)), a.reshape(-1), reduction="none").view_as(a)
    assert cql_loss(q, a, m).item() == pytest.approx(float((ce * m).sum() / m.sum()), rel=1e-6)
    assert cql_loss(q, a, m).item() >= 0


# -- Bellman targets, double Q, V, AWAC --------------------------------------------------------------------------

def test_terminal_target_has_no_bootstrap():
    values = torch.tensor([[5.0, 7.0, 11.0, 13.0]])  # V(s_0..s_3); s_3 follows the last action
    mask = torch.tensor([[0.0, 1.0, 1.0]])  # actions at positions 1, 2; s_3 is terminal
    rewards = torch.tensor([[0.0, 0.0, 3.0]])
    target = q_targets(rewards, values, mask, gamma=0.9)
    assert target[0, 1].item() == pytest.approx(0.9 * 11.0)  # bootstraps from the non-terminal s_2
    assert target[0, 2].item() == pytest.approx(3.0)  # the terminal action: reward only, V(s_3) = 13 ignored


def test_q_loss_sums_both_heads_against_the_detached_target():
    d = _batch(2)
    d["values"].requires_grad_(True)
    _, m = ilql_loss(**d, **HP)
    target = q_targets(d["rewards"], d["values"], d["mask"], gamma=HP["gamma"])
    n = d["mask"].sum()
    expected = sum((((q.gather(-1, d["actions"][..., None])[..., 0] - target) ** 2) * d["mask"]).sum() / n
                   for q in d["q_logits"])
    assert m["loss_q"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert not target.requires_grad  # V(next) is detached in the Q target


def _v_loss_with(target_q, d, tau):
    u = target_q - d["values"][:, :-1]
    return float((expectile_loss(u, tau=tau) * d["mask"]).sum() / d["mask"].sum())


def test_v_loss_is_the_expectile_of_the_elementwise_min_of_the_target_qs():
    d = _batch(3)
    _, m = ilql_loss(**d, **{**HP, "tau": 0.8})
    picked = [t.gather(-1, d["actions"][..., None])[..., 0] for t in d["target_q_logits"]]
    expected = _v_loss_with(torch.minimum(*picked), d, 0.8)
    assert m["loss_v"].item() == pytest.approx(expected, rel=1e-6)
    # the test is sensitive to both mechanisms: one head alone, the mean of the heads, or plain MSE all differ
    for other in (_v_loss_with(picked[0], d, 0.8), _v_loss_with(picked[1], d, 0.8),
                  _v_loss_with((picked[0] + picked[1]) / 2, d, 0.8),
                  _v_loss_with(torch.minimum(*picked), d, 0.5)):
        assert abs(other - expected) > 1e-3


def test_v_trained_by_ilql_loss_converges_to_the_upper_expectile_not_the_mean():
    # V is fitted to target-Q samples through ilql_loss itself: with the expectile it settles above the mean
    # (removing the expectile, i.e. plain MSE, would give the mean)
    q_samples = torch.tensor([-1.0, 0.0, 0.5, 2.0, 3.0])
    b, vocab = len(q_samples), 4
    actions = torch.zeros(b, 1, dtype=torch.long)
    target = torch.zeros(b, 1, vocab)
    target[:, 0, 0] = q_samples
    v = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([v], lr=0.5)
    for _ in range(500):
        values = v.expand(b, 2)
        loss, m = ilql_loss([torch.zeros(b, 1, vocab)], [target], values, torch.zeros(b, 1, vocab), actions,
                            torch.zeros(b, 1), torch.ones(b, 1), gamma=0.9, tau=0.9, cql_scale=0.0,
                            awac_scale=0.0, beta_awac=0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    grid = torch.linspace(-1, 3, 4001)
    expected = float(grid[expectile_loss(q_samples[None] - grid[:, None], tau=0.9).mean(1).argmin()])
    assert v.item() == pytest.approx(expected, abs=2e-3)
    assert v.item() > float(q_samples.mean()) + 0.5


def test_awac_with_zero_beta_is_plain_cross_entropy_and_weights_follow_the_advantage():
    d = _batch(4)
    _, m = ilql_loss(**d, **HP)
    lm, a, mask = d["lm_logits"], d["actions"], d["mask"]
    ce = torch.nn.functional.cross_entropy(lm.reshape(-1, lm.size(-1)), a.reshape(-1), reduction="none").view_as(a)
    assert m["loss_awac"].item() == pytest.approx(float((ce * mask).sum() / mask.sum()), rel=1e-6)
    assert m["awac_weight"].item() == pytest.approx(1.0)
    _, m2 = ilql_loss(**d, **{**HP, "beta_awac": 1.0})
    assert m2["awac_weight"].item() != pytest.approx(1.0)


def test_total_loss_combines_the_terms_with_their_weights():
    d = _batch(5)
    loss, m = ilql_loss(**d, **{**HP, "cql_scale": 0.3, "awac_scale": 0.5})
    expected = m["loss_q"] + m["loss_v"] + 0.3 * m["loss_cql"] + 0.5 * m["loss_awac"]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(m) >= {"loss_q", "loss_v", "loss_cql", "loss_awac"}


def test_reward_standardization_has_mean_zero_and_unbiased_std_one():
    r = standardize(torch.tensor([0.3, -1.0, 2.5, 0.0, 0.7, 4.0]))
    assert r.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert r.std(unbiased=True).item() == pytest.approx(1.0, abs=1e-6)


# -- Polyak ------------------------------------------------------------------------------------------------------

def _pair(seed):
    torch.manual_seed(seed)
    return ilql.make_head(4, 6, zero_init=False), ilql.make_head(4, 6, zero_init=False)


def test_polyak_alpha_one_copies_zero_keeps_and_small_alpha_moves_by_alpha():
    target, online = _pair(0)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, online, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), before))
    polyak_update(target, online, 0.001)
    for t, old, s in zip(target.parameters(), before, online.parameters()):
        assert torch.allclose(t - old, 0.001 * (s - old), atol=1e-7)
    polyak_update(target, online, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(target.parameters(), online.parameters()))


# -- decoding ----------------------------------------------------------------------------------------------------

def _heads(d=8, vocab=30, seed=0):
    torch.manual_seed(seed)
    heads = ILQLHeads(d, vocab)
    for p in [*heads.q_heads.parameters(), *heads.v_head.parameters()]:
        torch.nn.init.normal_(p, std=0.5)
    heads.sync_target_q_heads(0.5)  # targets differ from the online heads and from each other
    return heads


def test_decoding_is_the_base_log_probs_plus_beta_times_the_advantage_on_the_top_k():
    heads = _heads()
    h, logits = torch.randn(5, 8), torch.randn(5, 30)
    _, targets, v = heads(h)
    scores = ILQLDecoding(heads, beta=2.0, top_k=10)(logits, h)
    expected = torch.log_softmax(logits, -1) + 2.0 * (torch.minimum(*targets) - v[:, None])
    kept = torch.isfinite(scores)
    assert (kept.sum(-1) == 10).all()
    assert torch.allclose(scores[kept], expected[kept], atol=1e-5)
    assert torch.equal(kept, torch.isfinite(filter_logits(expected, top_k=10)))


def test_decoding_is_invariant_to_v():
    heads = _heads()
    h, logits = torch.randn(5, 8), torch.randn(5, 30)
    before = torch.softmax(ILQLDecoding(heads, beta=3.0, top_k=10)(logits, h), -1)
    with torch.no_grad():
        heads.v_head[2].bias += 7.0  # V(s) + 7 for every state
    after = torch.softmax(ILQLDecoding(heads, beta=3.0, top_k=10)(logits, h), -1)
    assert torch.allclose(before, after, atol=1e-6)
    q = [torch.randn(5, 30), torch.randn(5, 30)]
    for shift in (torch.zeros(5), torch.randn(5) * 10):
        probs = torch.softmax(decode_scores(logits, q, shift, beta=2.0, top_k=10), -1)
        assert torch.allclose(probs, torch.softmax(decode_scores(logits, q, torch.zeros(5), beta=2.0, top_k=10), -1),
                              atol=1e-6)


def test_decoding_uses_the_min_of_the_two_target_qs():
    logits = torch.zeros(1, 4)
    q1, q2 = torch.tensor([[1.0, 0.0, 3.0, 0.0]]), torch.tensor([[0.0, 2.0, 1.0, 0.0]])
    scores = decode_scores(logits, [q1, q2], torch.zeros(1), beta=1.0, top_k=0)
    assert torch.allclose(scores - torch.log_softmax(logits, -1), torch.tensor([[0.0, 0.0, 1.0, 0.0]]))


def test_beta_zero_reproduces_the_base_policy_top_k_distribution_through_the_rollout_engine():
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo.rollout import generate

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2)).eval()
    heads = _heads(16, 40)
    logits = torch.randn(6, 40)
    scores = ILQLDecoding(heads, beta=0.0, top_k=20)(logits, torch.randn(6, 16))
    assert torch.allclose(torch.softmax(scores, -1), torch.softmax(filter_logits(logits, top_k=20), -1), atol=1e-6)
    prompts = [[3, 4, 5], [6, 7]]
    kw = dict(eos_id=0, pad_id=1, max_new_tokens=8)
    base = generate(model, prompts, top_k=20, generator=torch.Generator().manual_seed(3), **kw)
    ours = generate(model, prompts, generator=torch.Generator().manual_seed(3),
                    adjust_logits=ILQLDecoding(heads, beta=0.0, top_k=20), **kw)
    assert torch.equal(base.completion_ids, ours.completion_ids)
    # top-k happens inside adjust_logits, so the engine's log-probs are those of the top-k distribution
    assert (ours.logprobs >= base.logprobs - 1e-5).all()


# -- data --------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_policy():
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo.models.base import Policy
    from alignzoo.models.tokenizer import train_bpe_tokenizer

    texts = ["the movie was great and fun", "the plot was dull and boring", "i liked the acting a lot"] * 30
    tok = train_bpe_tokenizer(texts, 300)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                                       pad_token_id=tok.pad_token_id)).eval()
    return Policy(model, tok)


def test_return_sits_on_the_last_token_eos_only_when_ended(tiny_policy):
    pol = tiny_policy
    groups = tokenize(pol, ["the movie", "the movie"], [" was great", " was dull"], [True, False], [0, 0],
                      torch.tensor([1.5, -0.5]), max_length=64, max_prompt_length=32)
    (ended, cut), = groups
    assert ended[0][-1] == pol.eos_id and cut[0][-1] != pol.eos_id
    batch = collate([ended, cut], pol.pad_id, "cpu")
    for i, (ids, p, r) in enumerate((ended, cut)):
        assert batch.rewards[i].nonzero().flatten().tolist() == [len(ids) - 2]
        assert batch.rewards[i, len(ids) - 2].item() == r
        assert batch.mask[i].nonzero().flatten().tolist() == list(range(p - 1, len(ids) - 1))
        assert batch.input_ids[i, 1:][batch.mask[i].bool()].tolist() == ids[p:]  # actions = completion tokens


# -- the training loop -------------------------------------------------------------------------------------------

class _Gold:
    def score(self, prompts, completions, ended):
        return torch.tensor([float(len(c)) - 5 * (not e) for c, e in zip(completions, ended)])


def _ctx(policy, steps=4, reward=None):
    data = {"prompt": ["the movie", "the plot", "i liked", "the acting"],
            "completions": [[" was great", " was dull"], [" was fun", " was boring"], [" it", " the movie a lot"],
                            [" was great and fun", " was dull"]],
            "ended": [[True, True], [True, False], [True, True], [False, True]]}
    task = SimpleNamespace(name="fake", ranking_data=lambda pol: data, gold=_Gold())
    train = SimpleNamespace(steps=steps, batch_size=2, grad_accum=1, max_grad_norm=1.0, optimizer="adamw",
                            weight_decay=0.0, betas=[0.9, 0.999], eps=1e-8, scheduler="constant", warmup_steps=0,
                            eval_every=0)
    notes, logs = [], []
    ctx = SimpleNamespace(policy=policy, task=task, reward=reward, train=train, seed=0, notes=notes, logs=logs,
                          ranking_data=lambda: data,  # the pipeline's feedback (RunContext.ranking_data)
                          note=lambda msg, quiet=False: notes.append(msg), log=lambda m, step: logs.append(m),
                          progress=lambda total, desc: contextlib.nullcontext(SimpleNamespace(update=lambda n: None)),
                          add_tokens=lambda n: None, maybe_evaluate=lambda pol, step: None,
                          record=SimpleNamespace(tokens=0, perf={}))  # the loop times steps on the record
    return ctx


def _fresh(policy):
    import copy

    return copy.deepcopy(policy)


def test_training_syncs_the_target_heads(tiny_policy, monkeypatch):
    cfg = ilql.ILQLConfig(alpha=1.0, steps_for_target_q_sync=2, lr=1e-2)
    out = ilql.train(cfg, _ctx(_fresh(tiny_policy), steps=4))
    heads = out.adjust_logits.heads
    synced = lambda h: all(torch.equal(t, q) for t, q in zip(h.target_q_heads.parameters(),  # noqa: E731
                                                             h.q_heads.parameters()))
    assert synced(heads)  # alpha = 1 at the last step (4 % 2 == 0): a hard copy
    assert all(h[2].weight.abs().sum() > 0 for h in heads.target_q_heads)  # no longer the zero-initialized copy
    # removing the sync leaves the targets at their initial copy, and the check above fails
    monkeypatch.setattr(ILQLHeads, "sync_target_q_heads", lambda self, alpha: None)
    assert not synced(ilql.train(cfg, _ctx(_fresh(tiny_policy), steps=4)).adjust_logits.heads)


def test_training_syncs_the_target_transformer_and_counts_its_forward(tiny_policy, monkeypatch):
    seen, real_sync = [], ilql.TargetNetwork.sync

    def sync(self, model, alpha):
        seen.append((self, model, alpha))
        real_sync(self, model, alpha)

    monkeypatch.setattr(ilql.TargetNetwork, "sync", sync)
    policy = _fresh(tiny_policy)
    initial = [p.clone() for p in policy.model.parameters()]
    out = ilql.train(ilql.ILQLConfig(alpha=1.0, lr=1e-2), _ctx(policy, steps=3))
    assert [(m is out.model, a) for _, m, a in seen] == [(True, 1.0)] * 3  # every step (the paper's schedule)
    body = seen[-1][0].body
    assert body is not out.model and not any(p.requires_grad for p in body.parameters())
    assert all(torch.equal(t, p) for t, p in zip(body.parameters(), out.model.parameters()))  # alpha 1: a copy
    assert not all(torch.equal(p, q) for p, q in zip(out.model.parameters(), initial))  # ... of the trained body
    assert out.adjust_logits.online_q  # decoding reads the online Q heads (the target ones read the target body)
    tokens = []
    light = _ctx(_fresh(tiny_policy), steps=1)
    light.add_tokens = tokens.append
    ilql.train(ilql.PRESETS["ilql_light"], light)
    full = _ctx(_fresh(tiny_policy), steps=1)
    full.add_tokens = tokens.append
    ilql.train(ilql.ILQLConfig(), full)
    assert tokens[1] == 2 * tokens[0] > 0  # the target transformer's forward counts


def test_training_logs_every_term_notes_the_reward_source_and_decodes_on_the_policy_device(tiny_policy):
    ctx = _ctx(_fresh(tiny_policy), steps=2)
    out = ilql.train(ilql.ILQLConfig(), ctx)
    assert out.adjust_logits is not None and out.model is ctx.policy.model
    assert ctx.policy.adjust_logits is None  # the starting Policy object keeps plain decoding
    assert next(out.adjust_logits.heads.parameters()).device == out.device
    for key in ("train/loss", "train/loss_q", "train/loss_v", "train/loss_cql", "train/loss_awac", "train/grad_norm"):
        assert key in ctx.logs[-1] and math.isfinite(ctx.logs[-1][key])
    assert any("gold reward (oracle ablation)" in n for n in ctx.notes)
    reward = SimpleNamespace(score=lambda p, c, e: torch.zeros(len(c)) + torch.arange(len(c)).float())
    ctx = _ctx(_fresh(tiny_policy), steps=1, reward=reward)
    ilql.train(ilql.ILQLConfig(), ctx)
    assert any("the run's reward" in n for n in ctx.notes)
    with pytest.raises(Exception, match="reward_source=reward"):
        ilql.train(ilql.ILQLConfig(reward_source="reward"), _ctx(_fresh(tiny_policy), steps=1))


def test_config_problems_name_the_field():
    assert ilql.ILQLConfig().problems() == []
    probs = ilql.ILQLConfig(tau=1.5, alpha=2, reward_source="rm", steps_for_target_q_sync=0).problems()
    assert len(probs) == 4 and any("reward_source" in p for p in probs)


# -- one tiny run ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algo", ["ilql", pytest.param("ilql_light", marks=pytest.mark.slow)])  # light: test-slow
def test_ilql_runs_end_to_end_on_the_sentiment_task(tmp_path, smoke_cache, algo):
    from alignzoo.testing import run_tiny

    rec = run_tiny(["task=sentiment", "budget=smoke", f"algo={algo}", "logger=[jsonl]", f"run.cache_dir={smoke_cache}"],
                   tmp_path / "job", tiny=False)
    assert rec.status == "ok", rec.error
    assert rec.config["algo"]["name"] == algo and rec.config["algo"]["target_transformer"] == (algo == "ilql")
    assert (tmp_path / "job" / "record.json").exists()
    assert any(n.startswith("ilql: ") and "the run's reward" in n for n in rec.notes)  # a learned reward model by default
    for key in ("train/loss_q", "train/loss_v", "train/loss_cql", "train/loss_awac", "eval/gold_reward", "eval/kl"):
        assert math.isfinite(rec.metrics[key]), key
    assert rec.metrics["eval/kl"] > 0  # the perturbed, top-k decoding differs from the reference

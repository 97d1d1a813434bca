"""Fidelity to the papers where it decides the table (issue 19): truncated completions keep no EOS in any
preference learner's batches, eval KL is KL(pi_T || ref) at any temperature within its standard error, and
ILQL's target network, CQL term and double-Q min match hand-computed values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from alignzoo.algos import dpo, ilql, rlaif

# -- truncated completions: no EOS in DPO, IPO, cDPO, KTO and RLAIF batches ------------------------------------

ENDED, CUT = " was great", " was dull and the"
PAIRS = {"prompt": ["the movie", "the plot"], "chosen": [ENDED, CUT], "rejected": [CUT, ENDED],
         "chosen_ended": [True, False], "rejected_ended": [False, True]}


def _feedback(pairs):
    """A feedback-stage dataset (every column of stages.feedback.COLUMNS) holding ``pairs``."""
    import datasets

    from alignzoo.stages.feedback import columns, feedback_row

    rows = [feedback_row(p, [c, r], [1.0, 0.0], [ce, re], [0, 1], "annotator_0")
            for p, c, r, ce, re in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"], pairs["chosen_ended"],
                                       pairs["rejected_ended"])]
    return datasets.Dataset.from_dict(columns(rows))


def _pair_ctx(policy):
    """Just enough of a RunContext for one loss evaluation; ``preference_data`` is RunContext's own."""
    from alignzoo.context import RunContext

    data = _feedback(PAIRS)
    ctx = SimpleNamespace(policy=policy, reference=policy.frozen_copy(), seed=0, ranking_data=lambda: data,
                          train=SimpleNamespace(batch_size=4, grad_accum=1), note=lambda *a, **k: None,
                          add_tokens=lambda n: None, feedback=lambda: None, extra_metrics={},
                          cfg=SimpleNamespace(algo=SimpleNamespace(name="x")))
    ctx.preference_data = lambda: RunContext.preference_data(ctx)
    return ctx


def _captured_completions(monkeypatch, module, run):
    """The completion rows ``module`` pads into its batches while ``run()`` evaluates one loss."""
    rows = []

    def spy(prompts, completions, pad_id, **kw):
        rows.extend(tuple(c) for c in completions)
        return real(prompts, completions, pad_id, **kw)

    def one_step(ctx, policy, *, lr, batches, loss_fn, desc):
        loss_fn(next(batches))

    # the DPO family pads with ops.pad_completions, KTO with the public ops.collate_completions (same arguments)
    name = "pad_completions" if hasattr(module, "pad_completions") else "collate_completions"
    real = getattr(module, name)
    monkeypatch.setattr(module, name, spy)
    monkeypatch.setattr(module, "supervised_loop", one_step)
    run()
    return rows


def _run_dpo(preset):
    return lambda ctx: dpo.train(dpo.PRESETS[preset], ctx)


def _run_kto(ctx):
    import alignzoo_kto

    alignzoo_kto.train(alignzoo_kto.KTOConfig(), ctx)


def _run_rlaif(ctx):
    rlaif.train(rlaif.RLAIFConfig(), ctx)


LEARNERS = {"dpo": (dpo, _run_dpo("dpo")), "ipo": (dpo, _run_dpo("ipo")), "cdpo": (dpo, _run_dpo("cdpo")),
            "kto": ("alignzoo_kto", _run_kto), "rlaif": (dpo, _run_rlaif)}


@pytest.mark.parametrize("name", list(LEARNERS))
def test_a_truncated_completion_is_batched_without_eos_and_an_ended_one_with_one(name, tiny_policy, monkeypatch):
    import importlib

    module, run = LEARNERS[name]
    module = importlib.import_module(module) if isinstance(module, str) else module
    monkeypatch.setattr(rlaif, "use_ai_feedback", lambda ctx: None)  # the critic labelled PAIRS already
    ctx = _pair_ctx(tiny_policy)
    rows = _captured_completions(monkeypatch, module, lambda: run(ctx))
    tok, eos = tiny_policy.tokenizer, tiny_policy.eos_id
    ended = tuple(tok(ENDED, add_special_tokens=False)["input_ids"]) + (eos,)
    cut = tuple(tok(CUT, add_special_tokens=False)["input_ids"])
    assert cut[-1] != eos and rows.count(cut) >= 2 and rows.count(ended) >= 2  # both pairs, both sides
    assert set(rows) == {ended, cut}  # the cut completion never gains an EOS


def test_pairs_from_a_task_count_as_ended_and_a_none_flag_counts_as_ended(tiny_policy):
    import datasets

    from alignzoo.context import with_ended_columns

    data = with_ended_columns(datasets.Dataset.from_dict({k: PAIRS[k] for k in ("prompt", "chosen", "rejected")}))
    assert data["chosen_ended"] == [True, True] and data["rejected_ended"] == [True, True]
    eos = tiny_policy.eos_id
    plain, none, cut = tiny_policy.encode_completions([CUT] * 3, [True, None, False])
    assert plain[-1] == eos and none == plain and cut == plain[:-1]
    with pytest.raises(ValueError, match="2 texts but 1 ended flags"):
        tiny_policy.encode_completions([CUT, CUT], [True])


# -- eval KL at temperature 0.7 vs the exact KL -------------------------------------------------------------------

def _random_policy(tiny_policy, seed):
    from transformers import GPT2LMHeadModel

    from alignzoo.models.base import Policy

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(tiny_policy.model.config).eval()
    with torch.no_grad():  # sharper next-token distributions than the default init: a KL of a few nats
        model.lm_head.weight.mul_(8.0)
    return Policy(model, tiny_policy.tokenizer, name=f"random{seed}")


@torch.no_grad()
def _next_logprobs(model, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, -1].double()
    return torch.log_softmax(logits / temperature, -1)


@torch.no_grad()
def exact_two_token_kl(policy, reference, prompt: str, temperature: float) -> float:
    """KL(pi_T || ref) over completions of at most 2 tokens (stopping at EOS), by enumerating the vocabulary:
    sum_a p(a) [log p(a) - log q(a)] + sum_{a != EOS} p(a) KL(p(.|a) || q(.|a))."""
    ids = torch.tensor([policy.encode_prompts([prompt])[0]])
    p1, q1 = _next_logprobs(policy.model, ids, temperature), _next_logprobs(reference.model, ids, 1.0)
    vocab = p1.size(-1)
    both = torch.cat([ids.expand(vocab, -1), torch.arange(vocab).unsqueeze(-1)], dim=1)
    p2, q2 = _next_logprobs(policy.model, both, temperature), _next_logprobs(reference.model, both, 1.0)
    second = (p2.exp() * (p2 - q2)).sum(-1)
    second[policy.eos_id] = 0.0  # EOS ends the completion
    return float((p1.exp()[0] * (p1[0] - q1[0] + second)).sum())


def test_eval_kl_at_temperature_matches_the_exact_kl_within_its_standard_error(tiny_policy):
    from alignzoo.evaluators.basic import KLConfig, KLEvaluator
    from alignzoo.evaluators.samples import EvalSamples

    policy, reference = _random_policy(tiny_policy, 1), _random_policy(tiny_policy, 2)
    prompt, t = "the movie", 0.7
    samples = EvalSamples.draw(policy, reference, [prompt] * 3000, max_new_tokens=2, temperature=t, seed=0,
                               batch_size=1000)
    out = KLEvaluator(KLConfig(), None).evaluate(samples)
    exact = exact_two_token_kl(policy, reference, prompt, t)
    assert exact > 1.0 and 0 < out["kl_se"] < 0.1 * exact
    assert out["kl_se"] == pytest.approx(out["kl_k1_std"] / math.sqrt(3000))
    assert abs(out["kl"] - exact) < 3 * out["kl_se"], (out, exact)
    # the T = 1 log-probs of the sampled tokens (the old estimate) miss it by far more than the SE
    stale = sum(float(((lp - ref) * m).sum()) for lp, ref, m in
                zip(samples._token_logprobs(policy.model, 1.0), samples.ref_token_logprobs, samples.masks)) / 3000
    assert abs(stale - exact) > 10 * out["kl_se"], (stale, exact)


# -- ILQL: target network, CQL term, double-Q min ------------------------------------------------------------------

def _fill(module: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def test_target_network_update_moves_body_and_q_heads_by_alpha_toward_the_online_network():
    heads = ilql.ILQLHeads(d=2, vocab=3)
    body = nn.Linear(2, 2)
    target = ilql.TargetNetwork.of(body, heads, with_body=True)
    assert target.body is not body and not any(p.requires_grad for p in target.body.parameters())
    _fill(target.body, 1.0), _fill(heads.target_q_heads, 1.0)
    _fill(body, 3.0), _fill(heads.q_heads, -1.0)
    target.sync(body, alpha=ilql.ILQLConfig().alpha)  # 0.005, the paper's rate
    for p in target.body.parameters():  # 0.005 * 3 + 0.995 * 1
        assert torch.allclose(p, torch.full_like(p, 1.01))
    for p in heads.target_q_heads.parameters():  # 0.005 * -1 + 0.995 * 1
        assert torch.allclose(p, torch.full_like(p, 0.99))
    for p in body.parameters():
        assert torch.equal(p, torch.full_like(p, 3.0))  # the online network is untouched
    light = ilql.TargetNetwork.of(body, heads, with_body=False)
    assert light.body is None and light.hidden(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2)) is None


def test_target_q_heads_read_the_target_transformers_hidden_states():
    heads = ilql.ILQLHeads(d=2, vocab=3)
    for h in (*heads.q_heads, *heads.target_q_heads):
        with torch.no_grad():
            h[0].weight.copy_(torch.eye(4, 2)), h[0].bias.zero_()
            h[2].weight.copy_(torch.ones(3, 4)), h[2].bias.zero_()
    online, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[5.0, 0.0]])
    qs, targets, _ = heads(online, target)
    assert qs[0].tolist() == [[3.0, 3.0, 3.0]] and targets[0].tolist() == [[5.0, 5.0, 5.0]]
    assert heads(online)[1][0].tolist() == [[3.0, 3.0, 3.0]]  # no target body: the online hidden states


def test_cql_term_by_hand():
    # Q(s, .) = [0, ln 2, ln 3]: logsumexp = ln 6; data action 1: ln 6 - ln 2 = ln 3; action 0: ln 6
    q = torch.tensor([[[0.0, math.log(2), math.log(3)], [0.0, math.log(2), math.log(3)]]])
    assert ilql.cql_loss(q, torch.tensor([[1, 0]]), torch.tensor([[1.0, 0.0]])).item() == pytest.approx(math.log(3))
    assert ilql.cql_loss(q, torch.tensor([[1, 0]]), torch.ones(1, 2)).item() == pytest.approx(
        (math.log(3) + math.log(6)) / 2)
    # in the total loss: both heads' terms, weighted by cql_scale (0.25 by default, as the paper's toxicity run)
    zeros = torch.zeros(1, 2, 3)
    kw = dict(gamma=1.0, tau=0.5, awac_scale=0.0, beta_awac=0.0)
    args = ([q, q], [zeros, zeros], torch.zeros(1, 3), zeros, torch.tensor([[1, 0]]), torch.zeros(1, 2),
            torch.tensor([[1.0, 0.0]]))
    with_cql, metrics = ilql.ilql_loss(*args, cql_scale=ilql.ILQLConfig().cql_scale, **kw)
    without, _ = ilql.ilql_loss(*args, cql_scale=0.0, **kw)
    assert metrics["loss_cql"].item() == pytest.approx(2 * math.log(3))
    assert (with_cql - without).item() == pytest.approx(0.25 * 2 * math.log(3))


def test_value_target_is_the_min_of_the_two_target_qs_by_hand():
    # data actions 0 then 1; target heads pick Qbar_1 = [1, 5], Qbar_2 = [3, 2] -> min [1, 2]; V = 0, tau = 0.5:
    # L_V = 0.5 * (1^2 + 2^2) / 2 = 1.25
    t1 = torch.tensor([[[1.0, 9.0], [9.0, 5.0]]])
    t2 = torch.tensor([[[3.0, 9.0], [9.0, 2.0]]])
    q = torch.zeros(1, 2, 2)
    _, m = ilql.ilql_loss([q, q], [t1, t2], torch.zeros(1, 3), q, torch.tensor([[0, 1]]), torch.zeros(1, 2),
                          torch.ones(1, 2), gamma=1.0, tau=0.5, cql_scale=0.0, awac_scale=0.0, beta_awac=0.0)
    assert m["target_q"].item() == pytest.approx(1.5) and m["loss_v"].item() == pytest.approx(1.25)
    # decoding takes the same min (of the online heads when the target network has its own transformer)
    heads = ilql.ILQLHeads(d=2, vocab=2)
    scores = ilql.decode_scores(torch.zeros(1, 2), [torch.tensor([[1.0, 5.0]]), torch.tensor([[3.0, 2.0]])],
                                torch.zeros(1), beta=1.0, top_k=0)
    assert (scores - scores[0, 0]).tolist() == [[0.0, 1.0]] and heads is not None


def test_ilql_defaults_are_the_papers_and_ilql_light_keeps_the_earlier_variant():
    from alignzoo.testing import compose_config

    paper = compose_config(["algo=ilql"]).algo
    assert (paper.alpha, paper.steps_for_target_q_sync, paper.target_transformer, paper.two_qs) == (0.005, 1, True, True)
    assert (paper.cql_scale, paper.awac_scale, paper.tau) == (0.25, 1.0, 0.7)
    light = compose_config(["algo=ilql_light"]).algo
    assert (light.name, light.alpha, light.target_transformer, light.cql_scale, light.awac_scale) == (
        "ilql_light", 0.5, False, 0.0, 0.05)

"""The sampling engine and the basic evaluators (docs/algorithms.md#evaluators oracles)."""

import pytest
import torch

from alignzoo import rollout as ro
from alignzoo.evaluators.basic import distinct_n, repetition_rate
from alignzoo.ops import kl_penalty


def _model(vocab=40, seed=0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0,
                     embd_pdrop=0, attn_pdrop=0)
    return GPT2LMHeadModel(cfg).eval()


def test_rollout_logprobs_match_a_full_forward_with_left_padding():
    model = _model()
    prompts = [[3, 4, 5, 6, 7], [8, 9], [10]]
    gen = torch.Generator().manual_seed(0)
    r = ro.generate(model, prompts, eos_id=0, pad_id=39, max_new_tokens=12, generator=gen)
    rescored = ro.completion_logprobs(model, r)
    assert torch.allclose(r.logprobs, rescored, atol=1e-4)
    # the same prompt alone (no padding) scores its completion identically
    for i, p in enumerate(prompts):
        n = int(r.completion_mask[i].sum())
        ids = torch.tensor([p + r.completion_ids[i, :n].tolist()])
        lp = torch.log_softmax(model(ids).logits[0, :-1], -1)[torch.arange(ids.size(1) - 1), ids[0, 1:]]
        assert torch.allclose(lp[len(p) - 1:], r.logprobs[i, :n], atol=1e-4)


def test_rollout_stops_each_sequence_at_eos():
    model = _model()
    gen = torch.Generator().manual_seed(1)
    eos = 5
    r = ro.generate(model, [[1, 2]] * 16, eos_id=eos, pad_id=39, max_new_tokens=30, temperature=2.0, generator=gen)
    assert 0 < int(r.ended.sum()) < 16  # some rows stop early, others run to the cap
    for ids, mask, ended in zip(r.completion_ids.tolist(), r.completion_mask.tolist(), r.ended.tolist()):
        n = sum(mask)
        assert mask == [1] * n + [0] * (len(mask) - n)
        if ended:
            assert ids[n - 1] == eos and eos not in ids[:n - 1]
            assert all(t == 39 for t in ids[n:])
        else:
            assert eos not in ids[:n] and n == 30


def test_greedy_matches_hf_generate():
    model = _model()
    prompt = [[3, 4, 5]]
    r = ro.generate(model, prompt, eos_id=0, pad_id=39, max_new_tokens=10, temperature=0)
    hf = model.generate(torch.tensor(prompt), max_new_tokens=10, do_sample=False, eos_token_id=0, pad_token_id=39)
    n = int(r.completion_mask[0].sum())
    assert r.completion_ids[0, :n].tolist() == hf[0, 3:3 + n].tolist()


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(ro.filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert torch.isinf(ro.filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(ro.filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]


def test_kl_estimators_oracles():
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.5, 0.3, 0.2])
    lp, lq = p.log(), q.log()
    kl = (p * (lp - lq)).sum().item()
    assert kl == pytest.approx(0.0851228, abs=1e-6)
    assert (p * kl_penalty(lp, lq, estimator="k1")).sum().item() == pytest.approx(kl, abs=1e-6)
    assert (p * kl_penalty(lp, lq, estimator="k3")).sum().item() == pytest.approx(kl, abs=1e-6)
    assert (p * kl_penalty(lp, lq, estimator="k2")).sum().item() == pytest.approx(0.0800876, abs=1e-6)
    for est in ("k1", "k2", "k3"):
        assert torch.all(kl_penalty(lp, lp, estimator=est) == 0)
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_penalty(lp, lq, estimator="k9")


def test_distinct_and_repetition_oracles():
    assert distinct_n(["a b c"], 1) == 1.0
    assert distinct_n(["a a a a"], 1) == 0.25
    assert distinct_n(["the cat sat"] * 4, 1) == pytest.approx(1 / 4)
    assert distinct_n(["the cat sat"] * 4, 2) == pytest.approx(1 / 4)
    assert repetition_rate(["superb superb superb superb"]) == 0.75
    assert repetition_rate(["a b", "a b"]) == 0.0

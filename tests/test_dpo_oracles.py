"""DPO-family losses against the oracles of docs/algorithms.md#dpo-family."""

import math

import pytest
import torch

from alignzoo.algos.dpo import collate_pairs, dpo_loss, pair_logps
from alignzoo.ops import sequence_logprobs

LOG2 = math.log(2)


def _logps(seed=0, n=6):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * 5 - 20 for _ in range(4)]


def test_dpo_loss_is_log2_when_policy_equals_reference():
    pc, pr, _, _ = _logps()
    loss, m = dpo_loss(pc, pr, pc.clone(), pr.clone(), beta=0.1)
    assert loss.item() == pytest.approx(LOG2, abs=1e-7)
    assert m["rewards/chosen"].item() == 0 and m["rewards/rejected"].item() == 0
    assert m["rewards/margins"].item() == 0
    assert m["rewards/accuracies"].item() == 0.0  # strict >: ties count as wrong


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_cdpo_and_robust_start_at_log2(eps):
    pc, pr, _, _ = _logps(1)
    loss, _ = dpo_loss(pc, pr, pc, pr, beta=0.5, label_smoothing=eps)
    assert loss.item() == pytest.approx(LOG2, abs=1e-7)


def test_cdpo_with_zero_smoothing_equals_dpo():
    pc, pr, rc, rr = _logps(2)
    a, _ = dpo_loss(pc, pr, rc, rr, beta=0.1, label_smoothing=0.0)
    b, _ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    expected = torch.nn.functional.softplus(-0.1 * ((pc - rc) - (pr - rr))).mean()
    assert a.item() == b.item() == pytest.approx(expected.item(), abs=1e-7)


def test_cdpo_symmetry():
    # cDPO(eps, h) = cDPO(1 - eps, -h): swapping chosen and rejected mirrors the smoothing
    pc, pr, rc, rr = _logps(3)
    a, _ = dpo_loss(pc, pr, rc, rr, beta=0.2, label_smoothing=0.2)
    from alignzoo.algos.dpo import _sigmoid

    h = (pc - rc) - (pr - rr)
    assert a.item() == pytest.approx(_sigmoid(-h, 0.2, 0.8).mean().item(), abs=1e-6)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_ipo_at_init_is_one_over_four_beta_squared(beta):
    pc, pr, _, _ = _logps(4)
    loss, _ = dpo_loss(pc, pr, pc, pr, beta=beta, variant="ipo")
    assert loss.item() == pytest.approx(1 / (4 * beta**2), rel=1e-6)


def test_hinge_at_init_is_one():
    pc, pr, _, _ = _logps(5)
    loss, _ = dpo_loss(pc, pr, pc, pr, beta=0.1, variant="hinge")
    assert loss.item() == pytest.approx(1.0)


def test_gradient_at_init_is_minus_beta_over_two():
    h_chosen = torch.zeros(1, requires_grad=True)
    loss, _ = dpo_loss(h_chosen, torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=0.3)
    loss.backward()
    assert h_chosen.grad.item() == pytest.approx(-0.15)


def test_accuracies_are_strict_and_margins_right():
    pc = torch.tensor([1.0, 2.0, 3.0])
    pr = torch.tensor([0.0, 2.0, 4.0])
    z = torch.zeros(3)
    _, m = dpo_loss(pc, pr, z, z, beta=1.0)
    assert m["rewards/accuracies"].item() == pytest.approx(1 / 3)
    assert m["rewards/margins"].item() == pytest.approx((1 + 0 - 1) / 3)


def test_sequence_logprobs_matches_a_per_token_loop():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0, 0], [1] * 7, [0, 0, 0, 0, 0, 0, 1]])
    got = sequence_logprobs(logits, labels, mask)
    for b in range(3):
        want = sum(torch.log_softmax(logits[b, t], -1)[labels[b, t]].item() for t in range(7) if mask[b, t])
        assert got[b].item() == pytest.approx(want, abs=1e-5)


def test_sequence_logprobs_ignores_masked_positions():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 9, generator=g)
    labels = torch.randint(0, 9, (2, 5), generator=g)
    mask = torch.tensor([[0, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    perturbed = logits.clone()
    perturbed[mask == 0] = torch.randn_like(perturbed[mask == 0]) * 100
    assert torch.equal(sequence_logprobs(logits, labels, mask), sequence_logprobs(perturbed, labels, mask))


def _tiny_model(vocab=50):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=32, n_embd=16, n_layer=1, n_head=2, resid_pdrop=0,
                     embd_pdrop=0, attn_pdrop=0)
    return GPT2LMHeadModel(cfg)


def test_identical_completions_give_zero_gradient_through_the_model():
    model = _tiny_model()
    ref = _tiny_model()
    pairs = [([1, 2, 3], [4, 5, 0], [4, 5, 0]), ([1, 7], [8, 9, 10, 0], [8, 9, 10, 0])]
    batch = collate_pairs(pairs, [0, 1], pad_id=49, device=torch.device("cpu"))
    pc, pr = pair_logps(model, batch, False)
    with torch.no_grad():
        rc, rr = pair_logps(ref, batch, False)
    loss, _ = dpo_loss(pc, pr, rc, rr, beta=0.1)
    loss.backward()
    assert loss.item() == pytest.approx(LOG2, abs=1e-6)
    assert all(p.grad is None or p.grad.abs().max().item() < 1e-7 for p in model.parameters())


def test_concatenated_forward_matches_separate_forwards_and_ignores_padding_side():
    model = _tiny_model()
    pairs = [([1, 2, 3], [4, 5, 0], [6, 0]), ([1, 7], [8, 9, 10, 0], [11, 12, 0])]
    batch = collate_pairs(pairs, [0, 1], pad_id=49, device=torch.device("cpu"))
    with torch.no_grad():
        c, r = pair_logps(model, batch, False)
        for i, (p, ch, rj) in enumerate(pairs):
            for comp, got in ((ch, c[i]), (rj, r[i])):
                ids = torch.tensor([p + comp])
                logits = model(ids).logits[0, :-1]
                lp = torch.log_softmax(logits, -1)[torch.arange(len(p) + len(comp) - 1), ids[0, 1:]]
                assert got.item() == pytest.approx(lp[len(p) - 1:].sum().item(), abs=1e-4)

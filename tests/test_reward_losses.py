"""Reward-model losses against the oracles of docs/algorithms.md#reward-model-losses."""

import math

import pytest
import torch

from alignzoo.rewards.losses import all_pairs_loss, bradley_terry_loss, plackett_luce_loss, soft_label_loss

LOG2 = math.log(2)


def test_bt_at_a_tie_is_log2_and_accuracy_zero():
    a = torch.tensor([0.3, -1.2, 5.0])
    loss, m = bradley_terry_loss(a, a.clone())
    assert loss.item() == pytest.approx(LOG2, abs=1e-7)
    assert m["accuracy"].item() == 0.0  # strict >


def test_bt_antisymmetry_and_shift_invariance():
    a, b = torch.tensor([1.7]), torch.tensor([-0.4])
    ab, _ = bradley_terry_loss(a, b)
    ba, _ = bradley_terry_loss(b, a)
    assert (ab - ba).item() == pytest.approx((b - a).item(), abs=1e-6)
    shifted, _ = bradley_terry_loss(a + 3.0, b + 3.0)
    assert shifted.item() == pytest.approx(ab.item(), abs=1e-6)


def test_bt_margin_and_gradient():
    a, b = torch.tensor([2.0]), torch.tensor([1.5])
    loss, _ = bradley_terry_loss(a, b, margin=0.5)
    assert loss.item() == pytest.approx(LOG2, abs=1e-7)
    c = torch.zeros(1, requires_grad=True)
    bradley_terry_loss(c, torch.zeros(1))[0].backward()
    assert c.grad.item() == pytest.approx(-0.5)


def test_centering_breaks_shift_invariance():
    a, b = torch.tensor([1.0]), torch.tensor([0.0])
    plain, _ = bradley_terry_loss(a + 5, b + 5)
    centered, _ = bradley_terry_loss(a + 5, b + 5, center_coef=0.01)
    assert centered.item() == pytest.approx(plain.item() + 0.01 * 11**2, abs=1e-5)


def test_plackett_luce_with_two_equals_bt():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(16, 2, generator=g)
    pl, _ = plackett_luce_loss(s)
    bt, _ = bradley_terry_loss(s[:, 0], s[:, 1])
    assert pl.item() == pytest.approx(bt.item(), abs=1e-6)


def test_plackett_luce_all_equal_is_log_k_factorial():
    loss, _ = plackett_luce_loss(torch.zeros(3, 4))
    assert loss.item() == pytest.approx(math.log(math.factorial(4)), abs=1e-5)


def test_plackett_luce_is_minimized_by_the_true_order():
    import itertools

    scores = torch.tensor([3.0, 1.0, 0.5, -2.0])  # already in the labelled order
    best = plackett_luce_loss(scores[None])[0].item()
    for perm in itertools.permutations(range(4)):
        if list(perm) != [0, 1, 2, 3]:
            assert plackett_luce_loss(scores[list(perm)][None])[0].item() > best


def test_all_pairs_loss_and_soft_labels():
    s = torch.tensor([[2.0, 1.0, 0.0]])
    loss, m = all_pairs_loss(s)
    want = sum(math.log1p(math.exp(-(x - y))) for x, y in ((2, 1), (2, 0), (1, 0))) / 3
    assert loss.item() == pytest.approx(want, abs=1e-6) and m["accuracy"].item() == 1.0
    r1, r2 = torch.tensor([0.7]), torch.tensor([0.2])
    assert soft_label_loss(r1, r2, torch.ones(1))[0].item() == pytest.approx(bradley_terry_loss(r1, r2)[0].item())
    assert soft_label_loss(r1, r1, torch.full((1,), 0.5))[0].item() == pytest.approx(LOG2)
    # minimized at r1 - r2 = logit(p)
    d = torch.linspace(-3, 3, 601)
    losses = torch.stack([soft_label_loss(x[None], torch.zeros(1), torch.full((1,), 0.8))[0] for x in d])
    assert d[losses.argmin()].item() == pytest.approx(math.log(0.8 / 0.2), abs=0.011)

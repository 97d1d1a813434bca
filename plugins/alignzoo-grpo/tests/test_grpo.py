"""alignzoo-grpo: the advantage oracles and the conformance suite for grpo and rloo."""

import pytest
import torch

from alignzoo_grpo import grpo_advantages, group_loss, rloo_advantages

from alignzoo.testing import check_algorithm


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

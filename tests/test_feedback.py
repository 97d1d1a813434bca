"""Simulated annotators (stages/feedback.py): Bradley-Terry / Plackett-Luce labels, flips, agreement."""

import math

import numpy as np
import pytest

from alignzoo.stages.feedback import Annotator, annotator_pool, label_groups, rank


def _groups(n, k=2, seed=0):
    rng = np.random.default_rng(seed)
    golds = rng.uniform(-1, 1, size=(n, k)).round(3).tolist()
    return golds, [[5] * k for _ in range(n)]


def test_zero_temperature_without_flips_always_prefers_higher_gold():
    golds, words = _groups(2000, k=4)
    pool = annotator_pool(3, temperature=0.0, flip_rate=0.0, noise=0.0, length_bias=0.0, seed=0)
    labels, stats = label_groups(golds, words, pool, overlap_share=0.2, seed=1)
    for g, lab in zip(golds, labels):
        assert g[lab["chosen_index"]] >= g[lab["rejected_index"]]
        assert g[lab["chosen_index"]] == max(g) and g[lab["rejected_index"]] == min(g)
        assert sorted(lab["ranking"]) == list(range(4))
    assert stats["agreement_with_gold"] == 1.0
    assert stats["inter_annotator_agreement"] == 1.0 and stats["inter_annotator_pairs"] > 300


@pytest.mark.parametrize("p", [0.1, 0.25])
def test_flip_rate_shows_up_as_disagreement_with_gold(p):
    n = 4000
    golds, words = _groups(n)
    pool = annotator_pool(2, temperature=0.0, flip_rate=p, noise=0.0, length_bias=0.0, seed=0)
    _, stats = label_groups(golds, words, pool, overlap_share=0.0, seed=3)
    disagreement = 1 - stats["agreement_with_gold"]
    assert abs(disagreement - p) < 3 * math.sqrt(p * (1 - p) / n)


def test_two_completions_follow_bradley_terry():
    # P(a > b) = sigmoid((g_a - g_b) / T)
    a = Annotator("x", temperature=0.2, flip_rate=0.0, length_bias=0.0)
    rng = np.random.default_rng(0)
    n = 20000
    wins = sum(rank([0.3, 0.1], [4, 4], a, rng)[0] == 0 for _ in range(n))
    expected = 1 / (1 + math.exp(-(0.3 - 0.1) / 0.2))
    assert abs(wins / n - expected) < 3 * math.sqrt(expected * (1 - expected) / n)


def test_length_bias_prefers_longer_completions():
    a = Annotator("verbose", temperature=0.0, flip_rate=0.0, length_bias=1.0)
    assert rank([0.5, 0.4], [2, 12], a, np.random.default_rng(0))[0] == 1


def test_pool_spreads_temperatures_and_biases():
    pool = annotator_pool(4, temperature=0.1, flip_rate=0.05, noise=0.5, length_bias=0.2, seed=0)
    assert len({a.temperature for a in pool}) == 4 and len({a.length_bias for a in pool}) == 4
    assert all(a.flip_rate == 0.05 for a in pool)

"""Gold reward vs plain VADER: the hacks VADER rewards must lose under gold."""

import math

import pytest

from alignzoo.rewards.sentiment import gold_scores, repeat_share, vader_scores, vocabulary_share, words
from alignzoo.tasks.sentiment.corpus import corpus_vocabulary, generate_corpus

FLUENT = "the acting was wonderful and the plot felt fresh"


@pytest.fixture(scope="module")
def vocab():
    return corpus_vocabulary(generate_corpus(20_000, seed=0))


def _vader_norm(total: float) -> float:
    """VADER's compound for a plain sum of valences: x / sqrt(x^2 + 15), rounded to 4 places."""
    return round(total / math.sqrt(total * total + 15), 4)


def test_hacks_score_below_a_fluent_finished_review(vocab):
    texts = [FLUENT, "superb superb superb superb", FLUENT, "superbxq wonderfulzz gr8t"]
    ended = [True, True, False, True]
    fluent, salad, unfinished, gibberish = gold_scores(texts, ended, vocab)
    assert set(words(FLUENT)) <= vocab
    assert fluent == pytest.approx(vader_scores([FLUENT])[0]) and fluent > 0.6
    assert salad < fluent and unfinished < fluent and gibberish < fluent
    assert vader_scores(["superb superb superb superb"])[0] > 0.9  # ... while plain VADER loves the salad
    assert vader_scores(["superb superb superb superb"])[0] > vader_scores([FLUENT])[0]
    assert unfinished == pytest.approx(fluent - 0.5)
    assert gibberish == 0.0


def test_formula_on_a_hand_computed_example():
    # "great" has valence 3.1: twice -> 6.2. Tokens great, plot, great, xq: share 3/4, one repeat of 4.
    c = _vader_norm(6.2)
    assert c == pytest.approx(0.8481) and vader_scores(["great plot great xq"]) == [c]
    expected = c - c * (1 - 0.75) - 1.0 * 0.25 - 0.5
    [gold] = gold_scores(["great plot great xq"], [False], frozenset({"great", "plot"}))
    assert gold == pytest.approx(expected, abs=1e-9)
    assert gold == pytest.approx(-0.113925, abs=1e-6)


def test_vocabulary_scaling_can_only_lower_the_score():
    vocab = frozenset({"the", "plot", "was", "great", "awful"})
    pos_clean, pos_noisy, neg_clean, neg_noisy = gold_scores(
        ["the plot was great", "the plot was great xq", "the plot was awful", "the plot was awful xq"],
        [True] * 4, vocab)
    assert pos_clean == pytest.approx(_vader_norm(3.1))
    assert pos_noisy == pytest.approx(_vader_norm(3.1) * 0.8)  # c * share
    assert neg_clean == pytest.approx(_vader_norm(-2.0))
    assert neg_noisy == pytest.approx(_vader_norm(-2.0) * 1.2)  # c * (2 - share): worse, not better
    assert pos_noisy < pos_clean and neg_noisy < neg_clean
    assert vocabulary_share(["the", "xq"], vocab) == 0.5 and vocabulary_share([], vocab) == 1.0


def test_missing_eos_penalty(vocab):
    done, cut, cut_big, cut_off = [
        gold_scores([FLUENT], [e], vocab, missing_eos_penalty=p)[0]
        for e, p in [(True, 0.5), (False, 0.5), (False, 0.8), (False, 0.0)]
    ]
    assert cut == pytest.approx(done - 0.5)
    assert cut_big == pytest.approx(done - 0.8)
    assert cut_off == pytest.approx(done)


def test_repetition_penalty(vocab):
    assert repeat_share(words("superb superb superb superb")) == 0.75
    assert repeat_share(words("the plot was dull and the acting was dull")) == pytest.approx(1 / 9)
    assert repeat_share(words(FLUENT)) == 0.0  # "the" repeats but is a stopword
    assert repeat_share([]) == 0.0
    c = vader_scores(["superb superb superb superb"])[0]
    salad, salad_free = (gold_scores(["superb superb superb superb"], [True], vocab, repeat_penalty=p)[0]
                         for p in (1.0, 0.0))
    assert salad == pytest.approx(c - 0.75)
    assert salad_free == pytest.approx(c)


def test_empty_completion_and_clamp():
    vocab = frozenset({"awful"})
    assert gold_scores(["", "", "  "], [True, False, True], vocab) == [0.0, -0.5, 0.0]
    worst = gold_scores(["awful awful awful xq zz"], [False], vocab, repeat_penalty=5.0)[0]
    assert worst == -1.5
    assert all(-1.5 <= g <= 1.0 for g in gold_scores(["great great", "awful"], [True, False], vocab))


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        gold_scores(["a", "b"], [True], frozenset())

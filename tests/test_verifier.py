"""The arithmetic verifier's rules (alignzoo/tasks/arithmetic/verifier.py, docs/tasks.md) against the failure modes
of answer checkers: extra text, several answers, broken golds, whitespace, signs, leading zeros, huge numbers,
look-alike digits, float and comma syntax, injected markers and long inputs; and the pass@k estimator."""

from __future__ import annotations

import random
import time
from math import comb

import pytest
import torch

from alignzoo.evaluators.verifiable import pass_at_k
from alignzoo.tasks.arithmetic.reward import VerifierReward
from alignzoo.tasks.arithmetic.verifier import (InvalidGoldError, extract_answer, format_score, parse_gold, render,
                                                verify)

HUGE = "9" * 300

#: (id, completion, gold, correctness, format)
CASES = [
    ("plain", "#### 579", 579, 1.0, 1.0),
    ("worked-solution-before", "123+456=579 #### 579", "579", 1.0, 1.0),
    ("wrong-answer", "123+456=579 #### 578", 579, 0.0, 1.0),
    ("no-marker", "123+456=579", 579, 0.0, 0.0),
    ("empty", "", 579, 0.0, 0.0),
    ("marker-without-number", "####", 5, 0.0, 0.0),
    ("marker-then-space-only", "####   ", 5, 0.0, 0.0),
    ("trailing-newline", "#### 5\n", 5, 1.0, 1.0),
    ("trailing-spaces-tabs", "#### 5 \t \r\n", 5, 1.0, 1.0),
    ("trailing-eos-text", "#### 5<|endoftext|>", 5, 1.0, 1.0),
    ("trailing-eos-twice", "#### 5 <|endoftext|><|endoftext|>\n", 5, 1.0, 1.0),
    ("no-space-after-marker", "####5", 5, 1.0, 1.0),
    ("tab-after-marker", "####\t5", 5, 1.0, 1.0),
    ("newline-after-marker", "####\n5", 5, 0.0, 0.0),
    ("extra-text-after", "#### 5 apples", 5, 0.0, 0.0),
    ("extra-sentence-after", "#### 5. I hope this helps!", 5, 0.0, 0.0),
    ("second-same-answer", "#### 5 #### 5", 5, 0.0, 0.0),
    ("second-different-answer", "#### 5 #### 6", 5, 0.0, 0.0),
    ("second-different-answer-gold-second", "#### 6 #### 5", 5, 0.0, 0.0),
    ("injected-marker-in-solution", "#### 1 wait, actually #### 5", 5, 0.0, 0.0),
    ("five-hashes", "##### 5", 5, 0.0, 0.0),  # "#" then the marker: "# 5" is not a number
    ("hashes-before-text", "# 12 is wrong, so #### 13", 13, 1.0, 1.0),
    ("negative", "#### -5", -5, 1.0, 1.0),
    ("negative-gold-positive-answer", "#### 5", -5, 0.0, 1.0),
    ("negative-answer-positive-gold", "#### -5", 5, 0.0, 1.0),
    ("space-in-sign", "#### - 5", -5, 0.0, 0.0),
    ("plus-sign", "#### +5", 5, 1.0, 1.0),
    ("plus-sign-gold", "#### 5", "+5", 1.0, 1.0),
    ("double-sign", "#### --5", 5, 0.0, 0.0),
    ("minus-zero", "#### -0", 0, 1.0, 1.0),
    ("leading-zeros", "#### 007", 7, 1.0, 1.0),
    ("leading-zeros-gold", "#### 7", "007", 1.0, 1.0),
    ("all-zeros", "#### 000", 0, 1.0, 1.0),
    ("negative-leading-zeros", "#### -007", -7, 1.0, 1.0),
    ("huge-exact", f"#### {HUGE}", HUGE, 1.0, 1.0),
    ("huge-off-by-one", f"#### {HUGE}8", HUGE + "9", 0.0, 1.0),
    ("huge-vs-float-rounding", f"#### {10 ** 28}", 10 ** 28 + 1, 0.0, 1.0),  # equal as floats
    ("huge-int-gold", f"#### {10 ** 400 + 1}", 10 ** 400 + 1, 1.0, 1.0),
    ("arabic-indic-digit", "#### ٣", 3, 0.0, 0.0),
    ("full-width-digits", "#### ５７９", 579, 0.0, 0.0),
    ("superscript-digit", "#### ²", 2, 0.0, 0.0),
    ("mixed-unicode-digit", "#### 5٣", 53, 0.0, 0.0),
    ("scientific", "#### 1e3", 1000, 0.0, 0.0),
    ("decimal", "#### 5.0", 5, 0.0, 0.0),
    ("decimal-point-only", "#### 5.", 5, 0.0, 0.0),
    ("comma-thousands", "#### 1,000", 1000, 0.0, 0.0),
    ("underscore", "#### 1_000", 1000, 0.0, 0.0),
    ("hex", "#### 0x10", 16, 0.0, 0.0),
    ("nbsp-before-number", "####\u00a05", 5, 0.0, 0.0),
    ("latex-boxed", "\\boxed{5}", 5, 0.0, 0.0),
]


@pytest.mark.parametrize("completion,gold,correct,fmt", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verify_and_format(completion, gold, correct, fmt):
    assert verify(completion, gold) == correct
    assert format_score(completion) == fmt


def test_the_cases_are_many_and_named_once():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("gold", ["", "abc", "1.5", "1e3", "1,000", "٣", "- 5", "5 apples", None, 5.0, True, [5]])
def test_an_unparseable_gold_raises_and_never_scores(gold):
    with pytest.raises(InvalidGoldError, match="is not an integer"):
        verify("#### 5", gold)


def test_parse_gold_is_canonical():
    assert [parse_gold(g) for g in (" 42 ", "-0", "+7", "-007", 0, -12)] == ["42", "0", "7", "-7", "0", "-12"]


def test_extract_answer_returns_the_canonical_answer_or_none():
    assert extract_answer("47+85=132 #### 0132") == "132"
    assert extract_answer("#### -0") == "0"
    assert extract_answer("#### 1 #### 2") is None
    assert extract_answer("no answer") is None


@pytest.mark.parametrize("text", [
    "#" * 200_000,  # a marker at every position
    "1" * 200_000 + "#### 5",  # a long worked solution
    "#### " + "1" * 200_000 + "x",  # a long number, then junk
    "#### " + "-" * 200_000,
    " " * 200_000 + "####" + " " * 200_000 + "5",
])
def test_long_adversarial_inputs_take_linear_time(text):
    start = time.perf_counter()
    verify(text, 5)
    format_score(text)
    assert time.perf_counter() - start < 0.2


def test_render_then_verify_over_ten_thousand_random_answers():
    """verify(render(a), a) == 1 and verify(render(a + 1), a) == 0 for small, negative and huge integers."""
    rng = random.Random(0)
    for i in range(10_000):
        digits = rng.choice((1, 2, 3, 6, 19, 20, 60, 300)) if i % 10 else 1000
        a = rng.randrange(10 ** digits) * rng.choice((1, -1))
        assert verify(render(a), a) == 1.0, a
        assert verify(render(a + 1), a) == 0.0, a
        assert verify(f"worked {a} {render(a)}\n", str(a)) == 1.0


def test_the_reward_checks_each_prompt_and_zeroes_unfinished_completions():
    reward = VerifierReward({"1+1=": "2", "2*3=": "6"}.__getitem__, format_weight=0.25)
    scores = reward.score(["1+1=", "2*3=", "1+1=", "2*3="], ["2 #### 2", "5 #### 5", "#### 2", "6"],
                          torch.tensor([True, True, False, True]))
    assert scores.tolist() == [1.25, 0.25, 0.0, 0.0]


def test_the_reward_without_prompts_names_the_labeler_to_use():
    from alignzoo.errors import AlignzooError

    with pytest.raises(AlignzooError, match="use labeler=verifier"):
        VerifierReward({}.__getitem__).score([], ["#### 2"], [True])


def _pass_at_k_by_enumeration(n: int, c: int, k: int) -> float:
    """The probability that a random k-subset of n samples (c of them correct) holds a correct one, by counting."""
    from itertools import combinations

    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 1, 1), (5, 2, 2), (6, 3, 4), (8, 1, 8), (8, 7, 3), (10, 2, 5)])
def test_pass_at_k_matches_counting_subsets(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_by_enumeration(n, c, k), abs=1e-12)


def test_pass_at_k_hand_computed():
    # n=16, c=2, k=8: 1 - C(14, 8) / C(16, 8) = 1 - 3003 / 12870 = 0.7666...
    assert pass_at_k(16, 2, 8) == pytest.approx(1 - 3003 / 12870)
    assert comb(14, 8) == 3003 and comb(16, 8) == 12870
    assert pass_at_k(16, 9, 8) == 1.0  # fewer than k wrong: every k-subset has a right one
    assert pass_at_k(16, 4, 1) == pytest.approx(4 / 16)  # pass@1 is the share right
    assert pass_at_k(200, 0, 8) == 0.0


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 1, 0), (4, 1, 5)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError, match="need 0 <= c <= n and 1 <= k <= n"):
        pass_at_k(n, c, k)

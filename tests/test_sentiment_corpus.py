"""The generated review corpus: determinism, speed, sentiment mix, splits and prompts."""

import time

import pytest

from alignzoo.rewards.sentiment import vader_scores
from alignzoo.tasks.sentiment import corpus as sc
from alignzoo.tasks.sentiment.corpus import corpus_vocabulary, generate_corpus, make_prompts, split_corpus


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus(20_000, seed=0)


def test_same_seed_same_corpus_and_different_seed_differs():
    a, b, c = generate_corpus(500, 3), generate_corpus(500, 3), generate_corpus(500, 4)
    assert a == b
    assert a != c
    assert generate_corpus(100, 3) == a[:100]  # a prefix does not depend on n


def test_global_random_state_is_untouched():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    generate_corpus(50, 0)
    assert random.random() == expected


def test_generates_20k_fast_lowercase_and_short():
    start = time.perf_counter()
    sentences = generate_corpus(20_000, seed=1)
    assert time.perf_counter() - start < 3.0
    assert len(sentences) == 20_000
    assert all(s == s.lower() and s.strip() == s for s in sentences)
    lengths = [len(s.split()) for s in sentences]
    assert min(lengths) >= 3 and 8 <= sum(lengths) / len(lengths) <= 16
    assert len(set(sentences)) > 0.9 * len(sentences)


def test_sentiment_is_mixed(corpus):
    scores = vader_scores(corpus[:3000])
    mean = sum(scores) / len(scores)
    assert -0.2 < mean < 0.4
    assert sum(s > 0 for s in scores) / len(scores) >= 0.25
    assert sum(s < 0 for s in scores) / len(scores) >= 0.25


def test_word_pools_have_the_right_vader_sign():
    lex = sc._lexicon()
    for (pos, polarity), (words, cum) in sc._pools().items():
        assert len(words) == len(cum) and list(cum) == sorted(cum)
        for word in words:
            if polarity == "pos":
                assert lex[word] >= 1.0, word
            elif polarity == "neg":
                assert lex[word] <= -1.0, word
            else:
                assert not set(word.split()) & lex.keys(), word


def test_common_review_words_dominate(corpus):
    counts = {}
    for sentence in corpus:
        for word in sentence.split():
            counts[word] = counts.get(word, 0) + 1
    hand = set(sc._HAND[("adj", "pos")].split("|")) | set(sc._HAND[("adj", "neg")].split("|"))
    lex = sc._lexicon()
    top_adjs = [w for w, _ in sorted(counts.items(), key=lambda kv: -kv[1]) if w in lex][:20]
    assert sum(w in hand for w in top_adjs) >= 12, top_adjs
    assert counts["great"] > 50 and counts["dull"] > 50


def test_corpus_vocabulary_strips_punctuation_and_case(corpus):
    assert corpus_vocabulary(["The plot, was GOOD!", "  ok ...  "]) == {"the", "plot", "was", "good", "ok"}
    vocab = corpus_vocabulary(corpus)
    assert {"the", "acting", "was", "wonderful", "plot", "felt", "fresh"} <= vocab
    assert 300 < len(vocab) < 3000


def test_split_is_disjoint_sized_and_deterministic(corpus):
    sizes = {"val": 1000, "feedback": 2500, "rl": 1000, "eval": 500}
    parts = split_corpus(corpus, seed=7, sizes=sizes)
    assert list(parts) == ["val", "feedback", "rl", "eval", "train"]
    assert {k: len(v) for k, v in parts.items()} == {**sizes, "train": len(corpus) - 5000}
    indexed = split_corpus(list(range(len(corpus))), seed=7, sizes=sizes)  # disjoint by position
    seen = [i for part in indexed.values() for i in part]
    assert sorted(seen) == list(range(len(corpus)))
    assert split_corpus(corpus, seed=7, sizes=sizes) == parts
    assert split_corpus(corpus, seed=8, sizes=sizes)["val"] != parts["val"]


def test_split_errors():
    with pytest.raises(ValueError, match="only 10"):
        split_corpus(["x"] * 10, seed=0, sizes={"val": 6, "eval": 5})
    with pytest.raises(ValueError, match="train"):
        split_corpus(["x"] * 10, seed=0, sizes={"train": 5})
    with pytest.raises(ValueError):
        split_corpus(["x"] * 10, seed=0, sizes={"val": -1})
    assert split_corpus(["x"] * 10, seed=0, sizes={"val": 10})["train"] == []


def test_prompts_are_strict_prefixes(corpus):
    sentences = corpus[:2000]
    prompts = make_prompts(sentences, seed=0)
    assert len(prompts) == len(sentences)
    lengths = set()
    for sentence, prompt in zip(sentences, prompts):
        k = len(prompt.split())
        lengths.add(k)
        assert 2 <= k <= 4 and k < len(sentence.split())
        assert sentence.startswith(prompt + " ")
    assert lengths == {2, 3, 4}
    assert make_prompts(sentences, seed=0) == prompts
    assert make_prompts(["a b c"], seed=0, min_words=5, max_words=6) == ["a b"]  # never the whole sentence
    with pytest.raises(ValueError):
        make_prompts(["word"], seed=0)
    with pytest.raises(ValueError):
        make_prompts(sentences, seed=0, min_words=3, max_words=2)

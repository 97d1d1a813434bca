"""Rewards for the ``sentiment`` task: plain VADER, and the "gold" preference of a simulated human.

Pure Python (no torch), so rewards can be scored, tested and reused anywhere.

Why gold is not plain VADER: VADER compound is easy to hack. Repeating one positive word saturates it
("superb" x4 scores 0.96), words it does not know are ignored rather than punished, and a completion cut
at the length cap is scored like a finished one, so "never stop" is free. A human who wants a positive
review also wants it fluent and finished, so gold multiplies VADER by how much of the text is real words,
and subtracts penalties for repetition and for a missing end of sequence. Plain VADER stays available
(``vader_scores``) as the hackable proxy.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

# Function words that legitimately recur in fluent text ("the acting ... and the plot"); repeating
# them is not a hack, so they never count as repeats.
STOPWORDS = frozenset(
    "the a an and or but was were is are be been it its i me my of with by to in on at for as that this "
    "there while although yet though not so".split()
)
GOLD_MIN, GOLD_MAX = -1.5, 1.0


@functools.lru_cache(maxsize=1)
def _analyzer():
    """One VADER analyzer per process: building it parses the lexicon files (~tens of ms)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: Sequence[str]) -> list[float]:
    """VADER compound score in [-1, 1] of each text (the hackable proxy reward)."""
    analyzer = _analyzer()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in texts]


def words(text: str) -> list[str]:
    """Word tokens as the corpus vocabulary counts them: whitespace split, lowercased, surrounding
    punctuation stripped, empty tokens dropped."""
    return [w for w in (tok.strip(string.punctuation) for tok in text.lower().split()) if w]


def vocabulary_share(tokens: Sequence[str], vocabulary: frozenset[str]) -> float:
    """Share of tokens that are corpus words; 1.0 for no tokens (nothing to penalise)."""
    return sum(t in vocabulary for t in tokens) / len(tokens) if tokens else 1.0


def repeat_share(tokens: Sequence[str]) -> float:
    """Share of all tokens that repeat an earlier non-stopword token of the same text (0.0 if empty).

    "superb superb superb superb" -> 3/4; "the plot was dull and the acting was dull" -> 1/9.
    """
    seen: set[str] = set()
    repeats = 0
    for tok in tokens:
        if tok in STOPWORDS:
            continue
        repeats += tok in seen
        seen.add(tok)
    return repeats / len(tokens) if tokens else 0.0


def gold_scores(
    completions: Sequence[str],
    ended: Sequence[bool],
    vocabulary: frozenset[str],
    *,
    missing_eos_penalty: float = 0.5,
    repeat_penalty: float = 1.0,
) -> list[float]:
    """The simulated human's true preference for each completion (text already cut at EOS).

    With ``c`` = VADER compound of the completion, ``s`` = share of its word tokens in ``vocabulary``
    (1 if it has none), ``r`` = ``repeat_share`` (0 if none)::

        gold = clamp(c - |c| * (1 - s) - repeat_penalty * r - missing_eos_penalty * (not ended), -1.5, 1)

    The vocabulary term equals ``c * s`` for c >= 0 and ``c * (2 - s)`` for c < 0: non-words shrink a
    positive score towards 0 and push a negative one further down, so they can only ever lower the score
    (plain ``c * s`` would reward adding gibberish to a negative text). Limits: a text with c = 0 gets no
    vocabulary penalty, so pure gibberish scores 0 (below any fluent positive review, above a negative
    one). An empty completion has c = 0, s = 1, r = 0, so it scores ``-missing_eos_penalty`` or 0.
    The bounds: c in [-1, 1]; the clamp keeps stacked penalties from dominating an average.
    """
    if len(completions) != len(ended):
        raise ValueError(f"got {len(completions)} completions but {len(ended)} ended flags")
    compounds = vader_scores(completions)
    out = []
    for text, done, c in zip(completions, ended, compounds):
        tokens = words(text)
        score = c - abs(c) * (1.0 - vocabulary_share(tokens, vocabulary))
        score -= repeat_penalty * repeat_share(tokens)
        if not done:
            score -= missing_eos_penalty
        out.append(min(GOLD_MAX, max(GOLD_MIN, score)))
    return out

"""What every critic shares: the judge math (pure functions) and judging with both orders and principles.

A critic implements one method, ``first_preferred(prompts, first, second, first_ended, second_ended, principle)
-> ndarray[N]``: its raw probability that the response shown first (position A) is better under one principle.
That may be position-biased; ``preferences`` removes first-order position bias by judging every pair in both
orders and averaging (Lee et al. 2023, docs/algorithms.md#constitutional-critics):

    p(a > b) = 1/2 [f(a, b) + 1 - f(b, a)]

so p(a > b) + p(b > a) = 1 exactly, p(a > a) = 1/2, and a judge that always prefers position A gives 1/2.
Principles are all averaged (weights of the constitution) or one is sampled per comparison (``principles``).
For K > 2 responses every pair is judged and the responses are ranked by their summed preference (Borda).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from alignzoo.critics.constitution import Constitution, Principle

PRINCIPLE_MODES = ("all", "sample")


# -- pure math ----------------------------------------------------------------------------------------------------

def option_probability(logp_a: np.ndarray, logp_b: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """p_A = exp(l_A / T) / (exp(l_A / T) + exp(l_B / T)) = sigmoid((l_A - l_B) / T), for option log-probs."""
    d = (np.asarray(logp_a, dtype=np.float64) - np.asarray(logp_b, dtype=np.float64)) / temperature
    return 1.0 / (1.0 + np.exp(-d))


def score_preference(score_a: np.ndarray, score_b: np.ndarray, temperature: float) -> np.ndarray:
    """Bradley-Terry on scores: sigmoid((s_a - s_b) / T); T = 0 gives hard labels (1, 0, or 1/2 for a tie)."""
    a, b = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    if temperature <= 0:
        return np.where(a > b, 1.0, np.where(a < b, 0.0, 0.5))
    return 1.0 / (1.0 + np.exp(-(a - b) / temperature))


def symmetric_preference(p_ab: np.ndarray, p_ba: np.ndarray) -> np.ndarray:
    """p(a > b) from the judge's first-position probabilities with a shown first (p_ab) and b shown first (p_ba)."""
    # 1/2 + (p_ab - p_ba) / 2: the same as 1/2 [p_ab + 1 - p_ba], and exactly 1/2 when p_ab == p_ba
    return 0.5 + 0.5 * (np.asarray(p_ab, dtype=np.float64) - np.asarray(p_ba, dtype=np.float64))


def borda_ranking(matrix: np.ndarray) -> list[int]:
    """Indices best first by summed preference sum_j P[i, j] (ties keep the lower index first)."""
    totals = np.asarray(matrix, dtype=np.float64).sum(axis=1)
    return [int(i) for i in np.argsort(-totals, kind="stable")]


# -- the critic interface -----------------------------------------------------------------------------------------

class Critic(Protocol):
    name: str
    constitution: Constitution
    principle_mode: str  # all | sample

    def first_preferred(self, prompts: list[str], first: list[str], second: list[str], first_ended: list[bool],
                        second_ended: list[bool], principle: Principle) -> np.ndarray:
        """Raw P(the response shown first is better) per comparison, under one principle."""


@dataclass
class Judgement:
    p: np.ndarray  # [N] p(a > b), order-averaged
    p_ab: np.ndarray  # [N] raw P(first wins) with a shown first
    p_ba: np.ndarray  # [N] raw P(first wins) with b shown first
    principle: list[str]  # the principle judged per comparison ("all" when averaged)

    @property
    def position_bias(self) -> float:
        """Mean raw probability that the response in position A wins (1/2: no position bias)."""
        return float(np.mean(np.concatenate([self.p_ab, self.p_ba]))) if len(self.p) else float("nan")


def preferences(critic: Critic, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                a_ended: Sequence[bool] | None = None, b_ended: Sequence[bool] | None = None, *,
                rng: np.random.Generator | None = None) -> Judgement:
    """p(a > b) per comparison: both orders judged and averaged, principles averaged or sampled."""
    n = len(prompts)
    a_ended = [True] * n if a_ended is None else [bool(x) for x in a_ended]
    b_ended = [True] * n if b_ended is None else [bool(x) for x in b_ended]
    principles = critic.constitution.principles
    weights = np.array([p.weight for p in principles], dtype=np.float64)
    p_ab, p_ba = np.zeros(n), np.zeros(n)
    if critic.principle_mode == "sample":
        rng = rng if rng is not None else np.random.default_rng(0)
        picks = rng.choice(len(principles), size=n, p=weights / weights.sum()) if n else np.zeros(0, dtype=int)
        groups = [(k, np.flatnonzero(picks == k), 1.0) for k in range(len(principles))]
        names = [principles[k].name for k in picks]
    else:
        groups = [(k, np.arange(n), weights[k] / weights.sum()) for k in range(len(principles))]
        names = ["all"] * n
    for k, idx, w in groups:
        if len(idx) == 0:
            continue
        sub = lambda xs: [xs[i] for i in idx]  # noqa: E731
        pr = [prompts[i] for i in idx]
        p_ab[idx] += w * critic.first_preferred(pr, sub(a), sub(b), sub(a_ended), sub(b_ended), principles[k])
        p_ba[idx] += w * critic.first_preferred(pr, sub(b), sub(a), sub(b_ended), sub(a_ended), principles[k])
    return Judgement(symmetric_preference(p_ab, p_ba), p_ab, p_ba, names)


def rank_groups(critic: Critic, prompts: Sequence[str], groups: Sequence[Sequence[str]],
                ended: Sequence[Sequence[bool]], *, rng: np.random.Generator | None = None
                ) -> tuple[list[list[int]], list[np.ndarray], Judgement]:
    """Judge every pair within each group of K >= 2 responses; returns rankings (best first), the K x K preference
    matrices (P[i, j] = p(i > j), P[i, i] = 1/2) and the pooled judgement of all pairs."""
    rows: list[tuple[int, int, int]] = []  # (group, i, j) with i < j
    for g, texts in enumerate(groups):
        rows += [(g, i, j) for i in range(len(texts)) for j in range(i + 1, len(texts))]
    judged = preferences(critic, [prompts[g] for g, _, _ in rows], [groups[g][i] for g, i, _ in rows],
                         [groups[g][j] for g, _, j in rows], [ended[g][i] for g, i, _ in rows],
                         [ended[g][j] for g, _, j in rows], rng=rng)
    matrices = [np.full((len(t), len(t)), 0.5) for t in groups]
    for (g, i, j), p in zip(rows, judged.p):
        matrices[g][i, j], matrices[g][j, i] = p, 1.0 - p
    return [borda_ranking(m) for m in matrices], matrices, judged


def critic_description(critic: Any) -> dict[str, Any]:
    """What identifies a critic's labels (for stage keys and records)."""
    return {"critic": critic.name, "constitution": critic.constitution.as_dict(), "principles": critic.principle_mode,
            **getattr(critic, "settings", {})}

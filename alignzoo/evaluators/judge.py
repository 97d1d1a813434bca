"""``judge_win_rate``: the critic doubles as an evaluator. An AlpacaEval-style win rate of the policy against the
reference policy, judged by a constitutional critic (docs/algorithms.md#judge-win-rate).

The policy and the reference answer the same held-out prompts with the same seed; the critic judges each pair in
both orders and averages (``alignzoo.critics.base.preferences``), so the judge's position bias cancels. A pair is a
win when p(policy > reference) > 1/2, a tie at exactly 1/2: win rate = (wins + ties / 2) / N. Also reported: the
mean soft preference, and the critic's position bias (its mean raw probability for position A; 1/2 is unbiased).
The critic is the run's (``critic=...``), else the rule critic with the sentiment constitution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alignzoo.hookspecs import hookimpl


def judged_win_rate(p: np.ndarray) -> float:
    """(wins + ties / 2) / N for order-averaged preferences p(policy > reference)."""
    p = np.asarray(p, dtype=np.float64)
    return float(np.mean(np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5)))) if len(p) else float("nan")


@dataclass
class JudgeWinRateConfig:
    name: str = "judge_win_rate"


class JudgeWinRateEvaluator:
    """Win rate against the reference policy under a critic and its constitution, both orders judged."""

    NEEDS_REFERENCE = True  # compares with the reference policy: skipped when the algorithm builds none

    def __init__(self, cfg: JudgeWinRateConfig, ctx: Any):
        from alignzoo.critics import build_critic

        self.critic = build_critic(ctx, default=True)

    def evaluate(self, samples: Any) -> dict[str, float]:
        from alignzoo.critics.base import preferences

        ref = samples.reference_samples
        judged = preferences(self.critic, samples.prompts, samples.completions, ref.completions,
                             samples.ended.tolist(), ref.ended.tolist(), rng=np.random.default_rng(samples.seed))
        return {"judge_win_rate": judged_win_rate(judged.p), "judge_preference": float(np.mean(judged.p)),
                "judge_position_bias": judged.position_bias}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_evaluators(register):
    register("judge_win_rate", JudgeWinRateEvaluator, JudgeWinRateConfig,
             description="win rate against the reference under a critic and constitution (both orders judged)")

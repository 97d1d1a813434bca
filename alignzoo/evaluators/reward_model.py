"""Evaluators of the reward model itself: held-out pairwise accuracy and correlation with the gold reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from alignzoo.hookspecs import hookimpl


def _quality(ctx: Any) -> Optional[dict]:
    return getattr(ctx.reward, "quality", None) if ctx.reward is not None else None


@dataclass
class RMAccuracyConfig:
    name: str = "rm_accuracy"


class RMAccuracyEvaluator:
    """The run's learned reward model's pairwise accuracy on held-out feedback (strict >; against the gold order
    when the task has one)."""

    def __init__(self, cfg: RMAccuracyConfig, ctx: Any):
        self.quality = _quality(ctx)

    def skip_reason(self, ctx: Any) -> Optional[str]:
        return None if self.quality else "evaluator `rm_accuracy` skipped: the run has no learned reward model"

    def evaluate(self, samples: Any) -> dict[str, float]:
        return {"rm_accuracy": float(self.quality["accuracy"])}


@dataclass
class RMGoldCorrelationConfig:
    name: str = "rm_gold_correlation"


class RMGoldCorrelationEvaluator:
    """Spearman and Pearson correlation between the reward model and the gold reward: on held-out feedback
    completions (fixed) and on the policy's current samples (falls when the policy exploits the reward model)."""

    def __init__(self, cfg: RMGoldCorrelationConfig, ctx: Any):
        self.reward = ctx.reward
        self.gold = getattr(ctx.task, "gold", None)
        self.quality = _quality(ctx)

    def skip_reason(self, ctx: Any) -> Optional[str]:
        if self.reward is None or self.gold is None:
            return "evaluator `rm_gold_correlation` skipped: it needs a reward (reward=...) and a task with a gold reward"
        return None

    def evaluate(self, samples: Any) -> dict[str, float]:
        from alignzoo.stages.reward_model import pearson, spearman

        rm = self.reward.score(samples.prompts, samples.completions, samples.ended).cpu().numpy()
        gold = self.gold.score(samples.prompts, samples.completions, samples.ended).cpu().numpy()
        out = {"rm_gold_spearman": spearman(rm, gold), "rm_gold_pearson": pearson(rm, gold)}
        if self.quality and "gold_spearman" in self.quality:
            out["rm_gold_spearman_heldout"] = float(self.quality["gold_spearman"])
        return {k: float(v) if not np.isnan(v) else 0.0 for k, v in out.items()}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_evaluators(register):
    register("rm_accuracy", RMAccuracyEvaluator, RMAccuracyConfig)
    register("rm_gold_correlation", RMGoldCorrelationEvaluator, RMGoldCorrelationConfig)

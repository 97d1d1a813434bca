"""Evaluators against the task's gold reward (the simulated human the policy never sees directly)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from alignzoo.hookspecs import hookimpl


PER_PROMPT_DIGITS = 6  # per-prompt scores are rounded so a record stays small


def prompt_id(prompt: str) -> str:
    """A prompt's stable id: the first 12 hex digits of the sha1 of its text (the same in every run)."""
    return hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:12]


def per_prompt_scores(prompts: Sequence[str], scores: Sequence[float]) -> dict[str, float]:
    """{prompt id: mean of that prompt's completions' scores}, rounded: what the board pairs rows on."""
    by_prompt: dict[str, list[float]] = defaultdict(list)
    for prompt, score in zip(prompts, scores):
        by_prompt[prompt_id(prompt)].append(float(score))
    return {k: round(sum(v) / len(v), PER_PROMPT_DIGITS) for k, v in by_prompt.items()}


def _skip(ctx: Any) -> Optional[str]:
    if getattr(ctx.task, "gold", None) is None:
        return f"gold evaluators skipped: task={ctx.task.name} has no gold reward"
    return None


@dataclass
class GoldRewardConfig:
    name: str = "gold_reward"


class GoldRewardEvaluator:
    """Mean and std of the gold reward of the policy's completions on eval prompts; the mean is also scored on the
    task's validation prompts (``val/gold_reward``, ``alignzoo.evaluators.validation``): what the board picks
    checkpoints by."""

    validation_metrics = ("gold_reward",)

    def __init__(self, cfg: GoldRewardConfig, ctx: Any):
        self.gold = getattr(ctx.task, "gold", None)
        self.per_prompt: dict[str, dict[str, float]] = {}  # the last evaluation's {"gold_reward": {id: score}}

    def skip_reason(self, ctx: Any) -> Optional[str]:
        return _skip(ctx)

    def evaluate(self, samples: Any) -> dict[str, float]:
        scores = self.gold.score(samples.prompts, samples.completions, samples.ended)
        self.per_prompt = {"gold_reward": per_prompt_scores(samples.prompts, scores.tolist())}
        return {"gold_reward": float(scores.mean()), "gold_reward_std": float(scores.std()) if len(scores) > 1 else 0.0}


def win_rate(policy_scores: torch.Tensor, reference_scores: torch.Tensor) -> float:
    """Share of prompts where the policy's score beats the reference's; ties count half."""
    wins = (policy_scores > reference_scores).float() + 0.5 * (policy_scores == reference_scores).float()
    return float(wins.mean())


@dataclass
class WinRateConfig:
    name: str = "win_rate"


class WinRateEvaluator:
    """Win rate of the policy against the reference policy under the gold reward, prompt by prompt (the
    reference is sampled with the same seed on the same prompts)."""

    NEEDS_REFERENCE = True  # compares with the reference policy: skipped when the algorithm builds none

    def __init__(self, cfg: WinRateConfig, ctx: Any):
        self.gold = getattr(ctx.task, "gold", None)

    def skip_reason(self, ctx: Any) -> Optional[str]:
        return _skip(ctx)

    def evaluate(self, samples: Any) -> dict[str, float]:
        ref = samples.reference_samples
        mine = self.gold.score(samples.prompts, samples.completions, samples.ended)
        theirs = self.gold.score(ref.prompts, ref.completions, ref.ended)
        return {"win_rate": win_rate(mine, theirs), "gold_reward_vs_reference": float((mine - theirs).mean())}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_evaluators(register):
    register("gold_reward", GoldRewardEvaluator, GoldRewardConfig)
    register("win_rate", WinRateEvaluator, WinRateConfig)

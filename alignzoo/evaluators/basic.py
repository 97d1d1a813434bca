"""Evaluators every task gets: ``kl``, ``length``, ``distinct`` and ``reward``.

An evaluator is built from its config and the run context and has ``evaluate(samples) -> {metric: value}``;
metric names come back prefixed ``eval/``. ``skip_reason(ctx)`` says why it does not apply (recorded as a note).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

import torch

from alignzoo.hookspecs import hookimpl
from alignzoo.ops import KL_ESTIMATORS, kl_penalty


# -- kl --------------------------------------------------------------------------------------------------------

@dataclass
class KLConfig:
    name: str = "kl"
    estimator: str = "k1"  # per-token estimator summed over the sequence: k1 | k2 | k3

    def problems(self) -> list[str]:
        return [] if self.estimator in KL_ESTIMATORS else [f"estimator must be one of {', '.join(KL_ESTIMATORS)}"]


class KLEvaluator:
    """Sequence KL(pi_T || ref) in nats on the policy's own samples, with its standard error over prompts.

    pi_T is the distribution the evaluation sampled from (the policy at ``eval.temperature``, after its decoding
    perturbation if any), ref the reference model's own distribution (T = 1). Per sequence, the per-token
    estimator of log pi_T(y_t) - log ref(y_t) is summed over the completion; ``kl`` is its mean over prompts
    (one sample each), ``kl_se`` the standard error of that mean (std / sqrt(n)), ``kl_<estimator>_std`` the
    per-sequence spread. Both distributions are the ``eval.max_new_tokens``-capped ones sampling produces."""

    NEEDS_REFERENCE = True  # compares with the reference policy: skipped when the algorithm builds none

    def __init__(self, cfg: KLConfig, ctx: Any):
        self.cfg = cfg

    def evaluate(self, samples: Any) -> dict[str, float]:
        spread = f"kl_{self.cfg.estimator}_std"
        analytic = samples.policy.info.get("analytic_kl")
        if analytic is not None:  # best-of-N: the closed form, not a sampled estimate of the base model's KL
            return {"kl": float(analytic), "kl_se": 0.0, spread: 0.0}
        totals = []
        for lp, ref, mask in zip(samples.policy_token_logprobs, samples.ref_token_logprobs, samples.masks):
            per_token = kl_penalty(lp, ref, estimator=self.cfg.estimator)
            totals.append(torch.where(mask.bool(), per_token, torch.zeros_like(per_token)).sum(-1))
        seq = torch.cat(totals)
        std = float(seq.std()) if len(seq) > 1 else 0.0
        return {"kl": float(seq.mean()), "kl_se": std / len(seq) ** 0.5, spread: std}


# -- length ----------------------------------------------------------------------------------------------------

@dataclass
class LengthConfig:
    name: str = "length"


class LengthEvaluator:
    """Mean completion length in tokens (EOS included), share ending with EOS, share cut at max_new_tokens."""

    def __init__(self, cfg: LengthConfig, ctx: Any):
        pass

    def evaluate(self, samples: Any) -> dict[str, float]:
        ended = samples.ended.float()
        return {"length": float(samples.lengths.mean()), "eos_share": float(ended.mean()),
                "truncated_share": float(1 - ended.mean())}


# -- distinct --------------------------------------------------------------------------------------------------

WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    """Corpus-level distinct-n (Li et al. 2016): unique n-grams / total n-grams over all texts (word level)."""
    grams = [tuple(w[i:i + n]) for w in map(words, texts) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: list[str]) -> float:
    """Share of words that repeat an earlier word of the same text (0: no repeats), over all texts."""
    repeated = total = 0
    for w in map(words, texts):
        seen: set[str] = set()
        for x in w:
            repeated += x in seen
            seen.add(x)
        total += len(w)
    return repeated / total if total else 0.0


@dataclass
class DistinctConfig:
    name: str = "distinct"


class DistinctEvaluator:
    """Diversity: corpus-level distinct-1 and distinct-2 over words, and the within-completion repetition rate."""

    def __init__(self, cfg: DistinctConfig, ctx: Any):
        pass

    def evaluate(self, samples: Any) -> dict[str, float]:
        texts = samples.completions
        return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
                "repetition": repetition_rate(texts)}


# -- reward ----------------------------------------------------------------------------------------------------

@dataclass
class RewardEvalConfig:
    name: str = "reward"
    reward: Optional[str] = None  # a registered reward name; None: the run's `reward` (logged as proxy_reward)


class RewardEvaluator:
    """Mean score of a named reward on the policy's completions (``eval/proxy_reward`` for the run's reward,
    ``eval/reward_<name>`` for another)."""

    def __init__(self, cfg: RewardEvalConfig, ctx: Any):
        self.cfg = cfg
        if cfg.reward is None:
            self.reward, self.key = ctx.reward, "proxy_reward"
        else:
            self.reward, self.key = ctx.build_reward(cfg.reward), f"reward_{cfg.reward}"

    def skip_reason(self, ctx: Any) -> Optional[str]:
        if self.reward is None:
            return "evaluator `reward` skipped: the run has no `reward` (set reward=<name> or evaluator.reward.reward)"
        return None

    def evaluate(self, samples: Any) -> dict[str, float]:
        scores = self.reward.score(samples.prompts, samples.completions, samples.ended)
        scores = torch.as_tensor(scores, dtype=torch.float32)
        return {self.key: float(scores.mean()), f"{self.key}_std": float(scores.std()) if len(scores) > 1 else 0.0}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_evaluators(register):
    register("kl", KLEvaluator, KLConfig)
    register("length", LengthEvaluator, LengthConfig)
    register("distinct", DistinctEvaluator, DistinctConfig)
    register("reward", RewardEvaluator, RewardEvalConfig)

"""Evaluators of the verifiable track (tasks with checkable answers: ``task=arithmetic``).

The metric keys (``eval/<key>`` in record.json) are stable; the board's verifiable track reads them:

- ``accuracy``: pass@1 at the eval sampling settings (share of eval completions whose final answer is right; a
  completion cut at ``eval.max_new_tokens`` is wrong);
- ``pass_at_k`` -> ``pass_at_<k>`` (``pass_at_8`` by default): the unbiased estimator of Chen et al. (2021),
  1 - C(n-c, k) / C(n, k) per prompt from ``n`` samples of which ``c`` are right, averaged over prompts;
- ``format_rate``: share of completions with an answer in the ``#### <integer>`` format (right or wrong);
- ``format_hack_rate``: share with the right format and a wrong answer, the over-optimisation signal of a
  format-rewarding verifier;
- ``length_generalisation`` -> ``length_gen_accuracy``: accuracy on the split with longer operands than training.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Any, Optional

from alignzoo.evaluators.gold import per_prompt_scores
from alignzoo.hookspecs import hookimpl


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimate from ``n`` samples with ``c`` correct: 1 - C(n-c, k) / C(n, k) (exact integer
    binomials, so no overflow or rounding for any n)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n (got n={n}, c={c}, k={k})")
    return 1.0 - comb(n - c, k) / comb(n, k)


def _checks(ctx: Any, samples: Any) -> tuple[list[float], list[float]]:
    """Per completion: correctness (0 when it never ended) and format."""
    from alignzoo.tasks.arithmetic.verifier import format_score

    correct = ctx.task.gold.score(samples.prompts, samples.completions, samples.ended).tolist()
    fmt = [format_score(c) if e else 0.0 for c, e in zip(samples.completions, samples.ended.tolist())]
    return correct, fmt


class _Verifiable:
    """Shared by the evaluators below: the run context, and why they skip tasks without checkable answers."""

    def __init__(self, cfg: Any, ctx: Any):
        self.cfg, self.ctx = cfg, ctx

    def skip_reason(self, ctx: Any) -> Optional[str]:
        if getattr(ctx.task, "answer_for", None) is None:
            return (f"evaluator `{self.cfg.name}` skipped: task={ctx.task.name} has no checkable answers "
                    "(task=arithmetic has)")
        return None


@dataclass
class AccuracyConfig:
    name: str = "accuracy"


class AccuracyEvaluator(_Verifiable):
    """pass@1: the share of eval completions whose final answer is right."""

    validation_metrics = ("accuracy",)  # also scored on the task's validation prompts (val/accuracy)

    def evaluate(self, samples: Any) -> dict[str, float]:
        correct, _ = _checks(self.ctx, samples)
        self.per_prompt = {"accuracy": per_prompt_scores(samples.prompts, correct)}  # what the board pairs rows on
        return {"accuracy": sum(correct) / len(correct)}


@dataclass
class FormatRateConfig:
    name: str = "format_rate"


class FormatRateEvaluator(_Verifiable):
    """The share of eval completions that end with an answer in the documented format."""

    def evaluate(self, samples: Any) -> dict[str, float]:
        _, fmt = _checks(self.ctx, samples)
        return {"format_rate": sum(fmt) / len(fmt)}


@dataclass
class FormatHackRateConfig:
    name: str = "format_hack_rate"


class FormatHackRateEvaluator(_Verifiable):
    """The share of eval completions in the right format with a wrong answer."""

    def evaluate(self, samples: Any) -> dict[str, float]:
        correct, fmt = _checks(self.ctx, samples)
        return {"format_hack_rate": sum(f * (1 - c) for c, f in zip(correct, fmt)) / len(fmt)}


@dataclass
class PassAtKConfig:
    name: str = "pass_at_k"
    k: int = 8  # the metric is eval/pass_at_<k>
    n: int = 16  # samples per prompt (n >= k; more: lower variance)
    prompts: int = 32  # the first eval prompts, each sampled n times

    def problems(self) -> list[str]:
        if not 1 <= self.k <= self.n or self.prompts < 1:
            return [f"k={self.k} must be in 1..n (n={self.n} samples per prompt) and prompts >= 1 (got "
                    f"{self.prompts}); e.g. evaluator.pass_at_k.n=16"]
        return []


class PassAtKEvaluator(_Verifiable):
    """pass@k over ``n`` samples for each of the first ``prompts`` eval prompts (its own draw, the eval seed)."""

    def evaluate(self, samples: Any) -> dict[str, float]:
        from alignzoo.evaluators.samples import EvalSamples

        cfg, prompts = self.cfg, samples.prompts[:self.cfg.prompts]
        draw = EvalSamples.draw(samples.policy, samples.reference, [p for p in prompts for _ in range(cfg.n)],
                                max_new_tokens=samples.max_new_tokens, temperature=samples.temperature,
                                seed=samples.seed + 1, batch_size=samples.batch_size)
        correct, _ = _checks(self.ctx, draw)
        per_prompt = [pass_at_k(cfg.n, int(sum(correct[i * cfg.n:(i + 1) * cfg.n])), cfg.k)
                      for i in range(len(prompts))]
        return {f"pass_at_{cfg.k}": sum(per_prompt) / len(per_prompt)}


@dataclass
class LengthGeneralisationConfig:
    name: str = "length_generalisation"
    prompts: int = 100  # prompts of the length-generalisation split


class LengthGeneralisationEvaluator(_Verifiable):
    """Accuracy on problems with longer operands than any in training (``task.length_prompts``)."""

    def skip_reason(self, ctx: Any) -> Optional[str]:
        if getattr(ctx.task, "length_prompts", None) is None:
            return f"evaluator `{self.cfg.name}` skipped: task={ctx.task.name} has no length-generalisation split"
        return super().skip_reason(ctx)

    def evaluate(self, samples: Any) -> dict[str, float]:
        from alignzoo.evaluators.samples import EvalSamples

        prompts = self.ctx.task.length_prompts(self.cfg.prompts)
        # the longer answers need a few more tokens than the eval budget gives the training lengths
        extra = 4 * getattr(self.ctx.task.cfg, "length_extra_digits", 1)
        room = samples.policy.max_length - max(len(p) for p in prompts) - 1  # one token per character, plus BOS
        tokens = max(samples.max_new_tokens, min(samples.max_new_tokens + extra, room))
        draw = EvalSamples.draw(samples.policy, samples.reference, prompts, max_new_tokens=tokens,
                                temperature=samples.temperature,
                                seed=samples.seed, batch_size=samples.batch_size)
        correct, _ = _checks(self.ctx, draw)
        return {"length_gen_accuracy": sum(correct) / len(correct)}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_evaluators(register):
    register("accuracy", AccuracyEvaluator, AccuracyConfig)
    register("format_rate", FormatRateEvaluator, FormatRateConfig)
    register("format_hack_rate", FormatHackRateEvaluator, FormatHackRateConfig)
    register("pass_at_k", PassAtKEvaluator, PassAtKConfig)
    register("length_generalisation", LengthGeneralisationEvaluator, LengthGeneralisationConfig)

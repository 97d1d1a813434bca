"""The samples every evaluator reads: completions of the current policy on held-out prompts, sampled once per
evaluation from a seeded generator, with lazily computed log-probs and reference samples (paired: the reference
is sampled with the same seed, so a policy-minus-reference difference has little sampling noise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from alignzoo import rollout as ro


@dataclass
class EvalSamples:
    policy: Any
    reference: Any
    prompts: list[str]
    max_new_tokens: int
    temperature: float
    seed: int
    batch_size: int = 64
    _rollouts: list = field(default_factory=list, repr=False)

    @classmethod
    def draw(cls, policy: Any, reference: Any, prompts: list[str], *, max_new_tokens: int, temperature: float,
             seed: int, batch_size: int = 64) -> "EvalSamples":
        s = cls(policy, reference, prompts, max_new_tokens, temperature, seed, batch_size)
        s._rollouts = ro.sample(policy, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                                batch_size=batch_size, seed=seed)
        return s

    @cached_property
    def completions(self) -> list[str]:
        return [t for r in self._rollouts for t in r.texts(self.policy.tokenizer)]

    @cached_property
    def ended(self) -> torch.Tensor:
        return torch.cat([r.ended for r in self._rollouts]).cpu()

    @cached_property
    def lengths(self) -> torch.Tensor:
        return torch.cat([r.lengths for r in self._rollouts]).cpu().float()

    def _token_logprobs(self, model: Any, temperature: float = 1.0) -> list[torch.Tensor]:
        with torch.no_grad():
            return [ro.completion_logprobs(model, r, temperature=temperature) for r in self._rollouts]

    @cached_property
    def policy_token_logprobs(self) -> list[torch.Tensor]:
        """Log-probs of the samples under the distribution they were drawn from: the policy at ``temperature``."""
        if getattr(self.policy, "adjust_logits", None) is not None:
            # a perturbed decoding (ILQL) is not the model's own distribution: use the sampler's log-probs
            return [r.logprobs for r in self._rollouts]
        return self._token_logprobs(self.policy.model, self.temperature)

    @cached_property
    def ref_token_logprobs(self) -> list[torch.Tensor]:
        return self._token_logprobs(self.reference.model)

    @property
    def masks(self) -> list[torch.Tensor]:
        return [r.completion_mask for r in self._rollouts]

    @cached_property
    def reference_samples(self) -> "EvalSamples":
        """The reference policy's completions on the same prompts with the same seed."""
        return EvalSamples.draw(self.reference, self.reference, self.prompts, max_new_tokens=self.max_new_tokens,
                                temperature=self.temperature, seed=self.seed, batch_size=self.batch_size)

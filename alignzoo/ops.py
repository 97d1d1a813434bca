"""Pure tensor helpers shared by algorithms and evaluators.

Conventions: ``[B, T]`` tensors are batch x time; ``mask`` is 1 on positions that count and 0 elsewhere
(prompt, padding). Nothing here keeps state or touches a model.
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """log p(labels[b, t]) under ``logits[b, t]``: ``[B, T, V] x [B, T] -> [B, T]``.

    Gathers the label's logit and subtracts the logsumexp instead of materialising a full log_softmax: the same
    value with one fewer ``[B, T, V]`` tensor.
    """
    picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def sequence_logprobs(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Sum of log p(labels) over the masked (completion) tokens: ``-> Tensor[B]``.

    ``logits[b, t]`` is the distribution that predicts ``labels[b, t]`` (the caller has already shifted by one:
    ``logits = model(ids).logits[:, :-1]``, ``labels = ids[:, 1:]``). Positions with ``mask == 0`` contribute
    exactly nothing, whatever their logits or labels are.
    """
    per_token = token_logprobs(logits, labels)
    return torch.where(mask.bool(), per_token, torch.zeros_like(per_token)).sum(-1)


def masked_sum(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    masked = torch.where(mask.bool(), values, torch.zeros_like(values))
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean over positions where ``mask`` is 1 (over everything, or along ``dim``); 0 where the mask is empty."""
    total = masked_sum(values, mask, dim)
    count = mask.sum() if dim is None else mask.sum(dim)
    return total / count.clamp(min=1)


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, *, estimator: str = "k1") -> Tensor:
    """Per-token KL estimate from sampled-token log-probs of the policy and the reference (Schulman's k1/k2/k3).

    With log r = ref - policy: k1 = -log r (unbiased, can be negative), k2 = (log r)^2 / 2 (biased, >= 0),
    k3 = (r - 1) - log r (unbiased, >= 0). All are exactly 0 where the two log-probs are equal.
    """
    try:
        return KL_ESTIMATORS[estimator](logprobs - ref_logprobs)
    except KeyError:
        raise ValueError(f"unknown KL estimator {estimator!r}; use one of {', '.join(KL_ESTIMATORS)}") from None


KL_ESTIMATORS = {
    "k1": lambda d: d,
    "k2": lambda d: 0.5 * d ** 2,
    "k3": lambda d: torch.expm1(-d) + d,
}

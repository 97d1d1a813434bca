"""Pure tensor helpers shared by algorithms and evaluators.

Conventions: ``[B, T]`` tensors are batch x time; ``mask`` is 1 on positions that count and 0 elsewhere
(prompt, padding). Nothing here keeps state or touches a model.
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_logprobs(logits: Tensor, labels: Tensor, *, logz: Tensor | None = None) -> Tensor:
    """log p(labels[b, t]) under ``logits[b, t]``: ``[B, T, V] x [B, T] -> [B, T]``.

    Gathers the label's logit and subtracts the logsumexp instead of materialising a full log_softmax: the same
    value with one fewer ``[B, T, V]`` tensor. ``logz``: ``logsumexp(logits, -1)`` when the caller already has it.
    """
    picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - (torch.logsumexp(logits, dim=-1) if logz is None else logz)


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


def masked_var(values: Tensor, mask: Tensor, *, unbiased: bool = True) -> Tensor:
    mean = masked_mean(values, mask)
    count = mask.sum()
    var = masked_sum((values - mean) ** 2, mask) / count.clamp(min=1)
    if unbiased and count > 1:
        var = var * count / (count - 1)  # Bessel's correction, as TRL's masked_var
    return var


def masked_whiten(values: Tensor, mask: Tensor, *, shift_mean: bool = True) -> Tensor:
    """(x - mean) / sqrt(var + 1e-8) over the masked positions (unbiased variance); ``shift_mean=False`` keeps the
    mean. Masked positions come back as 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def gae(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation over ``[B, T]`` per-token rewards and values -> (advantages, returns).

    delta_t = r_t + gamma V_{t+1} - V_t;  A_t = delta_t + gamma lam A_{t+1};  R_t = A_t + V_t.
    ``mask`` marks each sequence's steps (a contiguous prefix); the step after a sequence's last unmasked token is
    terminal (V = 0), and whatever rewards or values stand at masked positions never reach the result.
    """
    m = mask.to(values.dtype)
    r = rewards * m
    v = values * m
    advantages = torch.zeros_like(v)
    last = torch.zeros_like(v[:, 0])
    steps = v.size(1)
    for t in reversed(range(steps)):
        next_v = v[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        next_m = m[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = r[:, t] + gamma * next_v * next_m - v[:, t]
        last = delta + gamma * lam * last * next_m
        advantages[:, t] = last
    advantages = advantages * m
    return advantages, (advantages + v) * m

"""Pure tensor helpers shared by algorithms and evaluators.

Conventions: ``[B, T]`` tensors are batch x time; ``mask`` is 1 on positions that count and 0 elsewhere
(prompt, padding). Nothing here keeps state or touches a model. Every batch of token-id lists becomes tensors
through ``right_pad`` / ``left_pad`` / ``pad_completions``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

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


# -- padding ---------------------------------------------------------------------------------------------------

def _pad(sequences: list[list[int]], pad_id: int, *, left: bool, min_len: int, device: Any) -> tuple[Tensor, Tensor]:
    width = max(min_len, max((len(s) for s in sequences), default=0))
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            cols = slice(width - len(s), width) if left else slice(0, len(s))
            ids[i, cols] = torch.tensor(s, dtype=torch.long)
            mask[i, cols] = 1
    # built on the CPU and moved once: one copy per batch instead of one per row
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def right_pad(sequences: list[list[int]], pad_id: int, *, max_len: Optional[int] = None, min_len: int = 0,
              device: Any = None) -> tuple[Tensor, Tensor]:
    """Token-id lists -> ``(ids [B, T], mask [B, T])``, both int64: row ``b`` holds ``sequences[b]`` from column 0,
    then ``pad_id``; ``mask`` is 1 on the real tokens. T is the longest sequence (at least ``min_len``: a forward
    needs one column even when every sequence is empty). ``max_len`` keeps each sequence's first ``max_len`` tokens
    (training rows: the prompt's start matters). Built on the CPU; ``device`` moves the result there.

    Right padding keeps every real token at its default position id, so training forwards need no position ids.
    """
    if max_len is not None:
        sequences = [s[:max_len] for s in sequences]
    return _pad(sequences, pad_id, left=False, min_len=min_len, device=device)


def left_pad(sequences: list[list[int]], pad_id: int, *, max_len: Optional[int] = None, min_len: int = 0,
             device: Any = None) -> tuple[Tensor, Tensor]:
    """Like ``right_pad``, but each row ends at the last column (``pad_id`` first): the layout for prompts to be
    continued, where every row's next token goes in the same column. ``max_len`` keeps each sequence's *last*
    ``max_len`` tokens (the end of a prompt is what the completion continues). Pass ``rollout.position_ids(mask)``
    to a forward so that padding does not shift positions."""
    if max_len is not None:
        sequences = [s[-max_len:] if max_len > 0 else [] for s in sequences]
    return _pad(sequences, pad_id, left=True, min_len=min_len, device=device)


def pad_completions(prompts: list[list[int]], completions: list[list[int]], pad_id: int, *,
                    max_len: Optional[int] = None, device: Any = None) -> tuple[Tensor, Tensor, Tensor]:
    """Right-padded ``prompt + completion`` rows -> ``(ids [B, T], attention_mask [B, T], completion_mask [B, T])``,
    all int64. ``completion_mask`` is 1 on the completion's tokens (of ``ids``; a loss over next-token labels
    ``ids[:, 1:]`` takes ``completion_mask[:, 1:]``). ``max_len`` cuts each row after ``max_len`` tokens, the
    completion first (a prompt longer than that keeps no completion token)."""
    rows = [p + c for p, c in zip(prompts, completions, strict=True)]  # one completion per prompt
    ids, attention_mask = right_pad(rows, pad_id, max_len=max_len)
    starts = torch.tensor([len(p) for p in prompts], dtype=torch.long).unsqueeze(-1)
    completion_mask = attention_mask * (torch.arange(ids.size(1)).unsqueeze(0) >= starts).long()
    if device is not None:
        ids, attention_mask, completion_mask = ids.to(device), attention_mask.to(device), completion_mask.to(device)
    return ids, attention_mask, completion_mask


class CompletionBatch(NamedTuple):
    """A batch of ``prompt + completion`` rows ready for a forward pass and a sequence log-prob:
    ``sequence_logprobs(model(ids).logits[:, :-1], ids[:, 1:], label_mask)``."""

    ids: Tensor  # [B, T] right-padded prompt + completion
    attention_mask: Tensor  # [B, T]
    label_mask: Tensor  # [B, T - 1]: 1 where the next-token label ids[:, 1:] is a completion token


def collate_completions(prompts: list[list[int]], completions: list[list[int]], pad_id: int, *,
                        max_len: Optional[int] = None, device: Any = None) -> CompletionBatch:
    """The public collate for algorithms that score completions (DPO-style pairs, KTO's unpaired examples, ...):
    ``pad_completions`` with the completion mask already shifted to the next-token labels, the off-by-one every
    such loss needs."""
    ids, attention_mask, completion_mask = pad_completions(prompts, completions, pad_id, max_len=max_len,
                                                           device=device)
    return CompletionBatch(ids, attention_mask, completion_mask[:, 1:])

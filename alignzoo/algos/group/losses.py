"""The GRPO family's policy losses and loss aggregations. Pure functions; math in docs/algorithms.md#grpo-family.

A policy loss maps the per-token log-probs ``[B, N]`` (under the training graph), the old (sampling-time) ones, the
per-sequence advantages ``[B, 1]`` and the completion mask to a per-token loss ``[B, N]`` and a per-token
"clipped" indicator; an aggregation reduces any per-token quantity ``[B, N]`` to the micro-batch's scalar, and names
the unit (tokens or sequences) that weighs micro-batches and ranks, so that accumulating ``train.grad_accum``
micro-batches (and averaging ranks) gives the gradient of the whole batch's aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from alignzoo import distributed
from alignzoo.ops import masked_mean, masked_sum

PolicyLoss = Callable[[Tensor, Tensor, Tensor, Tensor, float, float], tuple[Tensor, Tensor]]


def _clipped(ratio: Tensor, eps_low: float, eps_high: float) -> Tensor:
    """1.0 where the ratio lies outside ``[1 - eps_low, 1 + eps_high]``."""
    return ((ratio - 1 > eps_high) | (1 - ratio > eps_low)).float()


def clip_surrogate(logprobs: Tensor, old_logprobs: Tensor, adv: Tensor, mask: Tensor, eps_low: float,
                   eps_high: float) -> tuple[Tensor, Tensor]:
    """PPO's clipped surrogate per token (GRPO, Dr. GRPO, DAPO's clip-higher with ``eps_high > eps_low``):
    ``rho_t = exp(log pi - log pi_old)``, ``l_t = max(-A rho_t, -A clip(rho_t, 1 - eps_low, 1 + eps_high))``."""
    ratio = torch.exp(logprobs - old_logprobs)
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps_low, 1 + eps_high))
    return loss, _clipped(ratio.detach(), eps_low, eps_high)


def sequence_ratio_surrogate(logprobs: Tensor, old_logprobs: Tensor, adv: Tensor, mask: Tensor, eps_low: float,
                             eps_high: float) -> tuple[Tensor, Tensor]:
    """GSPO (Zheng et al. 2025): one ratio per sequence, the length-normalised sequence ratio
    ``s_i = (pi(y_i) / pi_old(y_i))^(1/|y_i|) = exp(mean_t (log pi - log pi_old))``, clipped per sequence:
    ``l_i = max(-A s_i, -A clip(s_i, 1 - eps_low, 1 + eps_high))``, the same value on each of the sequence's tokens
    (so a per-sequence token mean gives ``l_i`` back)."""
    seq_ratio = torch.exp(masked_mean(logprobs - old_logprobs, mask, dim=-1)).unsqueeze(-1)  # [B, 1]
    loss = torch.maximum(-adv * seq_ratio, -adv * seq_ratio.clamp(1 - eps_low, 1 + eps_high))
    return loss.expand_as(logprobs), _clipped(seq_ratio.detach(), eps_low, eps_high).expand_as(logprobs)


def clipped_is_weight(logprobs: Tensor, old_logprobs: Tensor, adv: Tensor, mask: Tensor, eps_low: float,
                      eps_high: float) -> tuple[Tensor, Tensor]:
    """CISPO (MiniMax-M1, 2025): ``l_t = -sg(clip(rho_t, 1 - eps_low, 1 + eps_high)) * A * log pi_t``. The clipped
    importance weight carries no gradient, so every token keeps a gradient (``A`` times that of its log-prob) where
    PPO's clip would zero it."""
    ratio = torch.exp(logprobs - old_logprobs).detach()
    weight = ratio.clamp(1 - eps_low, 1 + eps_high)
    return -weight * adv * logprobs, _clipped(ratio, eps_low, eps_high)


def reinforce(logprobs: Tensor, old_logprobs: Tensor, adv: Tensor, mask: Tensor, eps_low: float,
              eps_high: float) -> tuple[Tensor, Tensor]:
    """REINFORCE (RLOO's estimator): ``l_t = -A log pi_t``, no ratio and no clipping (one on-policy update per
    batch, where the ratio is 1). The eps arguments are unused."""
    return -adv * logprobs, torch.zeros_like(logprobs)


POLICY_LOSSES: dict[str, PolicyLoss] = {
    "clip": clip_surrogate,
    "gspo": sequence_ratio_surrogate,
    "cispo": clipped_is_weight,
    "reinforce": reinforce,
}


# -- aggregations: per-token [B, N] -> the micro-batch's scalar, and what weighs micro-batches ---------------------

def token_mean(values: Tensor, mask: Tensor, constant: float) -> Tensor:
    """``sum_{i,t} l_it / sum_i |y_i|``: every token of the batch counts the same (DAPO)."""
    return masked_mean(values, mask)


def seq_mean_token_mean(values: Tensor, mask: Tensor, constant: float) -> Tensor:
    """``1/B sum_i (1/|y_i| sum_t l_it)``: each sequence's token mean, then the mean over sequences (GRPO's paper)."""
    return masked_mean(values, mask, dim=-1).mean()


def seq_sum(values: Tensor, mask: Tensor, constant: float) -> Tensor:
    """``1/B sum_i (1/C sum_t l_it)``: each sequence's token sum over a constant ``C`` (Dr. GRPO: C = the maximum
    completion length; RLOO: C = 1, the sequence log-prob), then the mean over sequences."""
    return masked_sum(values, mask, dim=-1).mean() / constant


def _tokens(mask: Tensor) -> float:
    return float(mask.sum())


def _sequences(mask: Tensor) -> float:
    return float(mask.size(0))


@dataclass(frozen=True)
class Aggregation:
    reduce: Callable[[Tensor, Tensor, float], Tensor]
    units: Callable[[Tensor], float]  # what the aggregate averages over: a micro-batch's weight is its share of it
    metric_mean: Callable[[Tensor, Tensor, float], Tensor]  # the mean over the same units, for logged metrics


AGGREGATIONS: dict[str, Aggregation] = {
    "token_mean": Aggregation(token_mean, _tokens, token_mean),
    "seq_mean_token_mean": Aggregation(seq_mean_token_mean, _sequences, seq_mean_token_mean),
    "seq_sum": Aggregation(seq_sum, _sequences, seq_mean_token_mean),
}


def micro_weights(aggregation: str, masks: list[Tensor]) -> list[float]:
    """Weights that turn the aggregates of this rank's micro-batches (``masks``) into the aggregate of the whole
    batch over every micro-batch and rank: ``world * n * u_m / U``, ``u_m`` the units (tokens or sequences) of
    micro-batch ``m`` and ``U`` their total over ranks (``training.token_weights`` for any unit). Exactly ``[1.0]``
    for one micro-batch in one process."""
    engine = distributed.current()
    if len(masks) == 1 and not engine.distributed:
        return [1.0]
    local = [AGGREGATIONS[aggregation].units(m) for m in masks]
    total = max(engine.sum(sum(local)), 1.0)
    return [engine.world_size * len(masks) * u / total for u in local]

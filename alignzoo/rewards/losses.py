"""Reward-model losses as pure functions (docs/algorithms.md#reward-model-losses).

All take reward-model scores (``Tensor``) and return ``(mean loss, metrics)``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def bradley_terry_loss(chosen_scores: Tensor, rejected_scores: Tensor, *, margin: Optional[Tensor | float] = None,
                       center_coef: float = 0.0, target: Optional[Tensor] = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Pairwise Bradley-Terry loss: mean softplus(r_rejected - r_chosen + margin) = -log sigmoid(r_c - r_r - m).

    ``margin`` (Llama-2 style) demands a gap of at least m; ``center_coef`` adds c * mean((r_c + r_r)^2)
    (Eisenstein et al. 2023), which pins the otherwise free offset of the rewards near 0.
    ``target`` (soft AI labels, ``reward.soft_labels``): p = P(chosen > rejected) per pair, and the loss is the
    cross-entropy -(p log s(m) + (1-p) log s(-m)) on the shifted gap m; p = 1 is exactly the hard loss, p = 1/2
    has zero gradient at m = 0. None: the hard loss (the default path, unchanged).
    Metrics: accuracy (strict: ties count as wrong), margin = mean(r_c - r_r).
    """
    diff = chosen_scores - rejected_scores
    shifted = diff - margin if margin is not None else diff
    if target is None:
        loss = F.softplus(-shifted).mean()
    else:
        loss = (target * F.softplus(-shifted) + (1 - target) * F.softplus(shifted)).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen_scores + rejected_scores) ** 2).mean()
    metrics = {"accuracy": (diff > 0).float().mean().detach(), "margin": diff.mean().detach()}
    return loss, metrics


def soft_label_loss(first_scores: Tensor, second_scores: Tensor, p_first: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy against a soft preference p = P(first > second) (AI feedback;
    docs/algorithms.md#reward-model-losses): -[p log sigmoid(r1 - r2) + (1 - p) log sigmoid(r2 - r1)]. With p = 1 it
    is Bradley-Terry."""
    loss, metrics = bradley_terry_loss(first_scores, second_scores, target=p_first)  # one soft cross-entropy
    agree = (((first_scores - second_scores) > 0) == (p_first > 0.5)).float().mean().detach()
    return loss, {"accuracy": agree, "margin": metrics["margin"]}


def plackett_luce_loss(scores_in_rank_order: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Negative log-likelihood of full rankings under Plackett-Luce: ``scores_in_rank_order[b, k]`` holds the
    score of the completion ranked k-th (best first).

    -log P(ranking) = sum_k [logsumexp(s_k..s_K) - s_k]. With K = 2 it equals Bradley-Terry; with all scores
    equal it is log K!. Metrics: accuracy = share of rankings whose best item scores strictly highest.
    """
    s = scores_in_rank_order
    # logsumexp over the suffix s_k..s_K for each k: reverse, running logcumsumexp, reverse back
    suffix = torch.logcumsumexp(s.flip(-1), dim=-1).flip(-1)
    nll = (suffix - s).sum(-1)
    best_wins = (s[:, :1] > s[:, 1:]).all(-1).float().mean().detach()
    return nll.mean(), {"accuracy": best_wins, "margin": (s[:, 0] - s[:, -1]).mean().detach()}


def all_pairs_loss(scores_in_rank_order: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """InstructGPT's loss on a ranking of K: mean over the C(K, 2) implied pairs of -log sigmoid(r_w - r_l),
    all pairs of one prompt in the same batch element. Metrics: pairwise accuracy (strict)."""
    k = scores_in_rank_order.size(-1)
    w, l = torch.triu_indices(k, k, offset=1)  # w ranked above l
    diff = scores_in_rank_order[:, w] - scores_in_rank_order[:, l]
    return F.softplus(-diff).mean(), {"accuracy": (diff > 0).float().mean().detach(), "margin": diff.mean().detach()}

"""The GRPO family's advantage estimators: ``[B, G]`` rewards (B groups of G completions of one prompt, the whole
global batch: the caller gathers the rewards over ranks first) -> one advantage per completion ``[B, G]``,
broadcast to its tokens by the loss. Pure functions; math and which algorithm uses which in
docs/algorithms.md#grpo-family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

#: added to the standard deviation, so that a group (or batch) of identical rewards gives 0, not 0 / 0
STD_EPS = 1e-4


def group_standardised(rewards: Tensor) -> Tensor:
    """GRPO (Shao et al. 2024): ``A_i = (r_i - mean_g(r)) / (std_g(r) + 1e-4)``, unbiased std within the group."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + STD_EPS)


def group_centred(rewards: Tensor) -> Tensor:
    """Dr. GRPO (Liu et al. 2025): ``A_i = r_i - mean_g(r)``; no division by the std, which up-weights groups of
    nearly equal rewards (too easy or too hard prompts)."""
    return rewards - rewards.mean(-1, keepdim=True)


def leave_one_out(rewards: Tensor) -> Tensor:
    """RLOO (Ahmadian et al. 2024): ``A_i = r_i - 1/(G-1) sum_{j != i} r_j``, the mean of the *other* samples."""
    g = rewards.size(-1)
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (g - 1)


def batch_standardised(rewards: Tensor) -> Tensor:
    """REINFORCE++ (Hu 2025): ``A_i = (r_i - mean_B(r)) / (std_B(r) + 1e-4)`` over the whole global batch (every
    group of every rank), not per group: no per-prompt baseline, a batch-wide scale."""
    flat = rewards.reshape(-1).double()  # a mean over many rows in float32 would not give identical rewards 0
    centred = (rewards.double() - flat.mean())
    scale = flat.std() + STD_EPS if flat.numel() > 1 else 1.0
    return (centred / scale).to(rewards.dtype)


@dataclass(frozen=True)
class Estimator:
    fn: Callable[[Tensor], Tensor]
    min_group: int  # the smallest group_size it is defined for (a group baseline needs another sample)


ADVANTAGES: dict[str, Estimator] = {
    "grpo": Estimator(group_standardised, 2),
    "dr_grpo": Estimator(group_centred, 2),
    "rloo": Estimator(leave_one_out, 2),
    "reinforce_pp": Estimator(batch_standardised, 1),
}

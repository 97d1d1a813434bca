"""Reward shaping and batch filtering of the GRPO family (DAPO's): the overlong penalty and the zero-variance
groups that dynamic sampling drops. Pure functions; docs/algorithms.md#grpo-family."""

from __future__ import annotations

import torch
from torch import Tensor


def overlong_penalty(lengths: Tensor, *, max_new_tokens: int, buffer: int) -> Tensor:
    """DAPO's soft overlong punishment per completion of ``lengths`` tokens: 0 up to ``L_max - buffer`` tokens,
    then linear down to -1 at ``L_max = max_new_tokens``: ``min(0, (L_max - buffer - L) / buffer)``
    (``buffer = 0``: no penalty). Completions never exceed ``L_max`` here (generation stops there), so DAPO's -1
    beyond it is the end of the ramp."""
    if buffer <= 0:
        return torch.zeros(lengths.shape, dtype=torch.float32, device=lengths.device)
    return ((max_new_tokens - buffer - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)


def informative_groups(rewards: Tensor) -> Tensor:
    """``[B, G]`` rewards -> ``[B]`` bool: the groups whose rewards are not all equal. A group of identical rewards
    has zero advantage under a group baseline and gives no policy gradient; DAPO's dynamic sampling drops it."""
    return (rewards != rewards[:, :1]).any(-1)

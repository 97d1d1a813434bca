"""A guard around every reward the run builds: ``score`` must return one number per completion.

A reward plugin that returns the wrong shape (a scalar, one score per prompt, a 2-D tensor) would otherwise fail
deep inside advantage estimation with a broadcasting error; the guard stops the run at the first call with a
message that names the reward, what it returned and what it must return. NaN scores are left to the training
loops, which stop with the step and the quantity (``training.check_finite``).
"""

from __future__ import annotations

from typing import Any

import torch

from alignzoo.errors import AlignzooError


class RewardShapeError(AlignzooError):
    """A reward whose ``score`` does not return one number per completion."""


class CheckedReward:
    """Delegates everything to ``reward``; checks what ``score`` returns."""

    def __init__(self, reward: Any, name: str):
        self._reward, self._name = reward, name

    def score(self, prompts: Any, completions: Any, ended: Any = None) -> torch.Tensor:
        out = self._reward.score(prompts, completions, ended)
        n = len(completions)
        try:
            scores = out if isinstance(out, torch.Tensor) else torch.as_tensor(out, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise RewardShapeError(
                f"reward {self._name!r} returned {type(out).__name__}, not numbers; score(prompts, completions, "
                f"ended) must return a tensor of shape [{n}] (one float per completion)") from None
        if tuple(scores.shape) != (n,):
            raise RewardShapeError(
                f"reward {self._name!r} returned shape {list(scores.shape)} for {n} completions; score(prompts, "
                f"completions, ended) must return a tensor of shape [{n}] (one float per completion)")
        return scores

    def __getattr__(self, item: str) -> Any:
        if item in ("_reward", "_name"):  # not set yet (copy, unpickling): no recursion
            raise AttributeError(item)
        return getattr(self._reward, item)


def checked(reward: Any, name: str) -> Any:
    """``reward`` behind the shape guard (None stays None; a guarded reward is not wrapped twice)."""
    if reward is None or isinstance(reward, CheckedReward):
        return reward
    return CheckedReward(reward, name)

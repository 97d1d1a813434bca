"""Rule-based rewards: deterministic scorers with no training, behind the reward interface
``score(prompts, completions, ended) -> Tensor[B]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class VaderConfig:
    name: str = "vader"


class VaderReward:
    """VADER compound sentiment of the completion, in [-1, 1]. Easy to game by repeating positive words: a
    proxy, never a gold reward."""

    def __init__(self, cfg: VaderConfig, ctx: Any = None):
        self.cfg = cfg

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        from alignzoo.rewards.sentiment import vader_scores

        return torch.tensor(vader_scores(list(completions)), dtype=torch.float32)

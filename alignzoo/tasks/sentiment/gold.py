"""The sentiment task's gold reward: the simulated human's true preference (``reward=gold``, gold evaluators)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alignzoo.errors import AlignzooError


class GoldReward:
    """The simulated human's true preference: VADER of the finished completion, scaled by its share of real
    words, minus penalties for repeated words and for never ending (``alignzoo.rewards.sentiment.gold_scores``)."""

    def __init__(self, vocabulary: frozenset[str], missing_eos_penalty: float = 0.5):
        self.vocabulary = vocabulary
        self.missing_eos_penalty = missing_eos_penalty

    def score(self, prompts: list[str], completions: list[str], ended: Any) -> torch.Tensor:
        from alignzoo.rewards.sentiment import gold_scores

        ended = [bool(e) for e in (ended.tolist() if hasattr(ended, "tolist") else ended)]
        return torch.tensor(gold_scores(list(completions), ended, self.vocabulary,
                                        missing_eos_penalty=self.missing_eos_penalty), dtype=torch.float32)


@dataclass
class GoldConfig:
    name: str = "gold"
    missing_eos_penalty: float = 0.5  # subtracted when a completion never ends


def build_gold(cfg: GoldConfig, ctx: Any) -> GoldReward:
    """The gold reward of a task that has one (task=sentiment), used as a reward (an oracle ablation)."""
    vocab = getattr(ctx.task, "vocabulary", None)
    if vocab is None:
        raise AlignzooError(f"reward=gold needs a task with a gold reward (task=sentiment); task={ctx.task.name} "
                            "has none")
    return GoldReward(vocab, cfg.missing_eos_penalty)

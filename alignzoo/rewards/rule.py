"""Rule-based rewards: deterministic scorers with no training, behind the reward interface
``score(prompts, completions, ended) -> Tensor[B]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alignzoo.hookspecs import hookimpl


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


@dataclass
class LengthRewardConfig:
    name: str = "length"
    target: int = 12  # the preferred completion length, in words
    width: float = 6.0  # words away from the target at which the reward has fallen to exp(-1/2)


class LengthReward:
    """Target-length shaping: exp(-(words - target)^2 / (2 width^2)), in (0, 1], 1 at the target length."""

    def __init__(self, cfg: LengthRewardConfig, ctx: Any = None):
        self.cfg = cfg

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        n = torch.tensor([len(c.split()) for c in completions], dtype=torch.float32)
        return torch.exp(-((n - self.cfg.target) ** 2) / (2 * self.cfg.width ** 2))


@dataclass
class HarmlessConfig:
    name: str = "harmless"


class HarmlessReward:
    """1 - P(offensive) from the offensive-language classifier shipped in ``alt-profanity-check``
    (``pip install 'alignzoo[rewards]'``)."""

    def __init__(self, cfg: HarmlessConfig, ctx: Any = None):
        try:
            from profanity_check import predict_prob
        except ImportError:
            from alignzoo.errors import AlignzooError

            raise AlignzooError("reward=harmless needs the package alt-profanity-check "
                                "(pip install 'alignzoo[rewards]')") from None
        self._predict = predict_prob

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        if not completions:
            return torch.zeros(0)
        return torch.tensor(1.0 - self._predict(list(completions)), dtype=torch.float32)


@dataclass
class WeightedRewardConfig:
    name: str = "weighted"
    components: Any = None  # reward name -> weight, e.g. {vader: 1.0, length: 0.5}

    def problems(self) -> list[str]:
        example = "give e.g. reward.components='{vader: 1.0, length: 0.5}'"
        if not self.components:
            return [f"components is empty; {example}"]
        if not isinstance(self.components, dict) or not all(isinstance(w, (int, float))
                                                             for w in self.components.values()):
            return [f"components must map reward names to numeric weights; {example}"]
        return []


class WeightedReward:
    """A weighted sum of named rewards (multi-objective, e.g. helpful + harmless)."""

    def __init__(self, cfg: WeightedRewardConfig, ctx: Any):
        from alignzoo.errors import AlignzooError

        known = ctx.registries["reward"].names()
        unknown = [n for n in cfg.components if n not in known or n == "weighted"]
        if unknown:
            from alignzoo.registry import unknown_message

            raise AlignzooError("reward.components: " + "; ".join(unknown_message("reward", n, [k for k in known
                                                                                           if k != "weighted"])
                                                                  for n in unknown))
        self.parts = [(float(w), ctx.build_reward(n)) for n, w in cfg.components.items()]

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        total = torch.zeros(len(completions))
        for weight, reward in self.parts:
            total = total + weight * reward.score(prompts, completions, ended).float().cpu()
        return total


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_rewards(register):
    register("vader", VaderReward, VaderConfig, description="VADER compound sentiment (gameable proxy)")
    register("length", LengthReward, LengthRewardConfig, description="target-length shaping")
    register("harmless", HarmlessReward, HarmlessConfig, description="1 - P(offensive) (alt-profanity-check)")
    register("weighted", WeightedReward, WeightedRewardConfig, description="weighted sum of named rewards")

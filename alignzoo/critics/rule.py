"""``critic=rule``: each principle maps to a registered rule-based reward (its ``scorer``); a comparison under a
principle is Bradley-Terry on the two scores, p = sigmoid((s_first - s_second) / T) (hard labels for T = 0).

Deterministic and symmetric, so it has no position bias; it is a known function, which makes AI-label agreement
with the gold order and over-optimization measurable. Also the ``fluency`` scorer the sentiment constitution uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

import numpy as np
import torch

from alignzoo.critics.base import PRINCIPLE_MODES, score_preference
from alignzoo.critics.constitution import Principle
from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl


def _constitution_problems(node: Any) -> list[str]:
    from alignzoo.critics.constitution import parse_constitution

    if node is None:
        return []  # the factory falls back to the default constitution
    try:
        parse_constitution(node)
    except AlignzooError as exc:
        return [f"constitution: {exc}"]
    return []


@dataclass
class RuleCriticConfig:
    #: Hydra defaults: the constitution group (``critic/constitution=<name>``)
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"constitution": "sentiment"}])
    name: str = "rule"
    constitution: Any = None  # composed from conf/critic/constitution/<name>.yaml; None: the sentiment one
    temperature: float = 0.1  # p = sigmoid((score_a - score_b) / T) per principle, in scorer units; 0: hard labels
    principles: str = "all"  # all: weighted average over principles | sample: one principle per comparison
    seed: int = 0  # principle sampling (principles=sample)

    def problems(self) -> list[str]:
        out = _constitution_problems(self.constitution)
        if self.temperature < 0:
            out.append(f"temperature must be >= 0 (got {self.temperature})")
        if self.principles not in PRINCIPLE_MODES:
            out.append(f"principles must be one of {', '.join(PRINCIPLE_MODES)} (got {self.principles!r})")
        return out


class RuleCritic:
    """Principles mapped to rule-based scorers (registered rewards such as vader, fluency, harmless, length)."""

    def __init__(self, cfg: RuleCriticConfig, ctx: Any):
        from alignzoo.critics.constitution import load_constitution, parse_constitution

        self.name, self.principle_mode, self.temperature = cfg.name, cfg.principles, cfg.temperature
        self.seed = cfg.seed
        self.constitution = (parse_constitution(cfg.constitution) if cfg.constitution is not None
                             else load_constitution("sentiment"))
        self.settings = {"temperature": cfg.temperature, "seed": cfg.seed}
        known = ctx.registries["reward"].names()
        missing = [p.name for p in self.constitution.principles if not p.scorer]
        unknown = [f"{p.name}: {p.scorer!r}" for p in self.constitution.principles if p.scorer and p.scorer not in known]
        if missing or unknown:
            raise AlignzooError(
                f"critic=rule with constitution {self.constitution.name!r}: "
                + (f"principles without a scorer ({', '.join(missing)}); " if missing else "")
                + (f"unknown scorers ({', '.join(unknown)}); " if unknown else "")
                + f"each principle needs `scorer: <reward name>` (known rewards: {', '.join(known)}), "
                "or use critic=lm_judge")
        self._scorers = {p.scorer: ctx.build_reward(p.scorer) for p in self.constitution.principles}

    def scores(self, principle: Principle, prompts: list[str], texts: list[str], ended: list[bool]) -> np.ndarray:
        return self._scorers[principle.scorer].score(prompts, texts, torch.tensor(ended)).float().cpu().numpy()

    def first_preferred(self, prompts: list[str], first: list[str], second: list[str], first_ended: list[bool],
                        second_ended: list[bool], principle: Principle) -> np.ndarray:
        s1 = self.scores(principle, prompts, first, first_ended)
        s2 = self.scores(principle, prompts, second, second_ended)
        return score_preference(s1, s2, self.temperature)


def build_rule_critic(cfg: RuleCriticConfig, ctx: Any) -> RuleCritic:
    """Principles mapped to rule-based scorers: p = sigmoid((s_a - s_b) / T), averaged over principles."""
    return RuleCritic(cfg, ctx)


# -- the fluency scorer -------------------------------------------------------------------------------------------

@dataclass
class FluencyConfig:
    name: str = "fluency"
    repeat_penalty: float = 1.0  # subtracted per unit share of repeated non-stopword tokens
    missing_eos_penalty: float = 0.5  # subtracted when the completion never ends
    min_words: Optional[int] = 1  # a completion with fewer words scores missing_eos_penalty lower (None: off)


class FluencyReward:
    """Fluency without a vocabulary: 1 - repeat_penalty * (share of repeated words) - missing_eos_penalty * (never
    ended) [- missing_eos_penalty when shorter than min_words]. In [-1.0, 1]."""

    def __init__(self, cfg: FluencyConfig, ctx: Any = None):
        self.cfg = cfg

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        from alignzoo.rewards.sentiment import repeat_share, words

        ended = [True] * len(completions) if ended is None else [bool(e) for e in
                                                                 (ended.tolist() if hasattr(ended, "tolist") else ended)]
        out = []
        for text, done in zip(completions, ended):
            tokens = words(text)
            s = 1.0 - self.cfg.repeat_penalty * repeat_share(tokens) - self.cfg.missing_eos_penalty * (not done)
            if self.cfg.min_words and len(tokens) < self.cfg.min_words:
                s -= self.cfg.missing_eos_penalty
            out.append(s)
        return torch.tensor(out, dtype=torch.float32)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_critics(register):
    register("rule", build_rule_critic, RuleCriticConfig,
             description="principles mapped to rule-based scorers (Bradley-Terry on scores)")


@hookimpl
def alignzoo_register_rewards(register):
    register("fluency", FluencyReward, FluencyConfig,
             description="1 - repeated-word share - missing-EOS penalty (the rule critic's fluency principle)")

"""``reward=verifier``: the arithmetic task's checker as a reward (RL from verifiable rewards), also its gold.

score = correctness + ``format_weight`` x format, per completion, where correctness is
``verifier.verify(completion, answer of its prompt)`` and format ``verifier.format_score``; a completion that never
ended (cut at ``max_new_tokens``) scores 0 on both, as its answer may be unfinished (``#### 13`` of ``#### 132``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from alignzoo.errors import AlignzooError
from alignzoo.tasks.arithmetic.verifier import format_score, verify


class VerifierReward:
    """Checks each completion against the answer of its own prompt (``answer_for(prompt)``)."""

    def __init__(self, answer_for: Callable[[str], str], format_weight: float = 0.0):
        self.answer_for, self.format_weight = answer_for, format_weight

    def score(self, prompts: Sequence[str], completions: Sequence[str], ended: Any = None) -> torch.Tensor:
        if len(prompts) != len(completions):
            raise AlignzooError(
                f"the verifier checks each completion against its prompt's answer, but got {len(prompts)} prompts "
                f"for {len(completions)} completions (labeler=simulated passes none); use labeler=verifier")
        done = [True] * len(completions) if ended is None else [bool(e) for e in
                                                                (ended.tolist() if hasattr(ended, "tolist") else ended)]
        scores = [(verify(c, self.answer_for(p)) + self.format_weight * format_score(c)) if e else 0.0
                  for p, c, e in zip(prompts, completions, done)]
        return torch.tensor(scores, dtype=torch.float32)


@dataclass
class VerifierConfig:
    name: str = "verifier"
    format_weight: float = 0.0  # added for an answer in the `#### <integer>` format, right or wrong

    def problems(self) -> list[str]:
        return [] if self.format_weight >= 0 else [f"format_weight must be >= 0 (got {self.format_weight})"]


def build_verifier(cfg: VerifierConfig, ctx: Any) -> VerifierReward:
    """The task's answer checker as the reward (tasks with checkable answers: task=arithmetic)."""
    answer_for = getattr(ctx.task, "answer_for", None)
    if answer_for is None:
        raise AlignzooError(f"reward=verifier needs a task with checkable answers (task=arithmetic); "
                            f"task={ctx.task.name} has none")
    return VerifierReward(answer_for, cfg.format_weight)

"""What a task provides. A task is any object with these methods (only those its algorithms need):

- ``tokenizer_texts() -> Iterable[str]``: text to train a tokenizer on for ``model=tiny``;
- ``tokenizer(vocab_size) -> tokenizer | None``: optionally, the task's own tokenizer;
- ``preference_data(policy) -> datasets.Dataset`` with text columns ``prompt``, ``chosen``, ``rejected``;
- ``eval_prompts(policy, n) -> list[str]``: held-out prompts for evaluators;
- ``train_prompts(policy) -> list[str]``: prompts for online RL;
- ``gold``: optionally, a gold reward (``score(prompts, completions, ended) -> Tensor``) for gold evaluators;
- ``prepare(ctx, policy) -> Policy``: optionally, pipeline stages (pretrain, SFT) that turn the initial
  policy into the one algorithms start from.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


@runtime_checkable
class Task(Protocol):
    name: str

    def tokenizer_texts(self) -> Iterable[str]: ...

    def eval_prompts(self, policy: Any, n: int) -> list[str]: ...

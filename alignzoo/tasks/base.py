"""What a task provides: data only. The pipeline (``alignzoo.pipeline``, driven by the run) turns it into the
starting policy, the feedback, the reward model and the optimizer's inputs; a task runs no stage itself.

A task is any object with a ``name`` and the methods its algorithms need (each optional unless marked):

- ``eval_prompts(policy, n) -> list[str]`` (required): held-out prompts for evaluators;
- ``validation_prompts(policy, n) -> list[str]``: up to ``n`` held-out prompts drawn like the eval prompts but from
  other examples (never trained on, none of the eval prompts' examples). Every evaluation also scores what
  evaluators list in ``validation_metrics`` (the headline: e.g. ``gold_reward``, ``accuracy``) on them, as
  ``val/<metric>`` in the history (``alignzoo.evaluators.validation``);
  the board picks each run's checkpoints on those and reports the picks' eval scores (``alignzoo.board.frontier``).
  Without it, the board picks on the eval prompts and marks the cells so;
- ``train_prompts(policy) -> list[str]``: prompts for online RL (PPO, GRPO, ...);
- ``feedback_prompts() -> list[str]``: prompts whose K sampled completions the labeler judges (``labeler=
  simulated|critic``); without them, the feedback is the task's own pairs (``labeler=dataset``, or the critic
  relabels those pairs);
- ``corpus() -> {"train": [text], "val": [text]} | None``: text to pretrain a randomly initialised model on
  (``model=tiny``); ``val`` is optional (the held-out perplexity);
- ``demonstrations() -> (prompts, completions) | None``: what SFT fine-tunes on (also PPO-ptx's data);
  ``sft_on_given_models`` (default True) says whether a given, pretrained model (``model=hf``) is fine-tuned too;
- ``preference_data(policy) -> datasets.Dataset`` with text columns ``prompt``, ``chosen``, ``rejected``: the
  task's own preference pairs;
- ``gold``: a gold scorer (``score(prompts, completions, ended) -> Tensor``) for gold evaluators and the
  simulated labeler;
- ``data_key() -> dict``: what identifies the data in stage-cache keys (default: the task's name and config);
- ``tokenizer_texts() -> Iterable[str]`` / ``tokenizer(vocab_size) -> tokenizer | None``: text to train
  ``model=tiny``'s tokenizer on, or the task's own tokenizer.
- ``default_reward: str``: the registered reward an online algorithm (or ILQL) optimizes when the run names none,
  instead of a learned reward model (``task=arithmetic``: ``"verifier"``, a checker; ``alignzoo.run``);
- ``answer_for(prompt) -> str``: the gold answer of a prompt, for tasks with checkable answers (the verifiable
  evaluators and ``labeler=verifier`` need it).

``tests/test_pipeline.py`` defines a task in a few lines of data and runs PPO, DPO and RLAIF through every stage.
"""

from __future__ import annotations

from typing import Any, Iterable, Protocol, runtime_checkable

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


@runtime_checkable
class Task(Protocol):
    name: str

    def tokenizer_texts(self) -> Iterable[str]: ...

    def eval_prompts(self, policy: Any, n: int) -> list[str]: ...

"""The RLHF pipeline, driven by the run (``alignzoo.run._build_components``), not by a task:

1. **starting policy**: a randomly initialised model (``model=tiny``) is pretrained on the task's corpus when it
   gives one (``task.corpus()``), then fine-tuned on its demonstrations (``task.demonstrations()``); a given model
   (``model=hf``) is fine-tuned only when the task asks for it (``sft_on_given_models``). A random model no stage
   trains is used as it is, and a note says so;
2. **feedback**: the run's labeler (``labeler=<name>``, ``alignzoo.pipeline.labelers``) labels comparisons: K
   completions of the starting policy per feedback prompt, or the task's own pairs;
3. **reward model**: ``reward=learned`` trains on that feedback (``alignzoo.stages.reward_model``);
4. **optimizer**: the algorithm, on ``ctx.preference_data()`` / ``ctx.ranking_data()`` / the reward.

A task supplies data only (``alignzoo.tasks.base``). Every stage is cached by ``alignzoo.stages.cache.run_stage``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import cached_property
from typing import Any, Callable, Optional

from alignzoo.stages.cache import StageResult, run_stage


def task_data_key(task: Any) -> dict[str, Any]:
    """What identifies the task's data in stage keys: the task's own ``data_key()``, else its name and config."""
    own = getattr(task, "data_key", None)
    if callable(own):
        return own()
    cfg = getattr(task, "cfg", None)
    config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None
    return {"task": {"name": task.name, "config": config}}


def texts_key(*columns: Any) -> str:
    """A short content hash of some text columns (for data a task reads from files)."""
    h = hashlib.sha256()
    for col in columns:
        h.update(json.dumps(list(col), default=str).encode())
    return h.hexdigest()[:16]


class Pipeline:
    """The stages of one run: the starting policy's, and the feedback the labeler gives (built once, cached)."""

    def __init__(self, ctx: Any, task: Any, labeler: Any):
        self.ctx, self.task, self.labeler = ctx, task, labeler
        self.settings = ctx.built["pipeline"]
        self.policy_key: Any = None  # what identifies the starting policy in later stages' keys
        self.sft: Optional[StageResult] = None
        self._feedback: Optional[StageResult] = None
        self._feedback_done = False
        self._ranking: Any = None

    # -- what stages read from the task -----------------------------------------------------------------------
    @cached_property
    def data_key(self) -> dict[str, Any]:
        """The task's data in stage keys (computed when a stage first needs it: it may hash a dataset)."""
        return task_data_key(self.task)

    @property
    def gold(self) -> Any:
        return getattr(self.task, "gold", None)

    @property
    def feedback_prompts(self) -> list[str]:
        own = getattr(self.task, "feedback_prompts", None)
        return list(own()) if callable(own) else []

    def stage(self, name: str, config: dict[str, Any], build: Callable[..., dict[str, Any]]) -> StageResult:
        return run_stage(self.ctx.cache_dir, name, config, build, note=self.ctx.note)

    # -- 1. the starting policy -------------------------------------------------------------------------------
    def starting_policy(self, initial: Any) -> Any:
        """Pretrain (random-init models, tasks with a corpus) and SFT (tasks with demonstrations)."""
        from alignzoo.models.base import load_policy
        from alignzoo.pipeline.policy import describe_base, finetune, pretrain

        ctx, task = self.ctx, self.task
        random_init = initial.info.get("init") == "random"
        corpus = _call(task, "corpus") if random_init else None
        base, base_key, trained = initial, {"model": initial.info.get("source", initial.name)}, False
        if corpus and corpus.get("train"):
            pre = pretrain(self, initial, corpus)
            base, base_key, trained = load_policy(pre.path, device=ctx.device), {"pretrain": pre.key}, True
            ctx.record.notes.append(describe_base(pre.meta))
        demonstrations = _call(task, "demonstrations")
        if demonstrations and demonstrations[0] and (trained or getattr(task, "sft_on_given_models", True)):
            self.sft = finetune(self, base, base_key, demonstrations)
            policy = load_policy(self.sft.path, name="sft", device=ctx.device)
            policy.info.update({"sft_stage": self.sft.key, **base_key})
            self.policy_key = self.sft.key
            trained = True
        else:
            policy, self.policy_key = base, base_key
        if random_init and not trained:
            ctx.note(f"model={initial.name} starts from random weights and no stage trains it: task={task.name} gives "
                     "no corpus to pretrain on and no demonstrations to fine-tune on (or they are switched off), so "
                     "its completions are noise (most never end); give the task text, or use a pretrained model")
        return policy

    # -- 2. feedback ------------------------------------------------------------------------------------------
    def feedback(self, policy: Any) -> Optional[StageResult]:
        """The labeler's feedback stage for ``policy`` (the starting policy), built on the first call; None when the
        task's own pairs are the feedback."""
        if not self._feedback_done:
            self._feedback = self.labeler.feedback(self, policy) if self.labeler is not None else None
            self._feedback_done = True
        return self._feedback

    def ranking_data(self, policy: Any) -> Any:
        """The feedback dataset (K-wise rankings: prompt, completions, ended, ranking, chosen, rejected, ...)."""
        if self._ranking is None:
            result = self.feedback(policy)
            if result is None:
                return None
            import datasets

            self._ranking = datasets.load_from_disk(str(result.path / "data"))
        return self._ranking


def _call(task: Any, method: str) -> Any:
    fn = getattr(task, method, None)
    return fn() if callable(fn) else None


def build_labeler(ctx: Any) -> Any:
    conf = ctx.built.get("labeler")
    if conf is None:
        return None
    return ctx.registries["labeler"].build(conf, ctx)


def build_policy(ctx: Any) -> None:
    """Build the task, the model and the pipeline, and set ``ctx.policy`` to the starting policy."""
    regs, built = ctx.registries, ctx.built
    ctx.task = regs["task"].build(built["task"], ctx)
    initial = regs["model"].build(built["model"], ctx)
    ctx.pipeline = Pipeline(ctx, ctx.task, build_labeler(ctx))
    ctx.policy = ctx.pipeline.starting_policy(initial)

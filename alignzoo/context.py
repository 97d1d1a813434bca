"""The run context: what an algorithm, evaluator, labeler or pipeline stage gets (``train(config, ctx)``).

One object per job, built by ``build_context`` (``alignzoo run``, the labeling app and the plugin test kit all
build it the same way). It holds the validated settings (``ctx.train``, ``ctx.eval_cfg``, ``ctx.budget``,
``ctx.built``), the components the run built (``ctx.task``, ``ctx.policy``, ``ctx.reference``, ``ctx.reward``,
``ctx.evaluators``, ``ctx.pipeline``, ``ctx.critic``) and the job's record. Code outside this module changes it
through its methods (``log``, ``note``, ``add_tokens``, ``set_critic``, ``restore_progress``), so that what a
record says is written in one place.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from alignzoo.distributed import is_main_process
from alignzoo.errors import AlignzooError

log = logging.getLogger("alignzoo")


def job_device(name: str) -> Any:
    """The torch device of this process for ``run.device`` (under a launcher: each rank's own GPU)."""
    from alignzoo import distributed

    engine = distributed.current()
    return distributed.job_device(name, engine.local_rank if engine.distributed else None)


@dataclass
class RunContext:
    """What an algorithm's ``train(config, ctx)`` gets: components, settings, logging and evaluation."""

    cfg: DictConfig
    job_dir: Path
    seed: int
    device: Any
    train: Any  # TrainConfig
    eval_cfg: Any  # EvalConfig
    budget: Any  # BudgetConfig
    record: Any  # RunRecord
    registries: Any
    built: dict[str, Any]
    group: Optional[str] = None
    task: Any = None
    policy: Any = None
    reference: Any = None
    reward: Any = None
    pipeline: Any = None  # alignzoo.pipeline.Pipeline: the stages that made the starting policy and the feedback
    evaluators: dict[str, Any] = field(default_factory=dict)
    loggers: list[Any] = field(default_factory=list)
    last_step: int = 0
    extra_metrics: dict[str, float] = field(default_factory=dict)  # final-only metrics (e.g. reward-model quality)
    _eval_prompts: Optional[list[str]] = None
    _train_metrics: dict[str, float] = field(default_factory=dict)
    _critic: Any = None
    checkpoints: Any = None  # checkpoint.Checkpoints: where this job saves, and the checkpoint it resumes from

    @property
    def resolved_config(self) -> dict[str, Any]:
        return self.record.config

    @property
    def cache_dir(self) -> Path:
        return Path(self.built["run"].cache_dir)

    # -- logging ----------------------------------------------------------------------------------------------
    def log(self, metrics: dict[str, float], step: int) -> None:
        self.last_step = max(self.last_step, step)
        if any(k.startswith("train/") for k in metrics):
            self._train_metrics.update({k: float(v) for k, v in metrics.items() if k.startswith("train/")})
        for logger in self.loggers:
            logger.log(metrics, step)

    def note(self, message: str, *, quiet: bool = False) -> None:
        """Something a reader of the record must know (stage reuse, a skipped evaluator); also logged unless
        ``quiet``."""
        self.record.notes.append(message)
        log.debug(message) if quiet else log.info(message)

    def add_tokens(self, n: int) -> None:
        self.record.tokens += int(n)

    @contextmanager
    def progress(self, total: int, desc: str) -> Iterator[Any]:
        """A progress bar on rank 0 when the console logger asks for one and stderr is a terminal."""
        console = self.built.get("logger", {}).get("console")
        enabled = bool(console is not None and console.progress and is_main_process() and sys.stderr.isatty())
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
        try:
            yield bar
        finally:
            bar.close()

    # -- progress a checkpoint saves and restores -------------------------------------------------------------
    def progress_state(self) -> dict[str, Any]:
        """What a checkpoint must keep of the run so far: evaluation history and the last evaluation's per-prompt
        scores, last train metrics, tokens, step."""
        return {"history": self.record.history, "per_prompt": self.record.per_prompt,
                "train_metrics": self._train_metrics, "tokens": self.record.tokens, "last_step": self.last_step}

    def restore_progress(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's ``progress_state()``: the history, train metrics, tokens and step."""
        self.record.history[:] = state["history"]
        self.record.per_prompt = dict(state.get("per_prompt") or {})  # absent in checkpoints older than the field
        self._train_metrics.clear()
        self._train_metrics.update(state["train_metrics"])
        self.record.tokens = int(state["tokens"])
        self.last_step = int(state["last_step"])

    # -- components -------------------------------------------------------------------------------------------
    @property
    def critic(self) -> Any:
        """The run's critic once one is built (``alignzoo.critics.build_critic``), else None."""
        return self._critic

    def set_critic(self, critic: Any) -> None:
        """Keep the run's critic (built once per run); the record shows the critic that labelled, not ``null``."""
        self._critic = critic
        if self.record.config.get("critic") is None:
            self.record.config["critic"] = {"name": critic.name, "constitution": critic.constitution.as_dict(),
                                            "principles": critic.principle_mode, **getattr(critic, "settings", {})}

    def build_reward(self, name: str, **overrides: Any) -> Any:
        """Build a registered reward by name with its default config (e.g. for ``evaluator.reward.reward``), with
        ``overrides`` of its fields (e.g. ``soft_labels=True``)."""
        registry = self.registries["reward"]
        # compose the default config inside this run's config, so ${budget.*} interpolations resolve
        root = OmegaConf.create({k: self.cfg[k] for k in ("budget", "seed", "run")})
        root["component"] = OmegaConf.structured(registry.get(name).config)
        for key, value in overrides.items():
            root.component[key] = value
        from alignzoo.rewards.checked import checked

        return checked(registry.build(OmegaConf.to_object(root.component), self), name)

    # -- data -------------------------------------------------------------------------------------------------
    def feedback(self) -> Any:
        """The pipeline's feedback stage (``StageResult``; its ``data`` dataset has K-wise rankings), or None
        when the task's own preference pairs are the feedback (``labeler=dataset``)."""
        return self.pipeline.feedback(self.policy) if self.pipeline is not None else None

    def ranking_data(self) -> Any:
        """The feedback as K-wise rankings (prompt, completions, gold, ended, ranking), or None without a
        feedback stage."""
        return self.pipeline.ranking_data(self.policy) if self.pipeline is not None else None

    def preference_data(self) -> Any:
        """The preference pairs the run learns from, as a ``datasets.Dataset`` (prompt / chosen / rejected text and
        ``chosen_ended`` / ``rejected_ended``: whether each completion ended with EOS rather than at a length limit,
        so that training appends EOS only to those that did): the feedback stage's pairs, or the task's own pairs
        (written responses: every one counts as ended)."""
        ranked = self.ranking_data()
        if ranked is not None:
            return with_ended_columns(ranked.select_columns([c for c in PAIR_COLUMNS if c in ranked.column_names]))
        if not hasattr(self.task, "preference_data"):
            raise AlignzooError(f"algo={self.cfg.algo.name} needs preference pairs, but task={self.task.name} has "
                                "none; pick a task with preferences (e.g. task=hf_preferences)")
        data = self.task.preference_data(self.policy)
        skipped = getattr(self.task, "skipped_rows", 0)
        message = (f"task={self.task.name}: skipped {skipped} rows with an empty chosen or rejected response (they "
                   "carry no preference); clean the dataset to silence this")
        if skipped and message not in self.record.notes:
            self.note(message)
        return with_ended_columns(data)

    # -- evaluation -------------------------------------------------------------------------------------------
    def eval_prompts(self) -> list[str]:
        if self._eval_prompts is None:
            self._eval_prompts = list(self.task.eval_prompts(self.policy, self.eval_cfg.num_prompts))
            if not self._eval_prompts:
                raise AlignzooError(f"task={self.task.name} gave no evaluation prompts")
        return self._eval_prompts

    def evaluate(self, policy: Any, step: int) -> dict[str, float]:
        """Sample the policy on the held-out prompts, run every evaluator, log ``eval/*`` at ``step``."""
        import torch

        from alignzoo.evaluators.samples import EvalSamples
        from alignzoo.evaluators.validation import validation_metrics

        if not self.evaluators or not is_main_process():  # under a launcher, rank 0 evaluates
            return {}
        was_training = policy.model.training
        policy.model.eval()
        seed = self.eval_cfg.seed if self.eval_cfg.seed is not None else self.seed
        samples = EvalSamples.draw(policy, self.reference, self.eval_prompts(),
                                   max_new_tokens=self.eval_cfg.max_new_tokens,
                                   temperature=self.eval_cfg.temperature, seed=seed,
                                   batch_size=self.eval_cfg.batch_size)
        metrics: dict[str, float] = {}
        per_prompt: dict[str, dict[str, float]] = {}
        with torch.no_grad():
            for name, evaluator in self.evaluators.items():
                for k, v in evaluator.evaluate(samples).items():
                    metrics[f"eval/{k}"] = float(v)
                # the headline evaluators' per-prompt scores, read before the validation pass scores them again
                per_prompt.update({f"eval/{k}": v for k, v in (getattr(evaluator, "per_prompt", None) or {}).items()})
            metrics.update(validation_metrics(self, policy, seed))  # val/<metric>: what the board picks by
        self.record.history.append({"step": step, **metrics})
        self.record.per_prompt = per_prompt  # each evaluation replaces the last: the record keeps the final one's
        self.log(metrics, step)
        if was_training:
            policy.model.train()
        return metrics

    def maybe_evaluate(self, policy: Any, step: int) -> None:
        every = self.train.eval_every
        if every and step % every == 0 and step < self.train.steps:
            self.evaluate(policy, step)


#: the columns of ``RunContext.preference_data``
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "chosen_ended", "rejected_ended")


def with_ended_columns(data: Any) -> Any:
    """``data`` (a ``datasets.Dataset``) with ``chosen_ended`` / ``rejected_ended`` all True where it lacks them."""
    for name in ("chosen_ended", "rejected_ended"):
        if name not in data.column_names:
            data = data.add_column(name, [True] * len(data))
    return data


def build_context(cfg: DictConfig, built: dict[str, Any], registries: Any, *, job_dir: str | Path, record: Any,
                  seed: Optional[int] = None, device: Any = None, group: Optional[str] = None,
                  policy: bool = False) -> RunContext:
    """The context of a job from its composed ``cfg`` and validated ``built`` configs. ``device`` defaults to
    ``run.device``'s; with ``policy=True`` the task, the model and the pipeline's starting policy are built too
    (what the labeling app samples from), else the caller builds components when it is ready to."""
    ctx = RunContext(cfg=cfg, job_dir=Path(job_dir), seed=int(cfg.seed) if seed is None else int(seed),
                     device=job_device(built["run"].device) if device is None else device, train=built["train"],
                     eval_cfg=built["eval"], budget=built["budget"], record=record, registries=registries,
                     built=built, group=group)
    if policy:
        from alignzoo.pipeline import build_policy

        build_policy(ctx)
    return ctx

"""RLAIF / Constitutional AI (Bai et al. 2022b; Lee et al. 2023): AI feedback from a constitutional critic replaces
the human labels, and an inner optimizer learns from it (docs/algorithms.md#rlaif).

1. The feedback stage is labelled by the critic (``labeler=critic`` is forced; ``critic=rule`` with the sentiment
   constitution when no ``critic=`` is given): K completions per prompt, every pair judged in both orders,
   (best, worst) with the soft label ``chosen_prob`` (``stages/ai_feedback.py``). The run records the critic, the
   constitution and the AI labels' agreement with the gold order (``feedback/agreement_with_gold``).
2. Optionally SL-CAI first (``algo.sl_cai=true``, ``stages/critique_revision.py``): the policy is fine-tuned on
   the critic's revisions of its own responses, and RL starts from it (the reference stays the SFT policy, so
   KL and win rates are measured against the same row as every other algorithm).
3. RL-CAI with the inner optimizer, reusing its code unchanged:
   ``inner=dpo``: the AI preference pairs straight into DPO (``algos/dpo.py``, settings under ``algo.dpo``);
   ``inner=ppo``: AI pairs -> a learned reward model (``reward=learned``, or the run's ``reward=``) -> PPO
   (``algos/ppo.py``, settings under ``algo.ppo``), behind the reward-model quality gate;
   ``inner=none``: no RL (with ``sl_cai=true``: the SL-CAI policy itself).
   ``soft_labels=true`` (the default): the critic's ``chosen_prob`` is the target of the inner DPO's loss and of
   the reward model it learns (``reward=learned`` built here); ``false``: the hard (chosen, rejected) labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignzoo.algos.dpo import DPOConfig
from alignzoo.algos.ppo import PPOConfig
from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.stages.critique_revision import CritiqueRevisionConfig

INNER = ("dpo", "ppo", "none")


@dataclass
class RLAIFConfig:
    LABELER = "critic"  # not a field: the feedback stage is labelled by the critic (applied by config.validate)
    name: str = "rlaif"
    inner: str = "dpo"  # dpo (AI pairs into DPO) | ppo (AI pairs -> reward model -> PPO) | none (no RL step)
    sl_cai: bool = False  # first fine-tune on the critic's critique-revisions (SL-CAI), then run the inner optimizer
    soft_labels: bool = True  # the critic's chosen_prob is the target of the inner DPO / the learned reward model
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(name="dpo"))  # the inner DPO's settings
    ppo: PPOConfig = field(default_factory=PPOConfig)  # the inner PPO's settings
    revision: CritiqueRevisionConfig = field(default_factory=CritiqueRevisionConfig)  # the SL-CAI stage's settings

    def problems(self) -> list[str]:
        out = [] if self.inner in INNER else [f"inner must be one of {', '.join(INNER)} (got {self.inner!r})"]
        if self.inner == "none" and not self.sl_cai:
            out.append("inner=none trains nothing unless sl_cai=true; use algo=sft for the SFT policy itself")
        out += [f"dpo.{p}" for p in self.dpo.problems()] if self.inner == "dpo" else []
        out += [f"ppo.{p}" for p in self.ppo.problems()] if self.inner == "ppo" else []
        out += [f"revision.{p}" for p in self.revision.problems()] if self.sl_cai else []
        return out


def use_ai_feedback(ctx: Any) -> Any:
    """Build the run's critic (``labeler=critic`` is already applied: ``RLAIFConfig.LABELER``); the record shows it."""
    from alignzoo.critics import build_critic

    if not (ctx.pipeline.feedback_prompts or hasattr(ctx.task, "preference_data")):
        raise AlignzooError(f"algo=rlaif needs comparisons a critic can label: feedback prompts or preference pairs "
                            f"(e.g. task=sentiment); task={ctx.task.name} has neither")
    critic = build_critic(ctx, default=True)
    ctx.note(f"rlaif: critic {critic.name}, constitution {critic.constitution.name} "
             f"({', '.join(p.name for p in critic.constitution.principles)}), inner optimizer {ctx.cfg.algo.inner}")
    return critic


def start_from_sl_cai(cfg: RLAIFConfig, ctx: Any, critic: Any) -> None:
    """Replace the starting policy with the SL-CAI policy (cached stage)."""
    from alignzoo.models.base import load_policy
    from alignzoo.stages.critique_revision import critique_revision

    stage = critique_revision(ctx, ctx.task, ctx.policy, critic, cfg.revision)
    policy = load_policy(stage.path / "policy", name="sl_cai", device=ctx.device)
    policy.info.update({**ctx.policy.info, "sl_cai_stage": stage.key})
    ctx.policy = policy


def attach_reward(ctx: Any, soft_labels: bool = False) -> None:
    """A reward model learned from the AI feedback (unless the run set ``reward=``), its quality gate, and the
    reward evaluators that were skipped while the run had no reward."""
    from alignzoo.rewards.learned import quality_gate

    if ctx.reward is None:
        ctx.note("rlaif: inner=ppo learns a reward model on the AI feedback (reward=learned"
                 f"{', reward.soft_labels=true' if soft_labels else ''})")
        ctx.reward = ctx.build_reward("learned", soft_labels=soft_labels)
    quality_gate(ctx.reward, ctx, online=True)
    attached = []
    for key, conf in ctx.built["evaluator"].items():
        if key in ctx.evaluators:
            continue
        evaluator = ctx.registries["evaluator"].build(conf, ctx)
        if not (hasattr(evaluator, "skip_reason") and evaluator.skip_reason(ctx)):
            ctx.evaluators[key] = evaluator
            attached.append(key)
    if attached:
        ctx.note(f"rlaif: evaluators {', '.join(attached)} run from the first evaluation after the reward model was "
                 "trained (skipped at step 0, before it existed)")


def train(cfg: RLAIFConfig, ctx: Any) -> Any:
    """RLAIF: a constitutional critic labels the feedback; SL-CAI optionally; then DPO or reward model + PPO."""
    critic = use_ai_feedback(ctx)
    if cfg.sl_cai:
        start_from_sl_cai(cfg, ctx, critic)
    if cfg.inner != "none":  # label now: the note and feedback/* metrics are in the record whatever follows
        ctx.feedback()
    if cfg.inner == "dpo":
        from alignzoo.algos import dpo

        import dataclasses

        return dpo.train(dataclasses.replace(cfg.dpo, soft_labels=cfg.dpo.soft_labels or cfg.soft_labels), ctx)
    if cfg.inner == "ppo":
        from alignzoo.algos import ppo

        attach_reward(ctx, cfg.soft_labels)
        return ppo.train(cfg.ppo, ctx)
    ctx.evaluate(ctx.policy, 1)  # inner=none: the SL-CAI policy is the result (step 0 was the SFT policy)
    return ctx.policy


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("rlaif", train, RLAIFConfig,
             description="RLAIF: a constitutional critic labels the feedback, then DPO or reward model + PPO")

"""Learned reward models (``reward=learned``, ``reward=ensemble``): a scalar reward model trained on preference
feedback in the cached ``reward_model`` stage (``alignzoo.stages.reward_model``), normalized to mean 0 / std 1
under the reference policy's samples, or loaded from ``reward.path``. The network, its backbones and its directory
format are in ``alignzoo.rewards.scalar_model``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import II

from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.rewards.scalar_model import BACKBONES, LearnedReward, ScalarRewardModel, build_backbone, load_reward_model

# -- configs and factories (registered as reward=learned and reward=ensemble) -----------------------------------

@dataclass
class LearnedRewardConfig:
    name: str = "learned"
    path: Optional[str] = None  # a trained reward-model directory; None: train one on the task's feedback
    backbone: str = "policy"  # policy (the SFT model's body) | hf (reward.hf_path) | minilm (packaged encoder)
    hf_path: Optional[str] = None  # a Hugging Face model directory for backbone=hf
    loss: str = "bt"  # bt (Bradley-Terry on the labelled pair) | pl (Plackett-Luce on rankings) | all_pairs
    margin: float = 0.0  # BT margin m: -log sigmoid(r_c - r_r - m)
    center_coef: float = 0.0  # centering regularizer c * (r_c + r_r)^2 (TRL suggests 0.01)
    lr: float = 1e-3  # learning rate of the backbone, linearly annealed to 0
    head_lr_mult: float = 10.0  # the fresh head learns this much faster than the pretrained body
    epochs: float = 3.0  # passes over the training groups (early stopping keeps the best held-out step)
    batch_size: int = 32  # groups (prompts) per step
    heldout_fraction: float = 0.1  # share of feedback prompts held out (early stopping + gating, disjoint)
    gate_fraction: float = 0.5  # share of the held-out prompts that gate and report; the rest early-stop
    soft_labels: bool = False  # loss=bt: the AI feedback's chosen_prob is the target (1.0 where a pair has none)
    eval_every: int = 25  # steps between held-out evaluations
    seed: int = 0  # head init and data order (ensembles vary it)
    min_accuracy: float = II("budget.rm_min_accuracy")  # quality gate: held-out accuracy online optimizers need
    min_gold_spearman: float = II("budget.rm_min_gold_spearman")  # quality gate: Spearman with the gold reward
    skip_quality_gate: bool = False  # start online optimizers even below the floors

    def problems(self) -> list[str]:
        out = []
        if self.backbone not in BACKBONES:
            out.append(f"backbone must be one of {', '.join(BACKBONES)} (got {self.backbone!r})")
        if self.backbone == "hf" and not self.hf_path and not self.path:
            out.append("hf_path is required with backbone=hf (a Hugging Face model directory)")
        from alignzoo.stages.reward_model import LOSSES

        if self.loss not in LOSSES:
            out.append(f"loss must be one of {', '.join(LOSSES)} (got {self.loss!r})")
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1 or self.eval_every < 1:
            out.append("lr and epochs must be > 0, batch_size and eval_every >= 1")
        if not 0 < self.heldout_fraction < 1:
            out.append(f"heldout_fraction must be in (0, 1) (got {self.heldout_fraction})")
        if not 0 < self.gate_fraction < 1:
            out.append(f"gate_fraction must be in (0, 1) (got {self.gate_fraction}); 0.5 splits the held-out "
                       "prompts evenly between early stopping and the quality gate")
        if self.soft_labels and self.loss != "bt":
            out.append(f"soft_labels needs loss=bt (got loss={self.loss}): rankings carry no soft label")
        return out


def _feedback_source(ctx: Any) -> tuple[Any, dict[str, Any]]:
    """The task's feedback (K-wise rankings when it has them) and what identifies it for the cache."""
    task = ctx.task
    feedback = ctx.feedback()  # the pipeline's feedback stage, when the labeler made one
    if feedback is not None:
        return ctx.ranking_data(), {"feedback": feedback.key}
    if hasattr(task, "preference_data"):
        ident = {"task": task.name, "config": getattr(task, "cfg", None).__dict__ if hasattr(task, "cfg") else None}
        return task.preference_data(ctx.policy), ident
    raise AlignzooError(f"reward=learned needs preference feedback, but task={task.name} has none; give a trained "
                        "model with reward.path=... or use a task with preferences")


def train_or_load(cfg: LearnedRewardConfig, ctx: Any) -> LearnedReward:
    from alignzoo.stages.cache import run_stage
    from alignzoo.stages.reward_model import groups_from_feedback, train_reward_model

    if cfg.path:
        return load_reward_model(cfg.path, ctx.device)
    data, ident = _feedback_source(ctx)
    train_keys = ("backbone", "hf_path", "loss", "margin", "center_coef", "lr", "head_lr_mult", "epochs", "batch_size",
                  "heldout_fraction", "gate_fraction", "soft_labels", "eval_every", "seed")
    key = {**ident, "policy": ctx.policy.info.get("sft_stage") or ctx.policy.info.get("source", ctx.policy.name),
           **{k: getattr(cfg, k) for k in train_keys}}

    def build(out: Path) -> dict[str, Any]:
        groups = groups_from_feedback(data)
        body, inputs, hidden = build_backbone(cfg.backbone, cfg.hf_path, ctx.policy)
        torch.manual_seed(cfg.seed)
        model = ScalarRewardModel(body, hidden)
        total = max(1, int(math.ceil(cfg.epochs * len(groups) * (1 - cfg.heldout_fraction) / cfg.batch_size)))
        with ctx.progress(total=total, desc=f"reward model ({cfg.loss})") as bar:
            return train_reward_model(out, groups=groups, model=model, inputs=inputs, cfg=cfg, seed=cfg.seed,
                                      device=ctx.device, progress=lambda s, l: (bar.update(1),
                                                                                 bar.set_postfix(loss=f"{l:.3f}")))

    result = run_stage(ctx.cache_dir, "reward_model", key, build, note=ctx.note)
    reward = load_reward_model(result.path, ctx.device)
    q = reward.quality
    stop = reward.meta.get("early_stopping", {})
    ctx.note(f"reward model: gating-split accuracy {q.get('accuracy', float('nan')):.3f}, gold Spearman "
             f"{q.get('gold_spearman', float('nan')):.3f} (early-stopping split {stop.get('accuracy', float('nan')):.3f}"
             f"{'; soft AI labels as targets' if cfg.soft_labels else ''}) ({result.path})")
    return reward


def build_learned(cfg: LearnedRewardConfig, ctx: Any) -> LearnedReward:
    """A learned reward model (Bradley-Terry / Plackett-Luce), trained once per feedback set and cached."""
    reward = train_or_load(cfg, ctx)
    reward.gate = cfg
    return reward


@dataclass
class EnsembleConfig:
    name: str = "ensemble"
    members: int = 3  # reward models differing in seed (head init and data order)
    conservative_k: float = 0.0  # score = mean - k * std across members (k > 0 guards against reward hacking)
    member: LearnedRewardConfig = field(default_factory=LearnedRewardConfig)  # settings every member shares

    def problems(self) -> list[str]:
        out = [f"member.{p}" for p in self.member.problems()]
        if self.members < 2:
            out.append(f"members must be >= 2 (got {self.members})")
        if self.conservative_k < 0:
            out.append(f"conservative_k must be >= 0 (got {self.conservative_k})")
        return out


class EnsembleReward:
    """Several normalized reward models: ``score`` is mean - k * std, ``mean_and_std`` gives both."""

    def __init__(self, members: list[LearnedReward], k: float):
        self.members, self.k = members, k

    @property
    def quality(self) -> dict[str, float]:
        qs = [m.quality for m in self.members]
        return {key: float(np.mean([q[key] for q in qs])) for key in qs[0] if isinstance(qs[0][key], float)}

    def mean_and_std(self, prompts: list[str], completions: list[str], ended: Any = None):
        scores = torch.stack([m.score(prompts, completions, ended) for m in self.members])
        return scores.mean(0), scores.std(0, unbiased=False)

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        mean, std = self.mean_and_std(prompts, completions, ended)
        return mean - self.k * std


def build_ensemble(cfg: EnsembleConfig, ctx: Any) -> EnsembleReward:
    """An ensemble of learned reward models (each normalized on the same reference samples before averaging)."""
    import dataclasses

    members = [train_or_load(dataclasses.replace(cfg.member, seed=cfg.member.seed + i), ctx)
               for i in range(cfg.members)]
    ens = EnsembleReward(members, cfg.conservative_k)
    ens.gate = cfg.member
    return ens


def quality_gate(reward: Any, ctx: Any, *, online: bool) -> None:
    """Record the reward model's held-out quality in the run's metrics; before an ``online`` optimizer, stop the
    run when it is below the configured floors (unless ``reward.skip_quality_gate``)."""
    quality = getattr(reward, "quality", None)
    gate = getattr(reward, "gate", None)
    if not quality:
        return
    acc, rho = quality.get("accuracy"), quality.get("gold_spearman")
    ctx.extra_metrics.update({k: v for k, v in (("reward/heldout_accuracy", acc), ("reward/gold_spearman", rho))
                              if v is not None})
    if not online or gate is None or gate.skip_quality_gate:
        return
    problems = []
    if acc is not None and acc < gate.min_accuracy:
        problems.append(f"held-out accuracy {acc:.3f} < reward.min_accuracy={gate.min_accuracy}")
    if rho is not None and not math.isnan(rho) and rho < gate.min_gold_spearman:
        problems.append(f"gold Spearman {rho:.3f} < reward.min_gold_spearman={gate.min_gold_spearman}")
    if problems:
        raise AlignzooError("the reward model is too poor to optimize against: " + "; ".join(problems) +
                            ". Collect more feedback (task.feedback_prompts), train longer (reward.epochs), or "
                            "set reward.skip_quality_gate=true to proceed anyway")


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_rewards(register):
    register("learned", build_learned, LearnedRewardConfig,
             description="a learned reward model (Bradley-Terry / Plackett-Luce), trained once and cached")
    register("ensemble", build_ensemble, EnsembleConfig,
             description="an ensemble of learned reward models: mean - k * std")

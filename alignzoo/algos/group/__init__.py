"""The GRPO family: online RL with a group baseline instead of a value model (GRPO, Dr. GRPO, DAPO, GSPO, CISPO,
RLOO, REINFORCE++), each a preset of one ``GroupConfig`` that names an entry of three tables: the advantage
estimator (``advantages.ADVANTAGES``), the policy loss (``losses.POLICY_LOSSES``) and the loss aggregation
(``losses.AGGREGATIONS``). Math, defaults and deviations: docs/algorithms.md#grpo-family.

Per step: ``train.batch_size // group_size`` prompts, ``group_size`` completions each from the shared rollout engine
(each rank samples its shard, exactly the tokens one process would), scored by ``ctx.reward``; optionally shaped
(DAPO's overlong penalty, RLOO's KL in the reward) and filtered (DAPO's dynamic sampling); one advantage per
completion from the whole gathered batch; then ``epochs`` optimizer steps on ``training.loop`` (checkpoints, resume,
data parallelism, ``train.grad_accum``), each micro-batch weighted by its share of the aggregation's unit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from alignzoo import checkpoint, distributed
from alignzoo import rollout as ro
from alignzoo.algos.group.advantages import ADVANTAGES, STD_EPS, Estimator
from alignzoo.algos.group.losses import AGGREGATIONS, POLICY_LOSSES, micro_weights
from alignzoo.algos.group.sampling import check_batch, prompt_batches, sample
from alignzoo.hookspecs import hookimpl
from alignzoo.ops import kl_penalty
from alignzoo.training import MicroLoss, Stepper, loop, optimizer_step

#: the public API of the family (docs/plugins.md: plugins may import these)
__all__ = ["ADVANTAGES", "AGGREGATIONS", "POLICY_LOSSES", "PRESETS", "STD_EPS", "Estimator", "GroupBatch",
           "GroupConfig", "group_loss", "micro_losses", "register_presets", "sample", "train"]


@dataclass
class GroupConfig:
    name: str = "grpo"
    ONLINE = True  # class attribute: the run builds a learned reward by default and applies its quality gate
    advantage: str = "grpo"  # an entry of ADVANTAGES
    policy_loss: str = "clip"  # an entry of POLICY_LOSSES
    aggregation: str = "token_mean"  # an entry of AGGREGATIONS
    group_size: int = 4  # completions per prompt (G)
    beta: float = 0.05  # KL weight: beta * k3 per token in the loss, or beta * k1 sequence KL in the reward
    kl_in_reward: bool = False  # fold the KL into the sequence reward (RLOO) instead of the loss
    eps_low: float = 0.2  # clip range below 1 of the importance ratio
    eps_high: float = 0.2  # clip range above 1 (DAPO's clip-higher: > eps_low)
    epochs: int = 4  # optimizer steps per batch of samples (as PPO)
    lr: float = 3e-4
    max_new_tokens: int = 20
    temperature: float = 1.0
    loss_constant: float = 0.0  # seq_sum's divisor C; 0: max_new_tokens (Dr. GRPO)
    dynamic_sampling: bool = False  # drop groups of identical rewards and sample more prompts (DAPO)
    max_sampling_rounds: int = 4  # rounds of sampling per step at most, the first included
    overlong_buffer: int = 0  # DAPO's soft overlong penalty over the last this many tokens (0: none)
    overlong_penalty: float = 1.0  # its weight

    def problems(self) -> list[str]:
        out = []
        for field, table in (("advantage", ADVANTAGES), ("policy_loss", POLICY_LOSSES),
                             ("aggregation", AGGREGATIONS)):
            if getattr(self, field) not in table:
                out.append(f"{field} must be one of {', '.join(table)} (got {getattr(self, field)!r})")
        need = ADVANTAGES[self.advantage].min_group if self.advantage in ADVANTAGES else 2
        if self.group_size < need:
            out.append(f"group_size must be >= {need} for advantage={self.advantage} (got {self.group_size}); "
                       f"a group baseline needs another sample of the same prompt")
        if self.lr <= 0 or self.beta < 0 or self.epochs < 1:
            out.append(f"lr must be > 0, beta >= 0, epochs >= 1 (got lr={self.lr}, beta={self.beta}, "
                       f"epochs={self.epochs})")
        if not 0 < self.eps_low <= 1 or self.eps_high < self.eps_low:
            out.append(f"eps_low must be in (0, 1] and eps_high >= eps_low (got eps_low={self.eps_low}, "
                       f"eps_high={self.eps_high}); clip-higher raises eps_high, e.g. eps_low=0.2 eps_high=0.28")
        if self.max_new_tokens < 1 or self.temperature <= 0:
            out.append(f"max_new_tokens must be >= 1 and temperature > 0 (got {self.max_new_tokens}, "
                       f"{self.temperature})")
        if self.loss_constant < 0:
            out.append(f"loss_constant must be >= 0 (0: max_new_tokens) (got {self.loss_constant})")
        if self.max_sampling_rounds < 1:
            out.append(f"max_sampling_rounds must be >= 1 (got {self.max_sampling_rounds})")
        if not 0 <= self.overlong_buffer < self.max_new_tokens or self.overlong_penalty < 0:
            out.append(f"overlong_buffer must be in [0, max_new_tokens={self.max_new_tokens}) and overlong_penalty "
                       f">= 0 (got {self.overlong_buffer}, {self.overlong_penalty})")
        return out

    @property
    def constant(self) -> float:
        return self.loss_constant or float(self.max_new_tokens)


#: the registered algorithms: which table entries each uses, and its defaults (docs/algorithms.md#grpo-family)
PRESETS: dict[str, GroupConfig] = {
    "grpo": GroupConfig(name="grpo"),
    "dr_grpo": GroupConfig(name="dr_grpo", advantage="dr_grpo", aggregation="seq_sum"),
    "dapo": GroupConfig(name="dapo", beta=0.0, eps_high=0.28, dynamic_sampling=True, overlong_buffer=4),
    "gspo": GroupConfig(name="gspo", policy_loss="gspo", aggregation="seq_mean_token_mean", eps_low=3e-4,
                        eps_high=4e-4),
    "cispo": GroupConfig(name="cispo", policy_loss="cispo", eps_high=0.28),
    "rloo": GroupConfig(name="rloo", advantage="rloo", policy_loss="reinforce", aggregation="seq_sum",
                        kl_in_reward=True, epochs=1, loss_constant=1.0),
    "reinforce_pp": GroupConfig(name="reinforce_pp", advantage="reinforce_pp"),
}
DESCRIPTIONS = {
    "grpo": "GRPO: group-standardised rewards, clipped ratio, k3 KL in the loss",
    "dr_grpo": "Dr. GRPO: group-centred rewards, token sums over a constant",
    "dapo": "DAPO: clip-higher, token mean, dynamic sampling, overlong penalty",
    "gspo": "GSPO: length-normalised sequence ratio, clipped per sequence",
    "cispo": "CISPO: clipped stop-gradient IS weight times log-prob",
    "rloo": "RLOO: REINFORCE with a leave-one-out baseline, KL in the reward",
    "reinforce_pp": "REINFORCE++: rewards standardised over the global batch",
}


def group_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor, advantages: Tensor, mask: Tensor,
               cfg: GroupConfig) -> tuple[Tensor, dict[str, Tensor]]:
    """A micro-batch's loss: ``cfg.policy_loss`` per token with the per-sequence ``advantages [B]`` broadcast, plus
    ``beta * k3`` (unless the KL is in the reward), reduced by ``cfg.aggregation``; metrics reduced the same way."""
    per_token, clipped = POLICY_LOSSES[cfg.policy_loss](logprobs, old_logprobs, advantages.unsqueeze(-1), mask,
                                                        cfg.eps_low, cfg.eps_high)
    kl = kl_penalty(logprobs, ref_logprobs, estimator="k3")
    if not cfg.kl_in_reward:
        per_token = per_token + cfg.beta * kl
    aggregation = AGGREGATIONS[cfg.aggregation]
    loss = aggregation.reduce(per_token, mask, cfg.constant)
    # metrics are means over the aggregation's unit (tokens or sequences), so the micro-batch weights fit them too
    mean = aggregation.metric_mean
    return loss, {"kl_k3": mean(kl.detach(), mask, 1.0), "clipfrac": mean(clipped, mask, 1.0)}


@dataclass
class GroupBatch:
    """One step's samples on this rank: the rollout, its old (sampling-time) and reference log-probs ``[B, N]`` and
    one advantage per sequence ``[B]``."""
    rollout: Any
    old_logprobs: Tensor
    ref_logprobs: Tensor
    advantages: Tensor

    def select(self, idx: Tensor) -> "GroupBatch":
        return GroupBatch(self.rollout.select(idx), self.old_logprobs[idx], self.ref_logprobs[idx],
                          self.advantages[idx])


def micro_losses(model: Any, batch: GroupBatch, cfg: GroupConfig, micro_batches: int) -> Iterator[MicroLoss]:
    """The batch's loss in ``micro_batches`` contiguous micro-batches of rows, each weighted by its share of the
    aggregation's unit (tokens or sequences, over every rank too): accumulated, they give the whole batch's
    gradient whatever ``train.grad_accum`` is."""
    parts = [batch] if micro_batches == 1 else [batch.select(i) for i in
                                                torch.arange(len(batch.advantages)).chunk(micro_batches)]
    weights = micro_weights(cfg.aggregation, [p.rollout.completion_mask for p in parts])
    for part, weight in zip(parts, weights):
        logprobs = ro.completion_logprobs(model, part.rollout, temperature=cfg.temperature)
        loss, metrics = group_loss(logprobs, part.old_logprobs, part.ref_logprobs, part.advantages,
                                   part.rollout.completion_mask, cfg)
        yield MicroLoss(loss, metrics, weight)


def train(cfg: GroupConfig, ctx: Any) -> Any:
    """Online RL with a group baseline against the run's reward, on alignzoo's training loop (checkpoints, data
    parallelism, mixed precision and ``train.grad_accum`` come from there)."""
    policy, tc = ctx.policy, ctx.train
    prompts_per_step = max(1, tc.batch_size // cfg.group_size)
    check_batch(cfg, ctx, prompts_per_step * cfg.group_size)
    train_prompts = ctx.task.train_prompts(policy)
    prompts = checkpoint.Replay(lambda: prompt_batches(train_prompts, prompts_per_step, ctx.seed))
    sampler = torch.Generator(device=policy.device).manual_seed(ctx.seed)
    stepper = Stepper.create(policy.model.parameters(), cfg.lr, tc, total_steps=tc.steps * cfg.epochs)
    gather = distributed.current().gather_rows

    def step_fn(step: int) -> dict[str, float]:
        samples, advantages, extra = sample(cfg, ctx, prompts, sampler, prompts_per_step)
        batch = GroupBatch(samples.rollout, samples.old, samples.ref, advantages)
        policy.model.train()
        sums: dict[str, float] = {}
        for _ in range(cfg.epochs):
            metrics = optimizer_step(stepper, micro_losses(policy.model, batch, cfg, tc.grad_accum), step=step,
                                     micro_batches=tc.grad_accum)
            del metrics["lr"]
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.epochs
        policy.model.eval()
        r = batch.rollout
        sums.update({"reward": float(samples.scores.mean()), "length": float(gather(r.lengths.float()).mean()),
                     "eos_share": float(gather(r.ended.float()).mean())})
        if cfg.overlong_buffer:
            sums["overlong_penalty"] = float(gather(samples.penalty).mean())
        return {**sums, **extra}

    state = checkpoint.TrainingState(modules={"policy": policy.model}, stepper=stepper,
                                     generators={"rollout": sampler}, objects={"prompts": prompts})
    loop(ctx, state, step_fn, policy=policy, desc=cfg.name)
    return policy


def register_presets(register: Any, presets: dict[str, GroupConfig], descriptions: dict[str, str]) -> None:
    """Register each preset as ``algo=<name>`` with this family's step (plugins extending the family call it)."""
    for name, preset in presets.items():
        register(name, train, dataclasses.replace(preset), description=descriptions.get(name, ""))


@hookimpl
def alignzoo_register_algos(register):
    register_presets(register, PRESETS, DESCRIPTIONS)

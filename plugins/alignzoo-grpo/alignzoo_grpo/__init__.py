"""GRPO and RLOO for alignzoo: group-relative and leave-one-out baselines on alignzoo's rollout engine.

Per step: ``train.batch_size / group_size`` prompts, ``group_size`` completions each (the shared rollout engine),
scored by the run's reward model (a learned one by default: both are declared ONLINE); advantages from the group
(GRPO: standardized within the group; RLOO: minus the mean of the other samples), one per sequence and broadcast to
its tokens; loss = clipped policy surrogate + beta * k3 KL to the reference, masked token mean; ``epochs`` passes,
one optimizer step each from ``train.grad_accum`` micro-batches. A step function on ``alignzoo.training.loop``, so
it checkpoints, resumes and trains data-parallel like the built-in algorithms. Uses only alignzoo's public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor

from alignzoo import checkpoint, distributed, hookimpl
from alignzoo import rollout as ro
from alignzoo.errors import AlignzooError
from alignzoo.ops import kl_penalty, masked_mean
from alignzoo.training import MicroLoss, Stepper, loop, optimizer_step, token_weights

__version__ = "0.1.0"


def grpo_advantages(rewards: Tensor, eps: float = 1e-4) -> Tensor:
    """``[B, G]`` rewards -> advantages standardized within each group (identical rewards give zeros)."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + eps)


def rloo_advantages(rewards: Tensor) -> Tensor:
    """``[B, G]`` rewards -> r_i minus the mean of the *other* G - 1 rewards of its group."""
    g = rewards.size(-1)
    return rewards - (rewards.sum(-1, keepdim=True) - rewards) / (g - 1)


ADVANTAGES: dict[str, Callable[[Tensor], Tensor]] = {"grpo": grpo_advantages, "rloo": rloo_advantages}


@dataclass
class GroupConfig:
    name: str = "grpo"
    ONLINE = True  # the run builds a learned reward and applies the reward-model quality gate
    baseline: str = "grpo"  # grpo | rloo
    group_size: int = 4  # completions per prompt (G >= 2)
    beta: float = 0.05  # weight of the k3 KL penalty to the reference
    clip_range: float = 0.2
    epochs: int = 4  # passes over each batch (as PPO: four optimizer steps per batch of samples)
    lr: float = 3e-4
    max_new_tokens: int = 20
    temperature: float = 1.0

    def problems(self) -> list[str]:
        out = []
        if self.baseline not in ADVANTAGES:
            out.append(f"baseline must be one of {', '.join(ADVANTAGES)} (got {self.baseline!r})")
        if self.group_size < 2:
            out.append(f"group_size must be >= 2 (got {self.group_size})")
        if self.lr <= 0 or self.beta < 0 or self.clip_range <= 0 or self.epochs < 1:
            out.append("lr and clip_range must be > 0, beta >= 0, epochs >= 1")
        return out


def group_loss(logprobs: Tensor, old_logprobs: Tensor, ref_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
               clip_range: float, beta: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate with per-sequence advantages ``[B]`` broadcast to tokens, plus beta * k3 KL."""
    adv = advantages.unsqueeze(-1)
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip_range, 1 + clip_range))
    kl = kl_penalty(logprobs, ref_logprobs, estimator="k3")
    loss = masked_mean(surrogate + beta * kl, mask)
    return loss, {"kl_k3": masked_mean(kl.detach(), mask),
                  "clipfrac": masked_mean(((ratio - 1).abs() > clip_range).float(), mask).detach()}


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
    tokens (over every rank too), so that accumulating them gives the gradient of the whole batch's token mean."""
    parts = [batch] if micro_batches == 1 else [batch.select(i) for i in
                                                torch.arange(len(batch.advantages)).chunk(micro_batches)]
    weights = token_weights([p.rollout.completion_mask for p in parts])
    for part, weight in zip(parts, weights):
        logprobs = ro.completion_logprobs(model, part.rollout, temperature=cfg.temperature)
        loss, metrics = group_loss(logprobs, part.old_logprobs, part.ref_logprobs, part.advantages,
                                   part.rollout.completion_mask, clip_range=cfg.clip_range, beta=cfg.beta)
        yield MicroLoss(loss, metrics, weight)


def prompt_batches(prompts: list[str], per_step: int, seed: int) -> Iterator[list[str]]:
    """Endless batches of ``per_step`` prompts in a seeded order, reshuffled when the rest would not fill one."""
    order = torch.Generator().manual_seed(seed)
    perm, cursor = torch.randperm(len(prompts), generator=order), 0
    while True:
        if cursor + per_step > len(prompts):
            perm, cursor = torch.randperm(len(prompts), generator=order), 0
        yield [prompts[i] for i in perm[cursor:cursor + per_step].tolist()]
        cursor += per_step


def check_batch(cfg: GroupConfig, ctx: Any, rows: int) -> None:
    """Stop before training when a step's ``rows`` completions do not split over the processes and then into
    ``train.grad_accum`` micro-batches."""
    world, accum = distributed.current().world_size, ctx.train.grad_accum
    if rows % (world * accum):
        raise AlignzooError(
            f"algo={cfg.name}: a step samples {rows} completions (train.batch_size // algo.group_size prompts x "
            f"algo.group_size={cfg.group_size}), which do not split into {world} process(es) x train.grad_accum="
            f"{accum} micro-batches; make train.batch_size a multiple of algo.group_size x {world * accum}")


def sample(cfg: GroupConfig, ctx: Any, prompts: list[str],
           generator: torch.Generator) -> tuple[GroupBatch, Tensor]:
    """``group_size`` completions per prompt (this rank's shard of them, sampled as one process would), scored;
    advantages from each whole group (gathered over ranks), old and reference log-probs; and the scores."""
    policy, engine = ctx.policy, distributed.current()
    repeated = [p for p in prompts for _ in range(cfg.group_size)]
    shard = engine.row_shard(len(repeated))
    repeated = engine.shard(repeated)
    encoded = [ids[-(policy.max_length - cfg.max_new_tokens):] for ids in policy.encode_prompts(repeated)]
    policy.model.eval()
    with torch.no_grad():
        r = ro.generate(policy.model, encoded, eos_id=policy.eos_id, pad_id=policy.pad_id,
                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, generator=generator,
                        shard=shard)
        scores = ctx.reward.score(repeated, r.texts(policy.tokenizer), r.ended).float().to(policy.device)
        adv = ADVANTAGES[cfg.baseline](engine.gather_rows(scores).view(-1, cfg.group_size)).reshape(-1)
        if shard is not None:
            adv = adv[shard.rows]
        old = ro.completion_logprobs(policy.model, r, temperature=cfg.temperature)
        ref = ro.completion_logprobs(ctx.reference.model, r, temperature=cfg.temperature)
    ctx.add_tokens(int(r.attention_mask.sum()) * (2 + cfg.epochs))
    return GroupBatch(r, old, ref, adv), scores


def train(cfg: GroupConfig, ctx: Any) -> Any:
    """Online RL with a group baseline (GRPO or RLOO) against the run's reward model, on alignzoo's training loop
    (checkpoints, data parallelism, mixed precision and ``train.grad_accum`` come from there)."""
    policy, tc = ctx.policy, ctx.train
    prompts_per_step = max(1, tc.batch_size // cfg.group_size)
    check_batch(cfg, ctx, prompts_per_step * cfg.group_size)
    train_prompts = ctx.task.train_prompts(policy)
    prompts = checkpoint.Replay(lambda: prompt_batches(train_prompts, prompts_per_step, ctx.seed))
    sampler = torch.Generator(device=policy.device).manual_seed(ctx.seed)
    stepper = Stepper.create(policy.model.parameters(), cfg.lr, tc, total_steps=tc.steps * cfg.epochs)
    gather = distributed.current().gather_rows

    def step_fn(step: int) -> dict[str, float]:
        batch, scores = sample(cfg, ctx, next(prompts), sampler)
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
        sums.update({"reward": float(gather(scores).mean()), "length": float(gather(r.lengths.float()).mean()),
                     "eos_share": float(gather(r.ended.float()).mean())})
        return sums

    state = checkpoint.TrainingState(modules={"policy": policy.model}, stepper=stepper,
                                     generators={"rollout": sampler}, objects={"prompts": prompts})
    loop(ctx, state, step_fn, policy=policy, desc=cfg.name)
    return policy


@hookimpl
def alignzoo_register_algos(register):
    register("grpo", train, GroupConfig(name="grpo", baseline="grpo"), description="GRPO: group-standardized rewards")
    register("rloo", train, GroupConfig(name="rloo", baseline="rloo"), description="RLOO: leave-one-out baseline")

"""GRPO and RLOO for alignzoo: group-relative and leave-one-out baselines on alignzoo's rollout engine.

Per step: ``train.batch_size / group_size`` prompts, ``group_size`` completions each (the shared rollout engine),
scored by the run's reward model (a learned one by default: both are declared ONLINE); advantages from the group
(GRPO: standardized within the group; RLOO: minus the mean of the other samples), one per sequence and broadcast to
its tokens; loss = clipped policy surrogate + beta * k3 KL to the reference, masked token mean; ``epochs`` passes.
Uses only alignzoo's public API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from alignzoo import hookimpl
from alignzoo import rollout as ro
from alignzoo.ops import kl_penalty, masked_mean
from alignzoo.training import Stepper, check_finite

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


def train(cfg: GroupConfig, ctx: Any) -> Any:
    """Online RL with a group baseline (GRPO or RLOO) against the run's reward model."""
    policy, reference, reward = ctx.policy, ctx.reference, ctx.reward
    prompts_per_step = max(1, ctx.train.batch_size // cfg.group_size)
    prompts = ctx.task.train_prompts(policy)
    order = torch.Generator().manual_seed(ctx.seed)
    sampler = torch.Generator(device=policy.device).manual_seed(ctx.seed)
    stepper = Stepper.create(policy.model.parameters(), cfg.lr, ctx.train, total_steps=ctx.train.steps * cfg.epochs)
    perm, cursor = torch.randperm(len(prompts), generator=order), 0
    with ctx.progress(total=ctx.train.steps, desc=cfg.name) as bar:
        for step in range(1, ctx.train.steps + 1):
            if cursor + prompts_per_step > len(prompts):
                perm, cursor = torch.randperm(len(prompts), generator=order), 0
            batch = [prompts[i] for i in perm[cursor:cursor + prompts_per_step].tolist()]
            cursor += prompts_per_step
            repeated = [p for p in batch for _ in range(cfg.group_size)]
            encoded = [ids[-(policy.max_length - cfg.max_new_tokens):] for ids in policy.encode_prompts(repeated)]
            policy.model.eval()
            with torch.no_grad():
                r = ro.generate(policy.model, encoded, eos_id=policy.eos_id, pad_id=policy.pad_id,
                                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, generator=sampler)
                scores = reward.score(repeated, r.texts(policy.tokenizer), r.ended).float().to(policy.device)
                adv = ADVANTAGES[cfg.baseline](scores.view(-1, cfg.group_size)).reshape(-1)
                old = ro.completion_logprobs(policy.model, r, temperature=cfg.temperature)
                ref = ro.completion_logprobs(reference.model, r, temperature=cfg.temperature)
            ctx.add_tokens(int(r.attention_mask.sum()) * (2 + cfg.epochs))
            policy.model.train()
            sums: dict[str, float] = {}
            for _ in range(cfg.epochs):
                logprobs = ro.completion_logprobs(policy.model, r, temperature=cfg.temperature)
                loss, m = group_loss(logprobs, old, ref, adv, r.completion_mask, clip_range=cfg.clip_range,
                                     beta=cfg.beta)
                check_finite({"train/loss": loss}, step)
                loss.backward()
                m["grad_norm"] = stepper.step()
                for k, v in {"loss": loss.detach(), **m}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) / cfg.epochs
            policy.model.eval()
            metrics = {f"train/{k}": v for k, v in sums.items()}
            metrics.update({"train/reward": float(scores.mean()), "train/length": float(r.lengths.float().mean()),
                            "train/eos_share": float(r.ended.float().mean())})
            ctx.log(metrics, step)
            bar.update(1)
            ctx.maybe_evaluate(policy, step)
    return policy


@hookimpl
def alignzoo_register_algos(register):
    register("grpo", train, GroupConfig(name="grpo", baseline="grpo"), description="GRPO: group-standardized rewards")
    register("rloo", train, GroupConfig(name="rloo", baseline="rloo"), description="RLOO: leave-one-out baseline")

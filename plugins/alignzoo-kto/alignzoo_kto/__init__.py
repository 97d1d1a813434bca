"""KTO for alignzoo: Kahneman-Tversky Optimization from unpaired desirable / undesirable examples.

Ethayarajh et al. 2024; alignzoo's docs/algorithms.md#kto (after TRL's KTOTrainer):
r = log pi(y|x) - log ref(y|x); z0 = max(0, mean r over mismatched pairs of the batch) without gradient (the
completions cycled by one, so every prompt meets a completion written for another); desirable examples cost
lambda_D (1 - sigmoid(beta (r - z0))), undesirable ones lambda_U (1 - sigmoid(beta (z0 - r))).

Uses only alignzoo's public API (hooks, ops, rollout.forward, training loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignzoo import hookimpl
from alignzoo.ops import CompletionBatch, collate_completions, sequence_logprobs
from alignzoo.rollout import forward
from alignzoo.training import infinite_batches, supervised_loop

__version__ = "0.1.0"


@dataclass
class KTOConfig:
    name: str = "kto"
    beta: float = 0.1  # KL strength
    lambda_desirable: float = 1.0  # weight of desirable examples (lambda_D)
    lambda_undesirable: float = 1.0  # weight of undesirable examples (lambda_U)
    lr: float = 3e-4  # learning rate (tiny models from scratch; TRL default 1e-6 is for large ones)

    def problems(self) -> list[str]:
        out = []
        if self.beta <= 0:
            out.append(f"beta must be > 0 (got {self.beta}); try 0.1")
        if self.lambda_desirable <= 0 or self.lambda_undesirable <= 0:
            out.append("lambda_desirable and lambda_undesirable must be > 0")
        if self.lr <= 0:
            out.append(f"lr must be > 0 (got {self.lr})")
        return out


def kto_loss(policy_logps: Tensor, ref_logps: Tensor, desirable: Tensor, *, beta: float, z0: Tensor | float,
             lambda_desirable: float = 1.0, lambda_undesirable: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean KTO loss over a batch of sequence log-probs ``[B]`` with ``desirable[b]`` True or False."""
    r = policy_logps - ref_logps
    z0 = torch.as_tensor(z0, dtype=r.dtype).detach()
    losses = torch.where(desirable, lambda_desirable * (1 - torch.sigmoid(beta * (r - z0))),
                         lambda_undesirable * (1 - torch.sigmoid(beta * (z0 - r))))
    rewards = (beta * r).detach()
    metrics = {"kl": z0, "rewards/desirable": rewards[desirable].mean() if desirable.any() else torch.tensor(0.0),
               "rewards/undesirable": rewards[~desirable].mean() if (~desirable).any() else torch.tensor(0.0)}
    return losses.mean(), metrics


def _logps(model: Any, batch: CompletionBatch) -> Tensor:
    logits, _ = forward(model, batch.ids, batch.attention_mask, cache=False)
    return sequence_logprobs(logits[:, :-1], batch.ids[:, 1:], batch.label_mask)


def train(cfg: KTOConfig, ctx: Any) -> Any:
    """KTO on the task's preferences, unpaired: chosen completions are desirable, rejected ones undesirable."""
    policy, reference = ctx.policy, ctx.reference
    data = ctx.preference_data()
    room = policy.max_length
    prompts = [p[-room // 2:] for p in policy.encode_prompts(data["prompt"])]
    # EOS only on completions that ended (ctx.preference_data's *_ended columns; a cut one must not learn to stop)
    chosen = policy.encode_completions(data["chosen"], data["chosen_ended"])
    rejected = policy.encode_completions(data["rejected"], data["rejected_ended"])
    examples = [(p, c[:room - len(p)], True) for p, c in zip(prompts, chosen)]
    examples += [(p, r[:room - len(p)], False) for p, r in zip(prompts, rejected)]
    micro = ctx.train.batch_size // ctx.train.grad_accum
    if micro < 2:
        raise ValueError("KTO needs at least 2 examples per micro-batch to estimate its KL reference point")

    def loss_fn(index: list[int]):
        ex = [examples[i] for i in index]
        p, c, d = [e[0] for e in ex], [e[1] for e in ex], torch.tensor([e[2] for e in ex], device=policy.device)
        matched = collate_completions(p, c, policy.pad_id, device=policy.device)
        mismatched = collate_completions(p, c[1:] + c[:1], policy.pad_id, device=policy.device)
        ctx.add_tokens(int(matched.attention_mask.sum()) * 2 + int(mismatched.attention_mask.sum()) * 2)
        with torch.no_grad():
            ref = _logps(reference.model, matched)
            z0 = (_logps(policy.model, mismatched) - _logps(reference.model, mismatched)).mean().clamp(min=0)
        return kto_loss(_logps(policy.model, matched), ref, d, beta=cfg.beta, z0=z0,
                        lambda_desirable=cfg.lambda_desirable, lambda_undesirable=cfg.lambda_undesirable)

    supervised_loop(ctx, policy, lr=cfg.lr, batches=infinite_batches(len(examples), micro, ctx.seed),
                    loss_fn=loss_fn, desc="kto")
    return policy


@hookimpl
def alignzoo_register_algos(register):
    register("kto", train, KTOConfig, description="KTO: unpaired desirable / undesirable examples")


@hookimpl
def alignzoo_config_searchpath():
    return ["pkg://alignzoo_kto.conf"]

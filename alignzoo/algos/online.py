"""Experience collection shared by the online optimizers (PPO, A2C): sample, score, shape, estimate advantages.

1. Sample completions for a batch of training prompts with the shared rollout engine (KV cache, EOS stop).
2. Score them with the reward model; a completion that never produced EOS loses ``missing_eos_penalty``
   (TRL's "EOS trick").
3. Log-probs of the sampled tokens under the policy (a training-graph forward at the sampling temperature, so the
   first PPO ratio is exactly 1) and the frozen reference; values from the value head. With one minibatch this
   policy forward is the first update's own forward, kept for it (``collect``'s ``first_order``).
4. Per-token reward: -beta * KL_t everywhere plus the score on the last completion token (EOS when it ended).
5. GAE advantages and returns; advantages whitened over the batch's valid tokens.

Under a distributed launcher each rank collects its shard of the global prompt batch (sampling exactly the tokens
one process would: ``distributed.RowShard``); whitening and the logged metrics use the whole batch's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from alignzoo import distributed
from alignzoo import rollout as ro
from alignzoo.errors import AlignzooError
from alignzoo.ops import gae, kl_penalty, masked_mean, masked_whiten, token_logprobs


class ValueHead(nn.Module):
    """A scalar head on the final hidden states; zero-initialized so it starts at V = 0 (OAI)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(hidden).squeeze(-1)


@dataclass
class Experience:
    rollout: Any  # ro.Rollout
    mask: Tensor  # [B, N] completion tokens
    logprobs: Tensor  # [B, N] old log-probs (policy at sampling time)
    ref_logprobs: Tensor  # [B, N]
    values: Tensor  # [B, N] old values
    scores: Tensor  # [B] reward-model score after the missing-EOS penalty
    rewards: Tensor  # [B, N] per-token shaped rewards
    advantages: Tensor  # [B, N] whitened
    returns: Tensor  # [B, N]
    kl: Tensor  # [B] sequence KL (k1 sum) of the sampled completions
    first_update: "FirstUpdate | None" = None  # the first optimizer step's forward, when collect ran it

    def select(self, idx: Tensor) -> "Experience":
        return Experience(self.rollout.select(idx), *(getattr(self, k)[idx] for k in (
            "mask", "logprobs", "ref_logprobs", "values", "scores", "rewards", "advantages", "returns", "kl")))


@dataclass
class FirstUpdate:
    """The forward of an iteration's first optimizer step, run by ``collect`` (see there): its rows in the step's
    order, and its outputs with their autograd graph."""
    order: Tensor  # [B] the rows of the experience, in the order the first minibatch takes them
    logprobs: Tensor  # [B, N], in ``order``
    values: Tensor
    entropy: Tensor | None


def policy_forward(model: Any, value_head: nn.Module, r: Any, temperature: float,
                   value_model: Any = None, *, entropy: str = "grad") -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-probs of the completion tokens, values at the positions that predict them, and the entropy per token:
    each ``[B, N]``. Values come from ``value_model``'s hidden states when given (a separate critic).
    ``entropy``: ``grad`` (differentiable), ``metric`` (no gradient: only logged, e.g. when its loss coefficient
    is 0, so backward skips the vocabulary-wide softmax) or ``none`` (not computed; None)."""
    ids, mask = r.input_ids, r.attention_mask
    p, n = r.prompt_ids.size(1), r.completion_ids.size(1)
    logits, _, hidden = ro.forward(model, ids, mask, cache=False, hidden=True, keep=n + 1)
    logits = logits[:, :n].float()
    if temperature != 1.0:
        logits = logits / max(temperature, 1e-7)
    logz = torch.logsumexp(logits, -1)
    logprobs = token_logprobs(logits, r.completion_ids, logz=logz)
    ent = None
    if entropy != "none":
        with torch.set_grad_enabled(torch.is_grad_enabled() and entropy == "grad"):
            ent = logz - (torch.softmax(logits, -1) * logits).sum(-1)
    if value_model is not None:
        _, _, hidden = ro.forward(value_model, ids, mask, cache=False, hidden=True)
    values = value_head(hidden[:, p - 1:p - 1 + n].float())
    return logprobs, values, ent


def reward_for(ctx: Any) -> Any:
    """The run's reward (the run builds a learned reward model for online optimizers when none is configured)."""
    if ctx.reward is None:
        raise AlignzooError(f"algo={ctx.cfg.algo.name} needs a reward; set reward=<name> (e.g. reward=learned)")
    return ctx.reward


@torch.no_grad()
def collect(ctx: Any, cfg: Any, prompts: list[str], value_head: nn.Module, reward: Any, beta: float,
            generator: torch.Generator, value_model: Any = None, *, first_order: Tensor | None = None,
            entropy: str = "none") -> Experience:
    """Steps 1-5 of the module docstring for one batch of prompts (this rank's shard of it, under a launcher).

    With ``first_order`` (the row order of the first optimizer step, when that step takes the whole batch and the
    model has no dropout), step 3's policy forward is that step's forward: in training mode, with gradients, rows in
    ``first_order``, entropy as ``entropy`` asks. Its detached outputs are the old log-probs and values (the same
    numbers: the weights have not moved yet) and the update reuses it (``Experience.first_update``) instead of a
    second forward over the same rows."""
    policy, reference = ctx.policy, ctx.reference
    engine = distributed.current()
    shard = engine.row_shard(len(prompts))
    prompts = engine.shard(prompts)
    encoded = [ids[-max(1, policy.max_length - cfg.max_new_tokens):] for ids in policy.encode_prompts(prompts)]
    policy.model.eval()
    r = ro.generate(policy.model, encoded, eos_id=policy.eos_id, pad_id=policy.pad_id,
                    max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, generator=generator, shard=shard)
    texts = r.texts(policy.tokenizer)
    scores = reward.score(prompts, texts, r.ended).to(r.completion_ids.device).float()
    scores = scores - cfg.missing_eos_penalty * (~r.ended).float()
    mask = r.completion_mask
    first = None
    if first_order is None:
        logprobs, values, _ = policy_forward(policy.model, value_head, r, cfg.temperature, value_model, entropy="none")
    else:
        policy.model.train()
        with torch.enable_grad():
            outputs = policy_forward(policy.model, value_head, r.select(first_order), cfg.temperature, value_model,
                                     entropy=entropy)
        first = FirstUpdate(first_order, *outputs)
        inverse = torch.argsort(first_order)
        logprobs, values = first.logprobs.detach()[inverse], first.values.detach()[inverse]
    ref_logprobs = ro.completion_logprobs(reference.model, r, temperature=cfg.temperature)
    kl_tok = kl_penalty(logprobs, ref_logprobs, estimator=cfg.kl_estimator)
    rewards = -beta * kl_tok * mask
    last = (mask.sum(-1) - 1).clamp(min=0)
    rewards[torch.arange(len(last)), last] += scores
    advantages, returns = gae(rewards, values, mask, gamma=cfg.gamma, lam=cfg.lam)
    if cfg.whiten_advantages and shard is not None:  # over the global batch, then this rank's rows
        advantages = masked_whiten(engine.gather_rows(advantages), engine.gather_rows(mask))[shard.rows]
    elif cfg.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    seq_kl = ((logprobs - ref_logprobs) * mask).sum(-1)
    ctx.add_tokens(int(r.attention_mask.sum()) * 3)
    return Experience(r, mask, logprobs, ref_logprobs, values, scores, rewards, advantages, returns, seq_kl, first)


def rollout_metrics(exp: Experience, beta: float) -> dict[str, float]:
    """Means over the batch (the global batch: every rank's rows, under a launcher)."""
    g = distributed.current().gather_rows
    m = g(exp.mask)
    return {
        "reward": float(g(exp.scores).mean()), "kl": float(g(exp.kl).mean()), "beta": beta,
        "advantages/mean": float(masked_mean(g(exp.advantages), m)),
        "returns/mean": float(masked_mean(g(exp.returns), m)),
        "values/mean": float(masked_mean(g(exp.values), m)), "length": float(m.sum(-1).float().mean()),
        "eos_share": float(g(exp.rollout.ended.float()).mean()),
    }


def prompt_batches(prompts: list[str], batch_size: int, seed: int):
    """Endless batches of training prompts, reshuffled every epoch from a seeded generator."""
    if not prompts:
        raise AlignzooError("the task gave no training prompts for online RL")
    gen = torch.Generator().manual_seed(seed)
    while True:
        for i in torch.randperm(len(prompts), generator=gen).split(batch_size):
            if len(i) == batch_size or len(prompts) < batch_size:
                yield [prompts[j] for j in i.tolist()]


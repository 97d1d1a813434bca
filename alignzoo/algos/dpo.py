"""DPO and its relatives (IPO, hinge/SLiC, cDPO): preference optimization without a reward model.

Rafailov et al. 2023 (DPO), Azar et al. 2023 (IPO), Zhao et al. 2023 (SLiC hinge), Mitchell 2023 (cDPO);
math, defaults and oracles in docs/algorithms.md#dpo-family.

Implementation details that matter:
1. One concatenated forward for chosen+rejected (``[chosen; rejected]`` in one batch) for the policy, and one for
   the frozen reference under ``no_grad``, each step (or once up front with ``precompute_ref``).
2. Sequence log-probs sum over completion tokens only; prompt and padding contribute nothing (``ops``).
3. Completions that ended end with EOS (a pad token distinct from EOS), so the model learns when to stop; one the
   sampler cut at its length limit (``chosen_ended`` / ``rejected_ended`` False) gets no EOS, so the model is not
   taught to stop where the completion was only cut off.
4. IPO uses length-averaged log-ratios (as TRL does, confirmed with the IPO authors); DPO and hinge use sums.
5. Dropout stays off (the tiny model's default), so the step-1 loss is exactly log 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from alignzoo.hookspecs import hookimpl
from alignzoo.ops import pad_completions, sequence_logprobs
from alignzoo.rollout import forward
from alignzoo.training import infinite_batches, supervised_loop


@dataclass
class DPOConfig:
    name: str = "dpo"
    beta: float = 0.1  # KL strength (IPO: tau); larger keeps the policy closer to the reference
    variant: str = "sigmoid"  # sigmoid (DPO) | ipo | hinge
    label_smoothing: float = 0.0  # cDPO: assumed share of flipped labels, in [0, 0.5); sigmoid only
    lr: float = 5e-4  # learning rate (tiny models from scratch need far more than the 1e-6 of large ones)
    length_normalize: Optional[bool] = None  # average log-probs over tokens; None: True for ipo, else False
    max_length: Optional[int] = None  # prompt+completion tokens; None: the model's context length
    max_prompt_length: Optional[int] = None  # prompt tokens kept (from the end); None: half of max_length
    precompute_ref: bool = False  # compute reference log-probs once before training instead of every step
    soft_labels: bool = False  # sigmoid: the feedback's chosen_prob p is the target (per-pair cDPO eps = 1 - p)

    def problems(self) -> list[str]:
        out = []
        if self.beta <= 0:
            out.append(f"beta must be > 0 (got {self.beta}); try 0.1")
        if self.variant not in VARIANTS:
            out.append(f"variant must be one of {', '.join(VARIANTS)} (got {self.variant!r})")
        if not 0.0 <= self.label_smoothing < 0.5:
            out.append(f"label_smoothing must be in [0, 0.5) (got {self.label_smoothing})")
        elif self.label_smoothing > 0 and self.variant != "sigmoid":
            out.append(f"label_smoothing (cDPO) only applies to variant=sigmoid (got variant={self.variant})")
        if self.soft_labels and (self.variant != "sigmoid" or self.label_smoothing > 0):
            out.append("soft_labels needs variant=sigmoid and label_smoothing=0 (the soft label is the per-pair "
                       f"smoothing; got variant={self.variant}, label_smoothing={self.label_smoothing})")
        if self.lr <= 0:
            out.append(f"lr must be > 0 (got {self.lr})")
        return out


# -- losses: per-example loss as a function of h = log-ratio(chosen) - log-ratio(rejected) ------------------------

def _sigmoid(h: Tensor, beta: float, eps: float | Tensor) -> Tensor:
    # cDPO: -(1-eps) log s(beta h) - eps log s(-beta h); eps = 0 is DPO's softplus(-beta h)
    return (1 - eps) * F.softplus(-beta * h) + eps * F.softplus(beta * h)


def _ipo(h: Tensor, beta: float, eps: float) -> Tensor:
    return (h - 1 / (2 * beta)) ** 2


def _hinge(h: Tensor, beta: float, eps: float) -> Tensor:
    return torch.relu(1 - beta * h)


VARIANTS: dict[str, Callable[[Tensor, float, float], Tensor]] = {"sigmoid": _sigmoid, "ipo": _ipo, "hinge": _hinge}


def dpo_loss(policy_chosen_logps: Tensor, policy_rejected_logps: Tensor, ref_chosen_logps: Tensor,
             ref_rejected_logps: Tensor, *, beta: float, variant: str = "sigmoid",
             label_smoothing: float | Tensor = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Preference loss on sequence log-probs (all ``Tensor[B]``) -> (mean loss, metrics).

    h = [log pi(y_w) - log ref(y_w)] - [log pi(y_l) - log ref(y_l)]
    sigmoid: -(1-e) log sigmoid(beta h) - e log sigmoid(-beta h)   (e = label_smoothing; e = 0 is DPO; a
             ``Tensor[B]`` e = 1 - chosen_prob is the soft-label loss, ``soft_target_eps``)
    ipo:     (h - 1/(2 beta))^2
    hinge:   relu(1 - beta h)
    Metrics: rewards/chosen = mean beta (log pi - log ref)(y_w), rewards/rejected likewise, rewards/margins,
    rewards/accuracies = share with chosen reward strictly greater, logps/chosen, logps/rejected.
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    losses = VARIANTS[variant](chosen_ratio - rejected_ratio, beta, label_smoothing)
    chosen_rewards = (beta * chosen_ratio).detach()
    rejected_rewards = (beta * rejected_ratio).detach()
    metrics = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean(),
        "logps/chosen": policy_chosen_logps.detach().mean(),
        "logps/rejected": policy_rejected_logps.detach().mean(),
    }
    return losses.mean(), metrics


def soft_target_eps(ctx: Any, n: int) -> tuple[Tensor, int]:
    """Per-pair smoothing 1 - chosen_prob from the feedback stage's soft AI labels (``algo.soft_labels``), and how
    many pairs had one; pairs without (simulated or human labels) get 0, the hard DPO loss. The feedback dataset's
    rows are the preference pairs, in the same order."""
    ranked = ctx.ranking_data()
    if ranked is None or "chosen_prob" not in ranked.column_names:
        return torch.zeros(n), 0
    return 1.0 - torch.tensor(ranked["chosen_prob"], dtype=torch.float32), n


# -- data ----------------------------------------------------------------------------------------------------------

@dataclass
class PairBatch:
    input_ids: Tensor  # [2B, T]: chosen rows then rejected rows, right-padded
    attention_mask: Tensor  # [2B, T]
    completion_mask: Tensor  # [2B, T-1]: 1 where labels (ids shifted by one) are completion tokens
    index: Tensor  # [B] example indices (for precomputed reference log-probs)


def tokenize_pairs(policy: Any, data: Any, *, max_length: int, max_prompt_length: int) -> list[tuple]:
    """(prompt_ids, chosen_ids, rejected_ids) per pair; EOS only on completions that ended (``chosen_ended`` /
    ``rejected_ended``; all, when ``data`` lacks them); long prompts keep their end, long completions are cut."""
    prompts = policy.encode_prompts(data["prompt"])
    chosen = policy.encode_completions(data["chosen"], ended_flags(data, "chosen_ended"))
    rejected = policy.encode_completions(data["rejected"], ended_flags(data, "rejected_ended"))
    out = []
    for p, c, r in zip(prompts, chosen, rejected):
        p = p[-max_prompt_length:]
        room = max_length - len(p)
        out.append((p, c[:room], r[:room]))
    return out


def ended_flags(data: Any, column: str) -> Optional[list]:
    """The ``*_ended`` column of a pair dataset, or None (every completion ended) when it has none."""
    names = getattr(data, "column_names", None) or list(data.keys())
    return list(data[column]) if column in names else None


def collate_pairs(pairs: list[tuple], index: list[int], pad_id: int, device: torch.device) -> PairBatch:
    prompts = [p for p, _, _ in pairs] * 2
    completions = [c for _, c, _ in pairs] + [r for _, _, r in pairs]
    ids, attn, comp = pad_completions(prompts, completions, pad_id, device=device)
    return PairBatch(ids, attn, comp[:, 1:], torch.tensor(index))


def pair_logps(model: Any, batch: PairBatch, length_normalize: bool) -> tuple[Tensor, Tensor]:
    """Sequence log-probs of the chosen and rejected rows from one concatenated forward. The LM head runs only
    from the first position that predicts a completion token in some row (the prompt-only ones add nothing)."""
    ids, comp = batch.input_ids, batch.completion_mask
    counted = comp.any(0).nonzero()
    first = int(counted[0, 0]) if len(counted) else 0  # first label column (ids[:, 1:]) that counts in any row
    logits, _ = forward(model, ids, batch.attention_mask, cache=False, keep=ids.size(1) - first)
    # fp32 under mixed precision too (a no-op in fp32): bf16 log-probs would round the loss by ~1e-3
    logps = sequence_logprobs(logits[:, :-1].float(), ids[:, first + 1:], comp[:, first:])
    if length_normalize:
        logps = logps / batch.completion_mask.sum(-1).clamp(min=1)
    half = logps.size(0) // 2
    return logps[:half], logps[half:]


# -- training ------------------------------------------------------------------------------------------------------

def train(cfg: DPOConfig, ctx: Any) -> Any:
    """Optimize the policy on the task's preference pairs with the configured DPO-family loss."""
    policy, reference = ctx.policy, ctx.reference
    data = ctx.preference_data()
    max_length = cfg.max_length or policy.max_length
    max_prompt = cfg.max_prompt_length or max_length // 2
    pairs = tokenize_pairs(policy, data, max_length=max_length, max_prompt_length=max_prompt)
    cut = sum(len(ids) > max_prompt for ids in policy.encode_prompts(data["prompt"]))
    if cut:
        ctx.note(f"{cut} of {len(pairs)} prompts are longer than algo.max_prompt_length={max_prompt} tokens and keep "
                 "only their end; raise algo.max_prompt_length / algo.max_length (within the model's context) to "
                 "keep more")
    normalize = cfg.length_normalize if cfg.length_normalize is not None else cfg.variant == "ipo"
    micro = ctx.train.batch_size // ctx.train.grad_accum
    device = policy.device
    eps: Optional[Tensor] = None
    if cfg.soft_labels:
        eps, soft = soft_target_eps(ctx, len(pairs))
        ctx.note(f"{cfg.name}: soft labels: {soft} of {len(pairs)} pairs use the feedback's chosen_prob as the target "
                 f"(mean {1 - float(eps.mean()):.3f}); the rest the hard label")
        ctx.extra_metrics["train/soft_label_mean"] = 1 - float(eps.mean())

    def batch_of(index: list[int]) -> PairBatch:
        return collate_pairs([pairs[i] for i in index], index, policy.pad_id, device)

    ref_cache: Optional[tuple[Tensor, Tensor]] = None
    if cfg.precompute_ref:
        chosen, rejected = [], []
        with torch.no_grad():
            for i in range(0, len(pairs), micro):
                c, r = pair_logps(reference.model, batch_of(list(range(i, min(i + micro, len(pairs))))), normalize)
                chosen.append(c)
                rejected.append(r)
        ref_cache = (torch.cat(chosen), torch.cat(rejected))

    def loss_fn(index: list[int]) -> tuple[Tensor, dict[str, Tensor]]:
        batch = batch_of(index)
        ctx.add_tokens(int(batch.attention_mask.sum()) * (1 if ref_cache is not None else 2))
        if ref_cache is not None:
            ref_c, ref_r = ref_cache[0][batch.index], ref_cache[1][batch.index]
        else:
            with torch.no_grad():
                ref_c, ref_r = pair_logps(reference.model, batch, normalize)
        pol_c, pol_r = pair_logps(policy.model, batch, normalize)
        smoothing = eps[batch.index].to(pol_c.device) if eps is not None else cfg.label_smoothing
        return dpo_loss(pol_c, pol_r, ref_c, ref_r, beta=cfg.beta, variant=cfg.variant, label_smoothing=smoothing)

    batches = infinite_batches(len(pairs), micro, ctx.seed)
    supervised_loop(ctx, policy, lr=cfg.lr, batches=batches, loss_fn=loss_fn, desc=cfg.name)
    return policy


PRESETS = {
    "dpo": DPOConfig(name="dpo"),
    "ipo": DPOConfig(name="ipo", variant="ipo", beta=0.1),
    "cdpo": DPOConfig(name="cdpo", label_smoothing=0.1),
}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    for name, preset in PRESETS.items():
        register(name, train, preset, description=f"DPO family ({preset.variant}"
                 + (f", label_smoothing={preset.label_smoothing}" if preset.label_smoothing else "") + ")")

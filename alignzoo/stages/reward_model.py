"""The ``reward_model`` stage: train a scalar reward model on feedback groups (K completions of a prompt, ranked
best first), with a held-out split of prompts, and normalization so that the reference policy's samples (the
feedback completions themselves) score mean 0, std 1. The held-out prompts are split in two disjoint parts: the
early-stopping part picks the best step, the gating part (``reward.gate_fraction`` of the held-out prompts) is
what the stage reports as ``heldout`` and what the quality gate and ``rm_accuracy`` read, so the reported accuracy
is not the maximum over checkpoints of the same numbers.

Accuracy is measured against the gold order when the feedback carries gold scores (the simulated task), else
against the labels; ties never count as correct (strict >).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from alignzoo.errors import AlignzooError
from alignzoo.rewards.scalar_model import RewardModelInputs, ScalarRewardModel, right_pad, save_reward_model
from alignzoo.rewards.losses import all_pairs_loss, bradley_terry_loss, plackett_luce_loss


@dataclass
class Group:
    prompt: str
    completions: list[str]  # in rank order, best first
    ended: list[bool]
    gold: Optional[list[float]]  # gold score per completion (same order), when known
    chosen_prob: Optional[float] = None  # soft AI label P(best > worst), when the feedback records one


def groups_from_feedback(data: Any) -> list[Group]:
    """Feedback rows as ranked groups: full K-wise rankings when present, else (chosen, rejected) pairs."""
    cols = set(data.column_names)
    out = []
    for row in data:
        if {"completions", "ranking"} <= cols:
            order = row["ranking"]
            gold = [row["gold"][i] for i in order] if "gold" in cols else None
            ended = [row["ended"][i] for i in order] if "ended" in cols else [True] * len(order)
            out.append(Group(row["prompt"], [row["completions"][i] for i in order], ended, gold,
                             row.get("chosen_prob")))
        else:
            out.append(Group(row["prompt"], [row["chosen"], row["rejected"]], [True, True], None,
                             row.get("chosen_prob")))
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(a: np.ndarray) -> np.ndarray:
        order = np.argsort(a, kind="stable")
        r = np.empty(len(a))
        r[order] = np.arange(len(a))
        for v in np.unique(a):  # average the ranks of ties
            idx = a == v
            if idx.sum() > 1:
                r[idx] = r[idx].mean()
        return r
    return pearson(ranks(np.asarray(x, float)), ranks(np.asarray(y, float)))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


LOSSES: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {
    # scores[b, k] in rank order; "bt" uses the best and the worst of each group (the labelled pair), with the
    # soft labels as its target when given (reward.soft_labels; the others take hard rankings only)
    "bt": lambda s, margin=None, center=0.0, target=None: bradley_terry_loss(s[:, 0], s[:, -1], margin=margin,
                                                                            center_coef=center, target=target),
    "pl": lambda s, margin=None, center=0.0: plackett_luce_loss(s),
    "all_pairs": lambda s, margin=None, center=0.0: all_pairs_loss(s),
}


def _scores(model: ScalarRewardModel, inputs: RewardModelInputs, groups: list[Group], device: Any) -> torch.Tensor:
    k = len(groups[0].completions)
    seqs = inputs.encode([g.prompt for g in groups for _ in range(k)], [c for g in groups for c in g.completions],
                         [e for g in groups for e in g.ended])
    ids, mask = right_pad(seqs, inputs.tokenizer.pad_token_id or 0, device)
    return model(ids, mask).float().view(len(groups), k)


@torch.no_grad()
def heldout_quality(model: ScalarRewardModel, inputs: RewardModelInputs, groups: list[Group], device: Any,
                    batch: int = 64) -> dict[str, float]:
    """Pairwise accuracy (against gold when known, else labels), and Spearman/Pearson with gold."""
    model.eval()
    scores = torch.cat([_scores(model, inputs, groups[i:i + batch], device) for i in range(0, len(groups), batch)])
    s = scores.cpu().numpy()
    correct = total = 0
    label_correct = 0
    for row, g in zip(s, groups):
        label_correct += row[0] > row[-1]
        for i in range(len(row)):
            for j in range(i + 1, len(row)):
                if g.gold is not None:
                    if g.gold[i] == g.gold[j]:
                        continue
                    better, worse = (i, j) if g.gold[i] > g.gold[j] else (j, i)
                else:
                    better, worse = i, j
                correct += row[better] > row[worse]
                total += 1
    out = {"accuracy": correct / max(1, total), "label_accuracy": label_correct / max(1, len(groups)),
           "pairs": total, "groups": len(groups)}
    if groups[0].gold is not None:
        gold = np.array([x for g in groups for x in g.gold])
        out["gold_spearman"] = spearman(s.reshape(-1), gold)
        out["gold_pearson"] = pearson(s.reshape(-1), gold)
    return out


def soft_targets(groups: list[Group]) -> torch.Tensor:
    """Per-group BT targets from the soft AI labels; 1.0 (the hard label) where a group has none."""
    return torch.tensor([1.0 if g.chosen_prob is None else float(g.chosen_prob) for g in groups])


def split_heldout(n: int, heldout_fraction: float, gate_fraction: float, seed: int
                  ) -> tuple[list[int], list[int], list[int]]:
    """Disjoint (train, early-stopping, gating) group indices: ``heldout_fraction`` of the groups held out (at least
    two), of which ``gate_fraction`` (at least one each way) gate and report, the rest pick the best step."""
    order = [int(i) for i in np.random.default_rng(seed).permutation(n)]
    n_held = min(n - 1, max(2, int(round(heldout_fraction * n))))
    n_gate = min(n_held - 1, max(1, int(round(gate_fraction * n_held))))
    return order[n_held:], order[:n_held - n_gate], order[n_held - n_gate:n_held]


def train_reward_model(out_dir: Path, *, groups: list[Group], model: ScalarRewardModel, inputs: RewardModelInputs,
                       cfg: Any, seed: int, device: Any, progress: Callable[[int, float], None] | None = None
                       ) -> dict[str, Any]:
    """Train, early-stop on the early-stopping split, report and gate on the disjoint gating split, normalize, save;
    returns the stage metadata."""
    if len(groups) < 3:
        raise AlignzooError(f"{len(groups)} feedback groups cannot make a training, an early-stopping and a gating split "
                         "(3 at least); collect more feedback (task.feedback_prompts)")
    train_idx, stop_idx, gate_idx = split_heldout(len(groups), cfg.heldout_fraction,
                                                  getattr(cfg, "gate_fraction", 0.5), seed)
    train, held, gated = ([groups[i] for i in idx] for idx in (train_idx, stop_idx, gate_idx))
    soft = bool(getattr(cfg, "soft_labels", False))
    steps = max(1, int(math.ceil(cfg.epochs * len(train) / cfg.batch_size)))
    torch.manual_seed(seed)
    model.to(device)
    # the head starts from scratch while the body is pretrained: give it a larger step so that it finds the
    # reward direction before the body drifts (a plateau at log 2 for ~100 steps otherwise)
    head_mult = getattr(cfg, "head_lr_mult", 1.0)
    opt = torch.optim.AdamW([{"params": [p for p in model.backbone.parameters() if p.requires_grad], "lr": cfg.lr},
                             {"params": list(model.head.parameters()), "lr": cfg.lr * head_mult}], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / steps))  # linear to 0 (OAI)
    gen = torch.Generator().manual_seed(seed)
    perm, cursor = torch.randperm(len(train), generator=gen), 0
    loss_fn = LOSSES[cfg.loss]
    margin = cfg.margin or None
    best, best_acc, history = None, -1.0, []
    for step in range(1, steps + 1):
        if cursor + cfg.batch_size > len(train):
            perm, cursor = torch.randperm(len(train), generator=gen), 0
        batch = [train[int(i)] for i in perm[cursor:cursor + cfg.batch_size]]
        cursor += cfg.batch_size
        model.train()
        target = soft_targets(batch).to(device) if soft else None  # None: the hard loss, bit for bit
        loss, _ = loss_fn(_scores(model, inputs, batch, device), margin, cfg.center_coef, **(
            {"target": target} if soft else {}))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress is not None:
            progress(step, loss.item())
        if step % cfg.eval_every == 0 or step == steps:
            q = heldout_quality(model, inputs, held, device)
            history.append({"step": step, "loss": loss.item(), **q})
            if q["accuracy"] > best_acc:
                best_acc, best = q["accuracy"], copy.deepcopy(model.state_dict())
    model.load_state_dict(best)
    stopping = heldout_quality(model, inputs, held, device)
    quality = heldout_quality(model, inputs, gated, device)  # never seen by training or by the choice of step
    with torch.no_grad():  # normalization under the reference policy's samples: every feedback completion
        raw = torch.cat([_scores(model, inputs, groups[i:i + 64], device).reshape(-1)
                         for i in range(0, len(groups), 64)])
    mean, std = float(raw.mean()), float(raw.std(unbiased=False)) or 1.0
    meta = {"gain": 1.0 / std, "bias": -mean / std, "heldout": quality, "early_stopping": stopping,
            "history": history, "steps": steps, "train_groups": len(train), "heldout_groups": len(held) + len(gated),
            "early_stopping_groups": len(held), "gate_groups": len(gated),
            "splits": {"early_stopping": stop_idx, "gate": gate_idx}, "soft_labels": soft,
            "soft_label_mean": float(soft_targets(train).mean()) if soft else None,
            "loss": cfg.loss, "backbone": cfg.backbone,
            "k": len(groups[0].completions), "best_step": max(history, key=lambda h: h["accuracy"])["step"]}
    save_reward_model(out_dir, model, inputs, meta)
    return meta

"""Language-model stages of the RLHF recipe: ``pretrain`` a base model on a corpus, then ``sft`` on
demonstrations. Plain next-token cross-entropy; the loss mask keeps SFT on the completion tokens.

Measured choices (docs/algorithms.md#pretraining-and-sft): AdamW lr 2e-3, betas (0.9, 0.95), weight decay 0.01, clip
1.0, 50 warmup steps and then a *constant* rate (a cosine decay hurt at budgets of a few hundred steps), rows of
64 tokens packed from whole sentences, each sentence preceded by EOS (which doubles as BOS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from alignzoo.ops import pad_completions, right_pad
from alignzoo.rollout import forward


@dataclass
class LMTrainSettings:
    steps: int
    lr: float
    batch_size: int = 32
    warmup_steps: int = 50
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    max_grad_norm: float = 1.0
    seed: int = 0


def pack_rows(sequences: list[list[int]], row_len: int, pad_id: int) -> torch.Tensor:
    """Greedily pack whole token sequences into rows of ``row_len`` (a sequence never straddles two rows);
    pad the rest. Sequences longer than a row are cut."""
    rows, current = [], []
    for seq in sequences:
        seq = seq[:row_len]
        if len(current) + len(seq) > row_len:
            rows.append(current + [pad_id] * (row_len - len(current)))
            current = []
        current = current + seq
    if current:
        rows.append(current + [pad_id] * (row_len - len(current)))
    return torch.tensor(rows, dtype=torch.long)


def lm_loss(model: Any, ids: torch.Tensor, loss_mask: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose *label* has ``loss_mask == 1``."""
    logits, _ = forward(model, ids, attn, cache=False, pos=torch.arange(ids.size(1), device=ids.device).expand_as(ids))
    labels = ids[:, 1:]
    mask = loss_mask[:, 1:].float()
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels.flatten(), reduction="none").view_as(labels)
    return (ce * mask).sum() / mask.sum().clamp(min=1)


def train_lm(model: Any, rows: torch.Tensor, loss_mask: torch.Tensor, attn: torch.Tensor, settings: LMTrainSettings,
             *, progress: Optional[Callable[[int, float], None]] = None) -> list[float]:
    """Train on (rows, loss_mask, attn) batches sampled from a seeded generator; returns the loss per step."""
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, betas=settings.betas,
                            weight_decay=settings.weight_decay)
    warm = max(1, settings.warmup_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    model.train()
    losses = []
    device = next(model.parameters()).device
    n = rows.size(0)
    order = torch.randperm(n, generator=gen)
    cursor = 0
    for step in range(settings.steps):
        if cursor + settings.batch_size > n:
            order, cursor = torch.randperm(n, generator=gen), 0
        idx = order[cursor:cursor + settings.batch_size]
        cursor += settings.batch_size
        loss = lm_loss(model, rows[idx].to(device), loss_mask[idx].to(device), attn[idx].to(device))
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"language-model loss became {loss.item()} at step {step + 1}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step + 1, losses[-1])
    model.eval()
    return losses


@torch.no_grad()
def perplexity(model: Any, sequences: list[list[int]], pad_id: int, batch_size: int = 64) -> float:
    """Per-token perplexity of whole sequences (every token after the first is predicted)."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, len(sequences), batch_size):
        chunk = sequences[i:i + batch_size]
        ids, mask = right_pad(chunk, pad_id, device=device)
        logits, _ = forward(model, ids, mask, cache=False)
        ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
        m = mask[:, 1:].flatten().float()
        total += float((ce * m).sum())
        count += int(m.sum())
    return math.exp(total / max(1, count))


def sft_batch(prompts: list[list[int]], completions: list[list[int]], pad_id: int, max_len: int):
    """Right-padded prompt+completion rows with a loss mask on the completion tokens."""
    ids, attn, loss_mask = pad_completions(prompts, completions, pad_id, max_len=max_len)
    return ids, loss_mask, attn

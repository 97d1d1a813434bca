"""Training-loop basics every algorithm gets from the core: optimizer, LR schedule, gradient accumulation,
gradient clipping, a finite-loss guard and evaluation every N steps. Plain functions, no trainer hierarchy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

from alignzoo.errors import TrainingDivergedError

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, lr, cfg: torch.optim.AdamW(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                                       weight_decay=cfg.weight_decay),
    "adam": lambda params, lr, cfg: torch.optim.Adam(params, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                                     weight_decay=cfg.weight_decay),
    "rmsprop": lambda params, lr, cfg: torch.optim.RMSprop(params, lr=lr, eps=cfg.eps, weight_decay=cfg.weight_decay),
    "sgd": lambda params, lr, cfg: torch.optim.SGD(params, lr=lr, weight_decay=cfg.weight_decay),
}


def _constant(step: int, warmup: int, total: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _linear(step: int, warmup: int, total: int) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def _cosine(step: int, warmup: int, total: int) -> float:
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


#: LR multiplier as a function of (step, warmup_steps, total_steps)
SCHEDULES: dict[str, Callable[[int, int, int], float]] = {"constant": _constant, "linear": _linear, "cosine": _cosine}


def build_optimizer(params, lr: float, train_cfg: Any) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    return OPTIMIZERS[train_cfg.optimizer](params, lr, train_cfg)


def build_scheduler(optimizer: torch.optim.Optimizer, train_cfg: Any, total_steps: int | None = None):
    fn = SCHEDULES[train_cfg.scheduler]
    total = total_steps or train_cfg.steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: fn(s, train_cfg.warmup_steps, total))


def check_finite(metrics: dict[str, Any], step: int) -> None:
    """Stop the run, naming the step and the quantity, when a loss or metric is NaN or inf."""
    for name, value in metrics.items():
        v = float(value.detach()) if hasattr(value, "detach") else float(value)
        if not math.isfinite(v):
            raise TrainingDivergedError(
                f"{name} became {v} at step {step}; lower the learning rate (algo.lr), raise train.max_grad_norm "
                f"clipping, or check the reward for NaN/inf values")


@dataclass
class Stepper:
    """One optimizer step from several micro-batch losses: accumulate, clip, step, schedule."""

    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    max_grad_norm: float | None

    @classmethod
    def create(cls, params, lr: float, train_cfg: Any, total_steps: int | None = None) -> "Stepper":
        params = [p for p in params if p.requires_grad]
        opt = build_optimizer(params, lr, train_cfg)
        return cls(params, opt, build_scheduler(opt, train_cfg, total_steps), train_cfg.max_grad_norm)

    def step(self) -> float:
        """Clip, step, advance the schedule, zero the gradients; returns the pre-clip gradient norm."""
        if self.max_grad_norm and self.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        else:
            norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in self.params if p.grad is not None))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def supervised_loop(ctx: Any, policy: Any, *, lr: float, batches: Iterator[Any],
                    loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, torch.Tensor]]],
                    params=None, desc: str = "train", modules: dict[str, torch.nn.Module] | None = None) -> None:
    """The loop shared by offline algorithms (DPO, SFT, ...): ``train.steps`` optimizer steps, each from
    ``train.grad_accum`` micro-batches; logs ``train/*`` every step and evaluates every ``train.eval_every``.
    Checkpoints (``run.checkpoint_every``) hold the policy, the ``modules`` that own any other ``params``, the
    optimizer, the schedule and the data position of ``batches`` (a ``checkpoint.Replay``, as
    ``infinite_batches`` returns)."""
    from alignzoo import checkpoint

    tc = ctx.train
    stepper = Stepper.create(params if params is not None else policy.model.parameters(), lr, tc)
    state = checkpoint.TrainingState(modules={"policy": policy.model, **(modules or {})}, stepper=stepper,
                                     objects={"batches": batches} if hasattr(batches, "state_dict") else {})
    start = checkpoint.resume(ctx, state)
    policy.model.train()
    with ctx.progress(total=tc.steps, desc=desc) as bar:
        bar.update(start)
        for step in range(start + 1, tc.steps + 1):
            sums: dict[str, float] = {}
            for _ in range(tc.grad_accum):
                loss, metrics = loss_fn(next(batches))
                (loss / tc.grad_accum).backward()
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach()) / tc.grad_accum
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v) / tc.grad_accum
            check_finite({f"train/{k}": v for k, v in sums.items()}, step)
            logged = {f"train/{k}": v for k, v in sums.items()}
            logged["train/lr"] = stepper.lr
            logged["train/grad_norm"] = stepper.step()
            ctx.log(logged, step)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss']:.4f}")
            ctx.maybe_evaluate(policy, step)
            checkpoint.save_if_due(ctx, state, step)
    policy.model.eval()


def infinite_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Index batches over ``n`` examples, reshuffled every epoch from a seeded generator (never global RNG);
    resumable from a checkpoint (``checkpoint.Replay``)."""
    from alignzoo.checkpoint import Replay

    return Replay(lambda: _index_batches(n, batch_size, seed))


def _index_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    if n <= 0:
        raise ValueError("no training examples")
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=gen).tolist()
        for i in range(0, n - batch_size + 1 if n >= batch_size else 1, batch_size):
            yield order[i:i + batch_size] if n >= batch_size else order

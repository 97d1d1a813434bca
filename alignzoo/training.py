"""The training loop every algorithm stands on, and its parts: optimizer, LR schedule, gradient accumulation,
gradient clipping, a finite-loss guard, evaluation every N steps and checkpoints. Plain functions, no trainer
hierarchy: an algorithm is a step function on ``loop`` (``supervised_loop`` for offline losses), and its
optimizer steps go through ``optimizer_step`` (mixed precision, gradient scaling and the average over ranks in
``Stepper``)."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from alignzoo import distributed
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
    """One optimizer step from several micro-batch losses: accumulate, clip, step, schedule.

    Under a distributed launcher it is also where data parallelism happens (``alignzoo.distributed``): ``create``
    starts every rank from rank 0's weights and ``step`` averages the gradients over ranks before clipping. With
    fp16 it scales the losses given to ``backward``."""

    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    max_grad_norm: float | None
    scaler: Any = None  # torch.amp.GradScaler under fp16, else None
    _scaled: bool = False  # gradients since the last step came from ``backward`` (scaled under fp16)

    @classmethod
    def create(cls, params, lr: float, train_cfg: Any, total_steps: int | None = None) -> "Stepper":
        engine = distributed.current()
        params = [p for p in params if p.requires_grad]
        engine.broadcast_(params)
        opt = build_optimizer(params, lr, train_cfg)
        return cls(params, opt, build_scheduler(opt, train_cfg, total_steps), train_cfg.max_grad_norm,
                   engine.grad_scaler())

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, outside autocast and scaled under fp16 (loops may also call it themselves)."""
        with distributed.current().no_autocast():
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        self._scaled = self.scaler is not None

    def step(self) -> float:
        """Average over ranks, clip, step, advance the schedule, zero the gradients; returns the pre-clip
        gradient norm."""
        distributed.current().average_gradients_(self.params)
        if self._scaled:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm and self.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        else:
            norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in self.params if p.grad is not None))
        if self._scaled:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._scaled = False
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


@dataclass
class MicroLoss:
    """One micro-batch's part of an optimizer step: its loss (a mean over its rows or tokens), the metrics to log
    (means, like the loss) and its ``weight`` in the mean over every micro-batch and rank (``token_weights`` for
    token means; 1 for means over equal shards of rows). The loss that reaches ``backward`` is
    ``weight * loss / micro_batches``."""

    loss: torch.Tensor
    metrics: dict[str, Any]
    weight: float = 1.0


def token_weights(masks: Sequence[torch.Tensor]) -> list[float]:
    """Weights that turn token means over ``masks`` (this rank's micro-batches of one optimizer step) into the token
    mean over all of them and every rank: ``world * n * t_m / T``, ``t_m`` the tokens of micro-batch ``m`` and ``T``
    the total. Exactly ``[1.0]`` for one micro-batch in one process."""
    engine = distributed.current()
    local = [float(m.sum()) for m in masks]
    if len(masks) == 1 and not engine.distributed:
        return [1.0]
    total = max(engine.sum(sum(local)), 1.0)
    return [engine.world_size * len(masks) * t / total for t in local]


def optimizer_step(stepper: Stepper, micro_losses: Iterable[MicroLoss], *, step: int,
                   micro_batches: int = 1) -> dict[str, float]:
    """One optimizer step from ``micro_batches`` micro-batch losses, each backpropagated as it comes (``micro_losses``
    may be a generator, so only one micro-batch's graph is alive at a time): the means of ``loss`` and the metrics
    over micro-batches and ranks, checked finite, then ``lr`` (this step's) and ``grad_norm`` (before clipping).
    Gradient scaling, autocast and the average over ranks happen in ``Stepper``."""
    sums: dict[str, float] = {}
    for micro in micro_losses:
        loss = micro.loss if micro.weight == 1.0 else micro.weight * micro.loss
        stepper.backward(loss / micro_batches)
        for k, v in {"loss": loss, **micro.metrics}.items():  # ``loss`` carries its weight already
            value = _float(v) if k == "loss" or micro.weight == 1.0 else micro.weight * _float(v)
            sums[k] = sums.get(k, 0.0) + value / micro_batches
    means = distributed.current().mean(sums)  # the global batch's means (a no-op in one process)
    check_finite({f"train/{k}": v for k, v in means.items()}, step)
    means["lr"] = stepper.lr
    means["grad_norm"] = stepper.step()
    return means


def _float(value: Any) -> float:
    return float(value.detach()) if hasattr(value, "detach") else float(value)


@dataclass
class StepClock:
    """Throughput of the optimizer alone: the wall time of the step functions (sampling, forwards, backward and the
    optimizer step) and the tokens they add to the record, without evaluations, checkpoints or pipeline stages, so
    that s/step compares algorithms and machines rather than evaluation settings."""

    steps: int = 0
    seconds: float = 0.0
    tokens: int = 0

    @contextlib.contextmanager
    def timing(self, record: Any) -> Iterator[None]:
        tokens, t0 = record.tokens, time.perf_counter()
        yield
        self.seconds += time.perf_counter() - t0
        self.tokens += record.tokens - tokens
        self.steps += 1

    def metrics(self) -> dict[str, float]:
        """The running means, logged with each step's train metrics (``perf/*`` in metrics.jsonl)."""
        return {"perf/s_per_step": self.seconds / max(self.steps, 1),
                "perf/tokens_per_s": self.tokens / self.seconds if self.seconds > 0 else 0.0}

    def summary(self) -> dict[str, float]:
        """What ``record.json`` keeps under ``perf`` (not under ``metrics``: timings differ between identical runs,
        and a record's metrics are compared bit for bit)."""
        return {"steps": self.steps, "train_s": round(self.seconds, 6), "tokens": self.tokens,
                "s_per_step": self.seconds / max(self.steps, 1),
                "tokens_per_s": self.tokens / self.seconds if self.seconds > 0 else 0.0}


def loop(ctx: Any, state: Any, step_fn: Callable[[int], dict[str, float]], *, policy: Any, desc: str,
         postfix: dict[str, str] | None = None) -> None:
    """The training loop every algorithm runs on: resume from the job's last checkpoint, then ``train.steps``
    optimizer iterations, each ``step_fn(step)`` (the algorithm's work for one step, returning its train metrics),
    logged as ``train/*``, then an evaluation of ``policy`` every ``train.eval_every`` steps and a checkpoint of
    ``state`` (a ``checkpoint.TrainingState``) every ``run.checkpoint_every``. ``policy.model`` is in training mode
    during the loop (a step function may switch it, e.g. to sample) and in eval mode after it; ``postfix`` maps
    metrics to the progress bar's formats."""
    from alignzoo import checkpoint

    start = checkpoint.resume(ctx, state)
    policy.model.train()
    clock = StepClock()
    with ctx.progress(total=ctx.train.steps, desc=desc) as bar:
        bar.update(start)
        for step in range(start + 1, ctx.train.steps + 1):
            with clock.timing(ctx.record):
                metrics = step_fn(step)
            logged = {f"train/{k}": v for k, v in metrics.items()}
            check_finite(logged, step)
            ctx.log({**logged, **clock.metrics()}, step)
            ctx.record.perf = clock.summary()
            bar.update(1)
            if postfix:
                bar.set_postfix({k: f"{logged[f'train/{k}']:{fmt}}" for k, fmt in postfix.items()})
            ctx.maybe_evaluate(policy, step)
            checkpoint.save_if_due(ctx, state, step)
    policy.model.eval()


def supervised_loop(ctx: Any, policy: Any, *, lr: float, batches: Iterator[Any],
                    loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, torch.Tensor]]],
                    params=None, desc: str = "train", modules: dict[str, torch.nn.Module] | None = None) -> None:
    """``loop`` for offline losses (DPO, KTO, ...): each step takes ``train.grad_accum`` micro-batches from
    ``batches`` (each rank its shard of each) and ``loss_fn(micro_batch) -> (loss, metrics)`` gives their means.
    Checkpoints hold the policy, the ``modules`` that own any other ``params``, the optimizer, the schedule and the
    data position of ``batches`` (a ``checkpoint.Replay``, as ``infinite_batches`` returns)."""
    from alignzoo import checkpoint

    tc = ctx.train
    engine = distributed.current()
    stepper = Stepper.create(params if params is not None else policy.model.parameters(), lr, tc)
    state = checkpoint.TrainingState(modules={"policy": policy.model, **(modules or {})}, stepper=stepper,
                                     objects={"batches": batches} if hasattr(batches, "state_dict") else {})

    def micro_losses() -> Iterator[MicroLoss]:
        for _ in range(tc.grad_accum):
            yield MicroLoss(*loss_fn(engine.shard(next(batches), "train.batch_size / train.grad_accum")))

    def step_fn(step: int) -> dict[str, float]:
        return optimizer_step(stepper, micro_losses(), step=step, micro_batches=tc.grad_accum)

    loop(ctx, state, step_fn, policy=policy, desc=desc, postfix={"loss": ".4f"})


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

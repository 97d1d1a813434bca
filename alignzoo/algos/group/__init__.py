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
from alignzoo.algos.group.shaping import informative_groups, overlong_penalty
from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.ops import kl_penalty, masked_sum
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
    ``train.grad_accum`` micro-batches, or dynamic sampling runs under a launcher."""
    world, accum = distributed.current().world_size, ctx.train.grad_accum
    if rows % (world * accum):
        raise AlignzooError(
            f"algo={cfg.name}: a step samples {rows} completions (train.batch_size // algo.group_size prompts x "
            f"algo.group_size={cfg.group_size}), which do not split into {world} process(es) x train.grad_accum="
            f"{accum} micro-batches; make train.batch_size a multiple of algo.group_size x {world * accum}")
    if cfg.dynamic_sampling and world > 1:
        # the kept groups of several sampling rounds would sit unevenly on the ranks
        raise AlignzooError(f"algo={cfg.name}: algo.dynamic_sampling=true runs in one process only ({world} were "
                            f"launched); set algo.dynamic_sampling=false or run without a launcher")


@dataclass
class Round:
    """One round of sampling on this rank: the rollout, its log-probs, the shaped rewards and the raw scores of the
    whole (gathered) round ``[rows]``, and the overlong penalty of this rank's rows."""
    rollout: Any
    old: Tensor
    ref: Tensor
    rewards: Tensor
    scores: Tensor
    penalty: Tensor


def sample_round(cfg: GroupConfig, ctx: Any, prompts: list[str], generator: torch.Generator) -> Round:
    """``group_size`` completions per prompt (this rank's shard, sampled as one process would), scored, shaped,
    with old and reference log-probs; rewards gathered over ranks."""
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
        old = ro.completion_logprobs(policy.model, r, temperature=cfg.temperature)
        ref = ro.completion_logprobs(ctx.reference.model, r, temperature=cfg.temperature)
    rewards = scores
    penalty = overlong_penalty(r.lengths, max_new_tokens=cfg.max_new_tokens, buffer=cfg.overlong_buffer)
    if cfg.overlong_buffer:
        rewards = rewards + cfg.overlong_penalty * penalty.to(rewards.device)
    if cfg.kl_in_reward:  # RLOO: r = score - beta * sum_t (log pi_old - log ref), the sequence's k1 KL
        rewards = rewards - cfg.beta * masked_sum(old - ref, r.completion_mask, dim=-1)
    ctx.add_tokens(int(r.attention_mask.sum()) * (2 + cfg.epochs))
    return Round(r, old, ref, engine.gather_rows(rewards), engine.gather_rows(scores), penalty)


def sample(cfg: GroupConfig, ctx: Any, prompts: Any, generator: torch.Generator,
           per_step: int) -> tuple[GroupBatch, Round, dict[str, float]]:
    """A step's batch: one round of ``per_step`` prompts, or with dynamic sampling up to ``max_sampling_rounds``
    rounds (``prompts`` an iterator of prompt batches) whose groups of identical rewards are dropped until
    ``per_step`` informative groups are found (short of that, dropped groups fill the rest: the batch keeps its
    shape); then the advantages of the kept groups. Returns the batch, the (merged) round and extra metrics."""
    first = sample_round(cfg, ctx, next(prompts), generator)
    extra: dict[str, float] = {}
    if cfg.dynamic_sampling:
        first, extra = _dynamic(cfg, ctx, prompts, generator, per_step, first)
    engine = distributed.current()
    with torch.no_grad():
        adv = ADVANTAGES[cfg.advantage].fn(first.rewards.view(-1, cfg.group_size)).reshape(-1)
        shard = engine.row_shard(len(adv))
        if shard is not None:
            adv = adv[shard.rows]
    return GroupBatch(first.rollout, first.old, first.ref, adv), first, extra


def _dynamic(cfg: GroupConfig, ctx: Any, prompts: Any, generator: torch.Generator, per_step: int,
             first: Round) -> tuple[Round, dict[str, float]]:
    """DAPO's dynamic sampling in one process: keep informative groups round by round, in sampling order."""
    g = cfg.group_size
    rounds, kept, dropped = [first], [], []
    for k in range(cfg.max_sampling_rounds):
        if k:
            rounds.append(sample_round(cfg, ctx, next(prompts), generator))
        keep = informative_groups(rounds[-1].rewards.view(-1, g))
        kept += [(k, i) for i in keep.nonzero().flatten().tolist()]
        dropped += [(k, i) for i in (~keep).nonzero().flatten().tolist()]
        if len(kept) >= per_step:
            break
    chosen = (kept + dropped)[:per_step]
    chosen.sort()  # sampling order: the first round's kept groups first, as one round without drops would be
    rows = [(k, i * g + j) for k, i in chosen for j in range(g)]
    merged = _merge(rounds, rows, ctx.policy.pad_id)
    return merged, {"dynamic/dropped_groups": float(len(dropped)),
                    "dynamic/kept_uninformative": float(max(0, per_step - len(kept))),
                    "dynamic/rounds": float(len(rounds))}


def _merge(rounds: list[Round], rows: list[tuple[int, int]], pad_id: int) -> Round:
    """The ``(round, row)`` rows of several rounds as one round, padded to common widths as the rollout engine pads
    (prompts on the left, completions on the right, ``pad_id`` and mask 0)."""
    p = max(r.rollout.prompt_ids.size(1) for r in rounds)
    n = max(r.rollout.completion_ids.size(1) for r in rounds)
    pad = torch.nn.functional.pad

    def pick(k: int, i: int) -> tuple:
        rnd, r = rounds[k], rounds[k].rollout
        dp, dn = p - r.prompt_ids.size(1), n - r.completion_ids.size(1)
        row = slice(i, i + 1)
        return (pad(r.prompt_ids[row], (dp, 0), value=pad_id), pad(r.prompt_mask[row], (dp, 0)),
                pad(r.completion_ids[row], (0, dn), value=pad_id), pad(r.completion_mask[row], (0, dn)),
                pad(r.logprobs[row], (0, dn)), r.ended[row], pad(rnd.old[row], (0, dn)), pad(rnd.ref[row], (0, dn)),
                rnd.rewards[row], rnd.scores[row], rnd.penalty[row])

    cat = [torch.cat(column, 0) for column in zip(*(pick(k, i) for k, i in rows))]
    return Round(ro.Rollout(*cat[:6]), *cat[6:])


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
        batch, samples, extra = sample(cfg, ctx, prompts, sampler, prompts_per_step)
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

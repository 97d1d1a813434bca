"""Sampling for the GRPO family: prompt batches, a round of ``group_size`` completions per prompt (sharded over
processes exactly as one process samples), its rewards (shaped: DAPO's overlong penalty, RLOO's KL) gathered over
processes, DAPO's dynamic sampling over several rounds, and the per-completion advantages of the whole batch.
``cfg`` is a ``GroupConfig``; docs/algorithms.md#grpo-family."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from alignzoo import distributed
from alignzoo import rollout as ro
from alignzoo.algos.group.advantages import ADVANTAGES
from alignzoo.algos.group.shaping import informative_groups, overlong_penalty
from alignzoo.errors import AlignzooError
from alignzoo.ops import masked_sum


def prompt_batches(prompts: list[str], per_step: int, seed: int) -> Iterator[list[str]]:
    """Endless batches of ``per_step`` prompts in a seeded order, reshuffled when the rest would not fill one."""
    order = torch.Generator().manual_seed(seed)
    perm, cursor = torch.randperm(len(prompts), generator=order), 0
    while True:
        if cursor + per_step > len(prompts):
            perm, cursor = torch.randperm(len(prompts), generator=order), 0
        yield [prompts[i] for i in perm[cursor:cursor + per_step].tolist()]
        cursor += per_step


def check_batch(cfg: Any, ctx: Any, rows: int) -> None:
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


def sample_round(cfg: Any, ctx: Any, prompts: list[str], generator: torch.Generator) -> Round:
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


def sample(cfg: Any, ctx: Any, prompts: Any, generator: torch.Generator,
           per_step: int) -> tuple[Round, Tensor, dict[str, float]]:
    """A step's batch: one round of ``per_step`` prompts, or with dynamic sampling up to ``max_sampling_rounds``
    rounds (``prompts`` an iterator of prompt batches) whose groups of identical rewards are dropped until
    ``per_step`` informative groups are found (short of that, dropped groups fill the rest: the batch keeps its
    shape); then the advantages of the kept groups. Returns the (merged) round, this rank's advantages ``[rows]``
    and the extra metrics."""
    first = sample_round(cfg, ctx, next(prompts), generator)
    extra: dict[str, float] = {}
    if cfg.dynamic_sampling:
        first, extra = dynamic_batch(cfg, ctx, prompts, generator, per_step, first)
    engine = distributed.current()
    with torch.no_grad():
        adv = ADVANTAGES[cfg.advantage].fn(first.rewards.view(-1, cfg.group_size)).reshape(-1)
        shard = engine.row_shard(len(adv))
        if shard is not None:
            adv = adv[shard.rows]
    return first, adv, extra


def dynamic_batch(cfg: Any, ctx: Any, prompts: Any, generator: torch.Generator, per_step: int,
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
    merged = merge_rounds(rounds, rows, ctx.policy.pad_id)
    return merged, {"dynamic/dropped_groups": float(len(dropped)),
                    "dynamic/kept_uninformative": float(max(0, per_step - len(kept))),
                    "dynamic/rounds": float(len(rounds))}


def merge_rounds(rounds: list[Round], rows: list[tuple[int, int]], pad_id: int) -> Round:
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

"""Experience for the actor-critic optimizers (PPO, A2C): sample, score, shape, estimate advantages; and the
machinery both update with (value model, KL controller, actor-critic losses, the per-minibatch optimizer step).
PPO and A2C are step functions on ``training.loop`` that call it (``algos/ppo.py``, ``algos/a2c.py``).

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

import copy
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch
from torch import Tensor, nn

from alignzoo import checkpoint, distributed
from alignzoo import rollout as ro
from alignzoo.errors import AlignzooError
from alignzoo.ops import gae, kl_penalty, masked_mean, masked_whiten, token_logprobs
from alignzoo.training import MicroLoss, Stepper, loop, optimizer_step, token_weights

KL_ESTIMATORS = ("k1", "k2", "k3")
VALUE_MODELS = ("shared", "separate")


def problems(cfg: Any) -> list[str]:
    """The checks of the fields every actor-critic config has (PPO's and A2C's ``problems`` add their own)."""
    out = []
    if cfg.lr <= 0:
        out.append(f"lr must be > 0 (got {cfg.lr})")
    if cfg.max_new_tokens < 1:
        out.append(f"max_new_tokens must be >= 1 (got {cfg.max_new_tokens})")
    if cfg.kl_coef < 0:
        out.append(f"kl_coef must be >= 0 (got {cfg.kl_coef})")
    if cfg.kl_estimator not in KL_ESTIMATORS:
        out.append(f"kl_estimator must be k1, k2 or k3 (got {cfg.kl_estimator!r})")
    if cfg.adaptive_kl and cfg.kl_target <= 0:
        out.append(f"kl_target must be > 0 (got {cfg.kl_target})")
    if cfg.value_model not in VALUE_MODELS:
        out.append(f"value_model must be shared or separate (got {cfg.value_model!r})")
    if not 0 <= cfg.gamma <= 1 or not 0 <= cfg.lam <= 1:
        out.append("gamma and lam must be in [0, 1]")
    if cfg.temperature <= 0:
        out.append(f"temperature must be > 0 (got {cfg.temperature})")
    return out


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



# -- the KL coefficient ------------------------------------------------------------------------------------------

class AdaptiveKLController:
    """Ziegler et al.'s proportional controller: e = clip(KL / target - 1, -0.2, 0.2);
    beta <- beta * (1 + e * n_steps / horizon)."""

    def __init__(self, init_beta: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_beta, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, float]:  # checkpoint state: the current beta
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class FixedKLController:
    def __init__(self, beta: float):
        self.value = beta

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    state_dict, load_state_dict = AdaptiveKLController.state_dict, AdaptiveKLController.load_state_dict


def kl_controller(cfg: Any) -> Any:
    """``adaptive_kl``: Ziegler's controller from ``kl_coef`` towards ``kl_target``; else beta fixed at ``kl_coef``."""
    if cfg.adaptive_kl:
        return AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


# -- actor-critic losses -------------------------------------------------------------------------------------------

def policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
                clip_range: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate: mean_t max(-A rho, -A clip(rho, 1 - eps, 1 + eps)), rho = exp(logp - old_logp), over
    the masked tokens (``clip_range=inf``: the plain policy gradient, A2C). Metrics: clipfrac (share of tokens where
    the clipped term is the larger), approx_kl (mean of (logp - old_logp)^2 / 2), ratio mean."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    metrics = {"clipfrac": masked_mean((clipped > unclipped).float(), mask).detach(),
               "approx_kl": masked_mean(0.5 * log_ratio.detach() ** 2, mask),
               "ratio": masked_mean(ratio.detach(), mask)}
    return loss, metrics


def value_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, *,
               clip_range: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped value loss: 1/2 mean_t max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, +-eps)."""
    clipped = old_values + torch.clamp(values - old_values, -clip_range, clip_range)
    a, b = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(a, b), mask)
    return loss, {"vf_clipfrac": masked_mean((b > a).float(), mask).detach()}


def entropy_mode(cfg: Any) -> str:
    """How the update computes the entropy (``policy_forward``): with gradients only when it is in the loss."""
    return "grad" if cfg.ent_coef else "metric"


# -- what PPO and A2C train ------------------------------------------------------------------------------------------

def make_critic(cfg: Any, policy: Any) -> tuple[nn.Module, Any]:
    """(value head, separate value model or None)."""
    hidden = int(policy.model.config.hidden_size)
    head = ValueHead(hidden).to(policy.device)
    if cfg.value_model == "separate":
        critic = copy.deepcopy(policy.model).train()
        for p in critic.parameters():
            p.requires_grad_(True)
        return head, critic
    return head, None


def ptx_batches(ctx: Any, batch_size: int) -> Iterator[Any]:
    """Demonstration batches for PPO-ptx (the task's SFT demonstrations as prompt + completion)."""
    from alignzoo.stages.lm import sft_batch

    demos = getattr(ctx.task, "demonstrations", None)
    if demos is None:
        raise AlignzooError(f"algo.ptx_coef > 0 needs demonstrations, but task={ctx.task.name} has none")
    prompts, completions = demos()
    pol = ctx.policy
    gen = torch.Generator().manual_seed(ctx.seed + 7)
    while True:
        for idx in torch.randperm(len(prompts), generator=gen).split(batch_size):
            p = pol.encode_prompts([prompts[i] for i in idx])
            c = pol.encode_completions([completions[i] for i in idx])
            yield sft_batch(p, c, pol.pad_id, pol.max_length)


def update_orders(seed: int, step: int, rows: int, epochs: int) -> list[Tensor]:
    """The row order of each pass over an iteration's experience (a seeded shuffle per pass), drawn up front so
    that collection can run the first step's forward (``collect``'s ``first_order``)."""
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    return [torch.randperm(rows, generator=gen) for _ in range(epochs)]


def fuses_first_update(cfg: Any, *models: Any) -> bool:
    """Whether the first optimizer step's forward can double as collection's old log-probs/values forward: it sees
    the weights that sampled, so it gives the same numbers when it takes the whole batch (one minibatch: A2C always,
    PPO with ``minibatches=1``) and no dropout makes the training forward differ from the sampling-time one."""
    return getattr(cfg, "minibatches", 1) == 1 and not any(
        isinstance(m, nn.Dropout) and m.p > 0 for model in models if model is not None for m in model.modules())


@dataclass
class ActorCritic:
    """Everything an actor-critic run carries from one iteration to the next, and its checkpoint state: the value
    model, the optimizer over policy and value model, the KL controller, the prompt and demonstration streams and
    the sampling generator."""

    reward: Any
    head: nn.Module
    critic: Any  # a separate value model, or None (the head sits on the policy)
    stepper: Stepper
    controller: Any
    prompts: checkpoint.Replay
    ptx: Optional[checkpoint.Replay]
    generator: torch.Generator
    fuse: bool  # collection runs the first update's forward (``fuses_first_update``)

    @classmethod
    def build(cls, cfg: Any, ctx: Any, *, updates_per_iteration: int) -> "ActorCritic":
        reward = reward_for(ctx)
        policy = ctx.policy
        head, critic = make_critic(cfg, policy)
        params = list(policy.model.parameters()) + list(head.parameters())
        if critic is not None:
            params += list(critic.parameters())
        stepper = Stepper.create(params, cfg.lr, ctx.train, total_steps=ctx.train.steps * updates_per_iteration)
        train_prompts = ctx.task.train_prompts(policy)
        prompts = checkpoint.Replay(lambda: prompt_batches(train_prompts, ctx.train.batch_size, ctx.seed))
        ptx = checkpoint.Replay(lambda: ptx_batches(ctx, ctx.train.batch_size)) if cfg.ptx_coef > 0 else None
        gen = torch.Generator(device=policy.device).manual_seed(ctx.seed)
        return cls(reward, head, critic, stepper, kl_controller(cfg), prompts, ptx, gen,
                   fuses_first_update(cfg, policy.model, critic))

    def state(self, ctx: Any) -> checkpoint.TrainingState:
        return checkpoint.TrainingState(modules={"policy": ctx.policy.model, "value_head": self.head,
                                                 "critic": self.critic},
                                        stepper=self.stepper, generators={"rollout": self.generator},
                                        objects={"prompts": self.prompts, "ptx": self.ptx,
                                                 "kl_controller": self.controller})

    def collect(self, ctx: Any, cfg: Any, prompts: list[str], first_order: Optional[Tensor]) -> Experience:
        return collect(ctx, cfg, prompts, self.head, self.reward, self.controller.value, self.generator,
                       self.critic, first_order=first_order if self.fuse else None, entropy=entropy_mode(cfg))


def minibatch_loss(ctx: Any, cfg: Any, learner: ActorCritic, exp: Experience, idx: Tensor, *, clip_range: float,
                   value_clip_range: float) -> MicroLoss:
    """The actor-critic loss of the rows ``idx``: L_pg + vf_coef L_v - ent_coef H (+ ptx_coef L_sft), token means,
    weighted by this rank's share of the global minibatch's tokens. The first step reuses the forward that
    ``collect`` ran for it, when there is one (``exp.first_update``)."""
    from alignzoo.stages.lm import lm_loss

    mb = exp.select(idx)
    first, exp.first_update = exp.first_update, None
    if first is not None and torch.equal(first.order, idx):
        logprobs, values, entropy = first.logprobs, first.values, first.entropy
    else:
        logprobs, values, entropy = policy_forward(ctx.policy.model, learner.head, mb.rollout, cfg.temperature,
                                                   learner.critic, entropy=entropy_mode(cfg))
    pg, pg_m = policy_loss(logprobs, mb.logprobs, mb.advantages, mb.mask, clip_range=clip_range)
    vf, vf_m = value_loss(values, mb.values, mb.returns, mb.mask, clip_range=value_clip_range)
    ent = masked_mean(entropy, mb.mask)
    loss = pg + cfg.vf_coef * vf - cfg.ent_coef * ent
    metrics = {"policy_loss": pg, "value_loss": vf, "entropy": ent, **pg_m, **vf_m}
    if learner.ptx is not None:
        ids, loss_mask, attn = next(learner.ptx)
        dev = ctx.policy.device
        sft = lm_loss(ctx.policy.model, ids.to(dev), loss_mask.to(dev), attn.to(dev))
        loss = loss + cfg.ptx_coef * sft
        metrics["ptx_loss"] = sft
    return MicroLoss(loss, metrics, token_weights([mb.mask])[0])


def update(ctx: Any, cfg: Any, learner: ActorCritic, exp: Experience, orders: list[Tensor], step: int, *,
           minibatches: int, clip_range: float, value_clip_range: float) -> dict[str, float]:
    """One pass over the experience per entry of ``orders`` (``update_orders``), each in ``minibatches``
    minibatches with one optimizer step each; returns the metrics averaged over those steps."""
    sums: dict[str, float] = {}
    count = 0
    for order in orders:
        for idx in order.chunk(minibatches):
            micro = minibatch_loss(ctx, cfg, learner, exp, idx, clip_range=clip_range,
                                   value_clip_range=value_clip_range)
            metrics = optimizer_step(learner.stepper, [micro], step=step)
            del metrics["lr"]  # the iteration logs the rate of the next one (after all its steps)
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    return {k: v / count for k, v in sums.items()}


def train(cfg: Any, ctx: Any, *, epochs: int, minibatches: int, clip_range: float, value_clip_range: float) -> Any:
    """An actor-critic run on ``training.loop``: per step, collect one batch of experience, then ``epochs`` passes in
    ``minibatches`` minibatches (rows in the seeded ``update_orders``), then the KL controller's update. PPO calls it
    with its clip ranges, A2C with one pass, one minibatch and no clipping."""
    policy = ctx.policy
    learner = ActorCritic.build(cfg, ctx, updates_per_iteration=epochs * minibatches)

    def step_fn(step: int) -> dict[str, float]:
        batch = next(learner.prompts)
        orders = update_orders(ctx.seed, step, len(distributed.current().shard(batch)), epochs)
        exp = learner.collect(ctx, cfg, batch, first_order=orders[0])
        policy.model.train()
        metrics = rollout_metrics(exp, learner.controller.value)
        metrics.update(update(ctx, cfg, learner, exp, orders, step, minibatches=minibatches, clip_range=clip_range,
                              value_clip_range=value_clip_range))
        learner.controller.update(metrics["kl"], ctx.train.batch_size)
        metrics["lr"] = learner.stepper.lr
        policy.model.eval()
        return metrics

    loop(ctx, learner.state(ctx), step_fn, policy=policy, desc=cfg.name, postfix={"reward": ".3f", "kl": ".2f"})
    return policy

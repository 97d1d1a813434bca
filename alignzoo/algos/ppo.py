"""PPO for language models (Ziegler et al. 2019, Stiennon et al. 2020, InstructGPT), with the details that matter
(docs/algorithms.md#ppo; "The N Implementation Details of RLHF with PPO").

Per iteration: collect one batch of experience (``algos/online.py``: sample, score with the reward model, KL-shaped
per-token rewards with the score on the last token, GAE, whitened advantages), then ``epochs`` passes over it in
``minibatches`` shuffled minibatches, one optimizer step each, with the clipped policy ratio and the clipped value
loss; then the KL controller updates beta (adaptive: Ziegler's proportional controller; or fixed).

Choices: log-probs from logits / temperature (rollout and training alike); value head on the policy (zero
init) or a separate critic (``value_model=separate``); a missing-EOS penalty on the score; optional PPO-ptx, a
supervised loss on the task's SFT demonstrations mixed into every step (InstructGPT).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignzoo import checkpoint, distributed
from alignzoo.algos import online
from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.ops import masked_mean
from alignzoo.training import Stepper, check_finite


@dataclass
class PPOConfig:
    name: str = "ppo"
    ONLINE = True  # class attribute (not a field): the reward-model quality gate applies
    lr: float = 3e-4  # learning rate (tiny models; large ones want ~1e-6)
    max_new_tokens: int = 20  # completion tokens sampled per prompt
    temperature: float = 1.0  # sampling temperature; log-probs use logits / temperature
    epochs: int = 4  # passes over each batch of experience
    minibatches: int = 1  # minibatches per pass (one optimizer step each)
    clip_range: float = 0.2  # policy ratio clip epsilon
    value_clip_range: float = 0.2  # value clip epsilon
    vf_coef: float = 0.1  # weight of the value loss
    ent_coef: float = 0.0  # entropy bonus (0: none, as OAI and TRL)
    gamma: float = 1.0
    lam: float = 0.95  # GAE lambda
    whiten_advantages: bool = True
    kl_estimator: str = "k1"  # per-token KL in the reward: k1 | k2 | k3
    kl_coef: float = 0.05  # initial (or fixed) beta
    adaptive_kl: bool = False  # Ziegler's controller: steer the sequence KL towards kl_target
    kl_target: float = 6.0  # nats per sequence
    kl_horizon: int = 64  # controller horizon in episodes: beta moves by up to 0.2 * batch / horizon per update,
    # fast enough to settle within a 50-step run (OAI: 10000 episodes over runs of thousands of updates)
    missing_eos_penalty: float = 1.0  # subtracted from the score of a completion that never ends
    value_model: str = "shared"  # shared (a head on the policy) | separate (a critic copied from the policy)
    ptx_coef: float = 0.0  # PPO-ptx: weight of the SFT loss on demonstrations (0: off)

    def problems(self) -> list[str]:
        out = []
        if self.lr <= 0:
            out.append(f"lr must be > 0 (got {self.lr})")
        for k in ("epochs", "minibatches", "max_new_tokens"):
            if getattr(self, k) < 1:
                out.append(f"{k} must be >= 1 (got {getattr(self, k)})")
        if self.clip_range <= 0 or self.value_clip_range <= 0:
            out.append("clip_range and value_clip_range must be > 0")
        if self.kl_coef < 0:
            out.append(f"kl_coef must be >= 0 (got {self.kl_coef})")
        if self.kl_estimator not in ("k1", "k2", "k3"):
            out.append(f"kl_estimator must be k1, k2 or k3 (got {self.kl_estimator!r})")
        if self.adaptive_kl and self.kl_target <= 0:
            out.append(f"kl_target must be > 0 (got {self.kl_target})")
        if self.value_model not in ("shared", "separate"):
            out.append(f"value_model must be shared or separate (got {self.value_model!r})")
        if not 0 <= self.gamma <= 1 or not 0 <= self.lam <= 1:
            out.append("gamma and lam must be in [0, 1]")
        if self.temperature <= 0:
            out.append(f"temperature must be > 0 (got {self.temperature})")
        return out


# -- losses ------------------------------------------------------------------------------------------------------

def policy_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, *,
                clip_range: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Clipped surrogate: mean_t max(-A rho, -A clip(rho, 1 - eps, 1 + eps)), rho = exp(logp - old_logp), over
    the masked tokens. Metrics: clipfrac (share of tokens where the clipped term is the larger), approx_kl
    (mean of (logp - old_logp)^2 / 2), ratio mean."""
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


# -- training ----------------------------------------------------------------------------------------------------

def make_critic(cfg: Any, policy: Any) -> tuple[torch.nn.Module, Any]:
    """(value head, separate value model or None)."""
    hidden = int(policy.model.config.hidden_size)
    head = online.ValueHead(hidden).to(policy.device)
    if cfg.value_model == "separate":
        critic = copy.deepcopy(policy.model).train()
        for p in critic.parameters():
            p.requires_grad_(True)
        return head, critic
    return head, None


def ptx_batches(ctx: Any, batch_size: int):
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
    that collection can run the first step's forward (``online.collect``'s ``first_order``)."""
    gen = torch.Generator().manual_seed(seed * 1000 + step)
    return [torch.randperm(rows, generator=gen) for _ in range(epochs)]


def fuses_first_update(cfg: Any, *models: Any) -> bool:
    """Whether the first optimizer step's forward can double as collection's old log-probs/values forward: it sees
    the weights that sampled, so it gives the same numbers when it takes the whole batch (one minibatch) and no
    dropout makes the training forward differ from the sampling-time one."""
    return cfg.minibatches == 1 and not any(isinstance(m, torch.nn.Dropout) and m.p > 0
                                            for model in models if model is not None for m in model.modules())


def optimize(ctx: Any, cfg: Any, exp: online.Experience, stepper: Stepper, head: torch.nn.Module, critic: Any,
             ptx: Any, orders: list[Tensor], step: int, *, clip: bool = True) -> dict[str, float]:
    """One pass over the experience per entry of ``orders`` (``update_orders``), each in ``minibatches``
    minibatches with one optimizer step each; returns averaged metrics. The first step reuses the forward that
    ``collect`` ran for it, when there is one (``exp.first_update``)."""
    from alignzoo.stages.lm import lm_loss

    engine = distributed.current()
    sums: dict[str, float] = {}
    count = 0
    clip_range = cfg.clip_range if clip else float("inf")
    for order in orders:
        for idx in order.chunk(cfg.minibatches):
            mb = exp.select(idx)
            first, exp.first_update = exp.first_update, None
            if first is not None and torch.equal(first.order, idx):
                logprobs, values, entropy = first.logprobs, first.values, first.entropy
            else:
                logprobs, values, entropy = online.policy_forward(ctx.policy.model, head, mb.rollout,
                                                                 cfg.temperature, critic, entropy=entropy_mode(cfg))
            pg, pg_m = policy_loss(logprobs, mb.logprobs, mb.advantages, mb.mask, clip_range=clip_range)
            vf, vf_m = value_loss(values, mb.values, mb.returns, mb.mask,
                                  clip_range=cfg.value_clip_range if clip else float("inf"))
            ent = masked_mean(entropy, mb.mask)
            loss = pg + cfg.vf_coef * vf - cfg.ent_coef * ent
            # several ranks: weigh this rank's token means by its share of the global batch's tokens, so the
            # averaged gradient (and the reduced metrics) are the global batch's token means
            share = engine.token_share(mb.mask)
            if share != 1.0:
                loss = share * loss
            metrics = {"policy_loss": pg, "value_loss": vf, "entropy": ent, **pg_m, **vf_m}
            if ptx is not None:
                ids, loss_mask, attn = next(ptx)
                dev = ctx.policy.device
                sft = lm_loss(ctx.policy.model, ids.to(dev), loss_mask.to(dev), attn.to(dev))
                loss = loss + cfg.ptx_coef * sft
                metrics["ptx_loss"] = sft
            metrics = {"loss": engine.mean({"loss": loss})["loss"], **engine.mean(metrics, weight=share)}
            check_finite({f"train/{k}": v for k, v in metrics.items()}, step)
            stepper.backward(loss)
            metrics["grad_norm"] = stepper.step()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach() if hasattr(v, "detach") else v)
            count += 1
    return {k: v / count for k, v in sums.items()}


def entropy_mode(cfg: Any) -> str:
    """How the update computes the entropy (``online.policy_forward``): with gradients only when it is in the loss."""
    return "grad" if cfg.ent_coef else "metric"


def run_online(cfg: Any, ctx: Any, *, clip: bool) -> Any:
    """The loop PPO and A2C share: collect, optimize, update beta, log, evaluate."""
    reward = online.reward_for(ctx)
    policy = ctx.policy
    head, critic = make_critic(cfg, policy)
    params = list(policy.model.parameters()) + list(head.parameters())
    if critic is not None:
        params += list(critic.parameters())
    updates_per_iter = cfg.epochs * cfg.minibatches
    stepper = Stepper.create(params, cfg.lr, ctx.train, total_steps=ctx.train.steps * updates_per_iter)
    controller = (AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
                  else FixedKLController(cfg.kl_coef))
    train_prompts = ctx.task.train_prompts(policy)
    prompts = checkpoint.Replay(lambda: online.prompt_batches(train_prompts, ctx.train.batch_size, ctx.seed))
    ptx = checkpoint.Replay(lambda: ptx_batches(ctx, ctx.train.batch_size)) if cfg.ptx_coef > 0 else None
    gen = torch.Generator(device=policy.device).manual_seed(ctx.seed)
    state = checkpoint.TrainingState(modules={"policy": policy.model, "value_head": head, "critic": critic},
                                     stepper=stepper, generators={"rollout": gen},
                                     objects={"prompts": prompts, "ptx": ptx, "kl_controller": controller})
    start = checkpoint.resume(ctx, state)
    fuse = fuses_first_update(cfg, policy.model, critic)
    with ctx.progress(total=ctx.train.steps, desc=cfg.name) as bar:
        bar.update(start)
        for step in range(start + 1, ctx.train.steps + 1):
            batch = next(prompts)
            orders = update_orders(ctx.seed, step, len(distributed.current().shard(batch)), cfg.epochs)
            exp = online.collect(ctx, cfg, batch, head, reward, controller.value, gen, critic,
                                 first_order=orders[0] if fuse else None, entropy=entropy_mode(cfg))
            policy.model.train()
            metrics = online.rollout_metrics(exp, controller.value)
            metrics.update(optimize(ctx, cfg, exp, stepper, head, critic, ptx, orders, step, clip=clip))
            controller.update(metrics["kl"], ctx.train.batch_size)
            metrics["lr"] = stepper.lr
            ctx.log({f"train/{k}": v for k, v in metrics.items()}, step)
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward']:.3f}", kl=f"{metrics['kl']:.2f}")
            policy.model.eval()
            ctx.maybe_evaluate(policy, step)
            checkpoint.save_if_due(ctx, state, step)
    return policy


def train(cfg: PPOConfig, ctx: Any) -> Any:
    """Optimize the policy against the reward model with clipped PPO and a KL penalty to the reference."""
    return run_online(cfg, ctx, clip=True)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("ppo", train, PPOConfig, description="PPO with a KL penalty against a reward model")

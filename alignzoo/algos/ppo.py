"""PPO for language models (Ziegler et al. 2019, Stiennon et al. 2020, InstructGPT), with the details that matter
(docs/algorithms.md#ppo; "The N Implementation Details of RLHF with PPO").

Per iteration (a step function on ``training.loop``): collect one batch of experience (``alignzoo/experience.py``:
sample, score with the reward model, KL-shaped per-token rewards with the score on the last token, GAE, whitened
advantages), then ``epochs`` passes over it in ``minibatches`` shuffled minibatches, one optimizer step each, with
the clipped policy ratio and the clipped value loss; then the KL controller updates beta (adaptive: Ziegler's
proportional controller; or fixed).

Choices: log-probs from logits / temperature (rollout and training alike); value head on the policy (zero
init) or a separate critic (``value_model=separate``); a missing-EOS penalty on the score; optional PPO-ptx, a
supervised loss on the task's SFT demonstrations mixed into every step (InstructGPT).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignzoo import experience
from alignzoo.hookspecs import hookimpl


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
        out = experience.problems(self)
        for k in ("epochs", "minibatches"):
            if getattr(self, k) < 1:
                out.append(f"{k} must be >= 1 (got {getattr(self, k)})")
        if self.clip_range <= 0 or self.value_clip_range <= 0:
            out.append("clip_range and value_clip_range must be > 0")
        return out


def train(cfg: PPOConfig, ctx: Any) -> Any:
    """Optimize the policy against the reward model with clipped PPO and a KL penalty to the reference."""
    return experience.train(cfg, ctx, epochs=cfg.epochs, minibatches=cfg.minibatches, clip_range=cfg.clip_range,
                            value_clip_range=cfg.value_clip_range)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("ppo", train, PPOConfig, description="PPO with a KL penalty against a reward model")

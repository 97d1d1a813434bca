"""A2C for language models (RL4LMs; docs/algorithms.md#a2c): the same experience as PPO (``alignzoo/experience.py``:
rollout, reward-model score, per-token KL shaping, GAE / n-step returns), but exactly one optimizer step per batch
on the whole batch, with no ratio or value clipping:

    L = -mean_t(A_t log pi(a_t | s_t)) + c_v * 1/2 mean_t (V_t - R_t)^2 - c_e * entropy

(the value term carries PPO's 1/2, so A2C equals PPO with one epoch, one minibatch and no clipping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignzoo import experience
from alignzoo.hookspecs import hookimpl

NO_CLIP = float("inf")  # the clipped surrogate and value loss with an infinite range are the plain ones


@dataclass
class A2CConfig:
    name: str = "a2c"
    ONLINE = True  # class attribute (not a field): the reward-model quality gate applies
    lr: float = 3e-4  # learning rate (tiny models; large ones want ~1e-6)
    max_new_tokens: int = 20  # completion tokens sampled per prompt
    temperature: float = 1.0  # sampling temperature; log-probs use logits / temperature
    vf_coef: float = 0.1  # weight of the value loss
    ent_coef: float = 0.0  # entropy bonus
    gamma: float = 1.0
    lam: float = 1.0  # n-step / Monte-Carlo returns with a value baseline
    whiten_advantages: bool = True
    kl_estimator: str = "k1"  # per-token KL in the reward: k1 | k2 | k3
    kl_coef: float = 0.05  # initial (or fixed) beta
    adaptive_kl: bool = False  # Ziegler's controller: steer the sequence KL towards kl_target
    kl_target: float = 6.0  # nats per sequence
    kl_horizon: int = 64  # controller horizon in episodes (as PPO's)
    missing_eos_penalty: float = 1.0  # subtracted from the score of a completion that never ends
    value_model: str = "shared"  # shared (a head on the policy) | separate (a critic copied from the policy)
    ptx_coef: float = 0.0  # weight of the SFT loss on demonstrations (0: off)

    def problems(self) -> list[str]:
        return experience.problems(self)


def train(cfg: A2CConfig, ctx: Any) -> Any:
    """Advantage actor-critic: one unclipped policy-gradient step per batch of experience, its rows in the seeded
    order PPO's single pass takes (so A2C's numbers are PPO's with one epoch, one minibatch and no clipping)."""
    return experience.train(cfg, ctx, epochs=1, minibatches=1, clip_range=NO_CLIP, value_clip_range=NO_CLIP)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("a2c", train, A2CConfig, description="advantage actor-critic, one step per batch")

"""A2C for language models (RL4LMs; docs/algorithms.md#a2c): the same experience as PPO (rollout,
reward-model score, per-token KL shaping, GAE / n-step returns), but exactly one optimizer step per batch on the
whole batch, with no ratio or value clipping:

    L = -mean_t(A_t log pi(a_t | s_t)) + c_v * 1/2 mean_t (V_t - R_t)^2 - c_e * entropy

(the value term carries PPO's 1/2, so A2C equals PPO with one epoch, one minibatch and no clipping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignzoo.algos.ppo import PPOConfig, run_online
from alignzoo.hookspecs import hookimpl


@dataclass
class A2CConfig(PPOConfig):
    name: str = "a2c"
    epochs: int = 1  # A2C never reuses a batch
    minibatches: int = 1
    lam: float = 1.0  # n-step / Monte-Carlo returns with a value baseline

    def problems(self) -> list[str]:
        out = super().problems()
        if self.epochs != 1 or self.minibatches != 1:
            out.append("A2C takes one step per batch: epochs and minibatches must be 1 (use algo=ppo otherwise)")
        return out


def train(cfg: A2CConfig, ctx: Any) -> Any:
    """Advantage actor-critic: one unclipped policy-gradient step per batch of experience."""
    return run_online(cfg, ctx, clip=False)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("a2c", train, A2CConfig, description="advantage actor-critic, one step per batch")

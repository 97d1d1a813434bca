"""Best-of-N: sample N completions from the reference policy and keep the one the proxy reward prefers.

No training. Its KL to the reference is known in closed form, KL_bon(N) = log N - (N - 1) / N (Stiennon et al.
2020; Gao et al. 2022), so it is reported as the run's KL. The baseline every reward-vs-KL frontier needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from alignzoo import rollout as ro
from alignzoo import experience
from alignzoo.hookspecs import hookimpl


@dataclass
class BestOfNConfig:
    name: str = "best_of_n"
    ONLINE = True  # needs a reward at sampling time (the quality gate applies)
    n: int = 4  # completions sampled per prompt

    def problems(self) -> list[str]:
        return [] if self.n >= 1 else [f"n must be >= 1 (got {self.n})"]


def analytic_kl(n: int) -> float:
    """KL(best-of-n || reference) = log n - (n - 1) / n nats."""
    return math.log(n) - (n - 1) / n


def select_best(rollouts: list[ro.Rollout], scores: torch.Tensor, n: int) -> ro.Rollout:
    """From rows ordered prompt-major (n consecutive samples per prompt), keep each prompt's top-scoring row."""
    r = _concat(rollouts)
    best = scores.view(-1, n).argmax(-1) + torch.arange(scores.numel() // n) * n
    return r.select(best.to(r.completion_ids.device))


def _concat(rollouts: list[ro.Rollout]) -> ro.Rollout:
    if len(rollouts) == 1:
        return rollouts[0]
    pw = max(r.prompt_ids.size(1) for r in rollouts)
    cw = max(r.completion_ids.size(1) for r in rollouts)
    pad = lambda t, w, left, v: torch.nn.functional.pad(t, (w - t.size(1), 0) if left else (0, w - t.size(1)), value=v)  # noqa: E731
    pid = rollouts[0].prompt_ids.new_tensor(0)
    return ro.Rollout(torch.cat([pad(r.prompt_ids, pw, True, int(pid)) for r in rollouts]),
                      torch.cat([pad(r.prompt_mask, pw, True, 0) for r in rollouts]),
                      torch.cat([pad(r.completion_ids, cw, False, 0) for r in rollouts]),
                      torch.cat([pad(r.completion_mask, cw, False, 0) for r in rollouts]),
                      torch.cat([pad(r.logprobs, cw, False, 0.0) for r in rollouts]),
                      torch.cat([r.ended for r in rollouts]))


def train(cfg: BestOfNConfig, ctx: Any) -> Any:
    """Return the reference policy wrapped in a best-of-N sampler under the proxy reward."""
    reward = experience.reward_for(ctx)
    base = ctx.reference

    def sampler(prompts: list[str], *, max_new_tokens: int, temperature: float, batch_size: int, seed: int,
                **_: Any) -> list[ro.Rollout]:
        repeated = [p for p in prompts for _ in range(cfg.n)]
        rollouts = ro.sample(base, repeated, max_new_tokens=max_new_tokens, temperature=temperature,
                             batch_size=batch_size * cfg.n, seed=seed)
        texts = [t for r in rollouts for t in r.texts(base.tokenizer)]
        ended = torch.cat([r.ended for r in rollouts])
        scores = reward.score(repeated, texts, ended).float().cpu()
        return [select_best(rollouts, scores, cfg.n)]

    policy = replace(ctx.policy, name=f"best_of_{cfg.n}", info={**ctx.policy.info, "analytic_kl": analytic_kl(cfg.n)})
    policy.sampler = sampler
    ctx.log({"train/analytic_kl": analytic_kl(cfg.n), "train/n": float(cfg.n)}, 1)
    return policy


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("best_of_n", train, BestOfNConfig, description="best of N reference samples")
    register("best_of_16", train, BestOfNConfig(name="best_of_16", n=16), description="best of 16 reference samples")

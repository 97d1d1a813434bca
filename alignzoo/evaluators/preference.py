"""``preference_accuracy``: how well the policy (and the reward model, when the run has one) ranks held-out pairs.

What TRL users read off a DPO run's evaluation: the implicit DPO reward of a completion is
``r(x, y) = beta * (log pi(y|x) - log ref(y|x))`` (sequence log-probs summed over completion tokens), and on the
task's held-out pairs (``task.heldout_pairs``; for ``task=hf_preferences`` the evaluation split)

- ``pref_accuracy``: share of pairs with ``r(chosen) > r(rejected)``, a tie counting half, so a policy equal to its
  reference scores exactly 0.5 (chance) and ``pref_margin`` 0. (TRL's ``rewards/accuracies`` counts a tie as 0;
  subtract ``pref_ties / 2`` to compare.) It is the number a board ranks ``task=hf_preferences`` rows by;
- ``pref_margin``: mean ``r(chosen) - r(rejected)``; ``pref_ties``: share of tied pairs; ``pref_pairs``: how many;
- ``pref_rm_accuracy``: the same accuracy for the run's reward (``reward=...``), when it has one.

``beta`` is the algorithm's (``algo.beta``, the DPO family and KTO) unless ``evaluator.preference_accuracy.beta``
sets it; it scales the margin, never the accuracy. Tasks without held-out pairs skip the evaluator with a note.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from alignzoo.hookspecs import hookimpl

DEFAULT_BETA = 0.1  # the DPO default, for algorithms that have no beta of their own


@dataclass
class PreferenceAccuracyConfig:
    name: str = "preference_accuracy"
    max_pairs: int = 128  # held-out pairs scored at each evaluation (the first ones of the evaluation split)
    batch_size: int = 16  # pairs per forward pass
    beta: Optional[float] = None  # scale of the implicit reward; None: algo.beta, else 0.1

    def problems(self) -> list[str]:
        out = []
        if self.max_pairs < 1:
            out.append(f"max_pairs must be >= 1 (got {self.max_pairs})")
        if self.batch_size < 1:
            out.append(f"batch_size must be >= 1 (got {self.batch_size})")
        if self.beta is not None and self.beta <= 0:
            out.append(f"beta must be > 0 or null (got {self.beta}); null takes algo.beta")
        return out


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[float, float]:
    """(accuracy with ties counting half, share of ties) of scores ``chosen[i]`` vs ``rejected[i]``."""
    ties = (chosen == rejected).float()
    wins = (chosen > rejected).float() + 0.5 * ties
    return float(wins.mean()), float(ties.mean())


class PreferenceAccuracyEvaluator:
    """Held-out implicit-reward accuracy and margin of the policy against its reference (see the module doc)."""

    NEEDS_REFERENCE = True  # the implicit reward is a log-ratio to the reference: skipped when none is built

    def __init__(self, cfg: PreferenceAccuracyConfig, ctx: Any):
        self.cfg, self.ctx = cfg, ctx
        algo_beta = getattr(ctx.built.get("algo"), "beta", None)
        self.beta = cfg.beta if cfg.beta is not None else (algo_beta if isinstance(algo_beta, float) and algo_beta > 0
                                                           else DEFAULT_BETA)
        self._batches: Optional[list] = None  # the tokenized pairs, built on the first evaluation

    def skip_reason(self, ctx: Any) -> Optional[str]:
        if not callable(getattr(ctx.task, "heldout_pairs", None)):
            return (f"evaluator `preference_accuracy` skipped: task={ctx.task.name} has no held-out preference pairs "
                    "(task=hf_preferences has)")
        return None

    def _pairs(self, policy: Any) -> list:
        from alignzoo.algos.dpo import collate_pairs, tokenize_pairs

        if self._batches is None:
            data = self.ctx.task.heldout_pairs(policy, self.cfg.max_pairs)
            self.texts = data
            if not data["prompt"]:  # nothing held out (e.g. every row was dropped): no score; training says why
                self._batches = []
                return self._batches
            limit = policy.max_length
            pairs = tokenize_pairs(policy, data, max_length=limit, max_prompt_length=limit // 2)
            step = self.cfg.batch_size
            self._batches = [collate_pairs(pairs[i:i + step], list(range(i, min(i + step, len(pairs)))),
                                           policy.pad_id, policy.device) for i in range(0, len(pairs), step)]
        return self._batches

    def evaluate(self, samples: Any) -> dict[str, float]:
        from alignzoo.algos.dpo import pair_logps

        policy, reference = samples.policy, samples.reference
        batches = self._pairs(policy)
        if not batches:
            return {}
        ratios = []
        with torch.no_grad():
            for batch in batches:
                pol_c, pol_r = pair_logps(policy.model, batch, False)
                ref_c, ref_r = pair_logps(reference.model, batch, False)
                ratios.append((self.beta * (pol_c - ref_c), self.beta * (pol_r - ref_r)))
        chosen = torch.cat([c for c, _ in ratios]).float().cpu()
        rejected = torch.cat([r for _, r in ratios]).float().cpu()
        accuracy, ties = pairwise_accuracy(chosen, rejected)
        out = {"pref_accuracy": accuracy, "pref_margin": float((chosen - rejected).mean()), "pref_ties": ties,
               "pref_pairs": float(len(chosen))}
        reward = self.ctx.reward
        if reward is not None:
            prompts, ended = self.texts["prompt"], torch.ones(len(chosen), dtype=torch.bool)
            rm_c = torch.as_tensor(reward.score(prompts, self.texts["chosen"], ended), dtype=torch.float32)
            rm_r = torch.as_tensor(reward.score(prompts, self.texts["rejected"], ended), dtype=torch.float32)
            out["pref_rm_accuracy"] = pairwise_accuracy(rm_c.cpu(), rm_r.cpu())[0]
        return out


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_evaluators(register):
    register("preference_accuracy", PreferenceAccuracyEvaluator, PreferenceAccuracyConfig)

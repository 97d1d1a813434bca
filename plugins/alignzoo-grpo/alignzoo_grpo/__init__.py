"""A worked example of extending alignzoo's GRPO family (``alignzoo.algos.group``) through its public API: one new
advantage estimator, a median baseline, registered as ``algo=grpo_median``.

The core owns the family (grpo, dr_grpo, dapo, gspo, cispo, rloo, reinforce_pp). A new algorithm of the family is
an estimator added to the core's ``ADVANTAGES`` table and a preset of its ``GroupConfig`` that names it; the core's
step function (``train``: sampling, the tables' losses and aggregations, ``training.loop``) does the rest.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from alignzoo import hookimpl
from alignzoo.algos.group import ADVANTAGES, PRESETS, STD_EPS, Estimator, register_presets

__version__ = "0.2.0"


def median_baseline(rewards: Tensor) -> Tensor:
    """``[B, G]`` rewards -> ``(r_i - median_g(r)) / (std_g(r) + 1e-4)``: GRPO's scale with a median baseline,
    which one outlier reward cannot drag (``torch.median``: the lower of the two middle values for even G)."""
    median = rewards.median(-1, keepdim=True).values
    return (rewards - median) / (rewards.std(-1, keepdim=True) + STD_EPS)


NAME = "grpo_median"


@hookimpl
def alignzoo_register_algos(register):
    # the estimator joins the core's table, so ``algo.advantage=grpo_median`` works for every preset of the family
    ADVANTAGES.setdefault(NAME, Estimator(median_baseline, 2))
    preset = dataclasses.replace(PRESETS["grpo"], name=NAME, advantage=NAME)
    register_presets(register, {NAME: preset}, {NAME: "GRPO with a median baseline (the alignzoo-grpo example)"})

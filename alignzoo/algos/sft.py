"""``algo=sft``: the reference row. The policy the pipeline hands over (the SFT policy), with no optimization.

Every leaderboard needs it: an algorithm's gain is its gold reward minus this row's, evaluated the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignzoo.hookspecs import hookimpl


@dataclass
class SFTConfig:
    name: str = "sft"


def train(cfg: SFTConfig, ctx: Any) -> Any:
    """Return the starting policy unchanged (the SFT reference row)."""
    return ctx.policy


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_algos(register):
    register("sft", train, SFTConfig, description="the SFT reference row: no optimization")

"""Learning rates on pretrained models.

Every algorithm's default ``lr`` is tuned for ``model=tiny``, trained from scratch by the pipeline (5e-4 for DPO);
on a pretrained model such a rate wrecks in a few steps what the model knew. A model config says it is pretrained
with the class attribute ``PRETRAINED = True`` (``model=hf``, ``model=smollm2``), and may carry ``algo_lr``, the
rate an algorithm should use on it when the user did not choose one (``model=smollm2_lora``: 1e-4). Without
``algo_lr`` the run keeps the tiny default and warns.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

#: an algorithm default at or above this is a from-scratch rate (pretrained models train at ~1e-6 .. 1e-4)
FROM_SCRATCH_LR = 1e-4


def is_pretrained(model_cfg: Any) -> bool:
    return bool(getattr(type(model_cfg), "PRETRAINED", False))


def default_lr(algo_cfg: Any) -> Optional[float]:
    """The ``lr`` default of the algorithm's config class (a preset instance's own default counts as chosen)."""
    for f in dataclasses.fields(type(algo_cfg)):
        if f.name == "lr" and f.default is not dataclasses.MISSING:
            return float(f.default)
    return None


def _typed(overrides: list[str], key: str) -> bool:
    return any(o.split("=", 1)[0].lstrip("+~") == key for o in overrides)


def pretrained_lr(built: dict[str, Any], overrides: list[str], config: dict[str, Any]) -> list[str]:
    """Apply the model's ``algo_lr`` to an algorithm left at its default ``lr`` (``built["algo"]`` and the record's
    ``config``), or warn when a pretrained model trains at a from-scratch default; returns the messages for the
    record's notes. ``algo.lr`` on the command line always wins."""
    algo, model = built.get("algo"), built.get("model")
    if algo is None or model is None or not hasattr(algo, "lr") or not is_pretrained(model):
        return []
    default = default_lr(algo)
    if _typed(overrides, "algo.lr") or default is None or float(algo.lr) != default:
        return []
    wanted = getattr(model, "algo_lr", None)
    if wanted is not None:
        algo.lr = float(wanted)
        if isinstance(config.get("algo"), dict):
            config["algo"]["lr"] = float(wanted)
        return [f"algo.lr={wanted:g}: model={model.name}'s rate for a pretrained model (algo={algo.name}'s default "
                f"{default:g} is for tiny models trained from scratch); set algo.lr=... to choose another"]
    if default < FROM_SCRATCH_LR:
        return []
    return [f"warning: algo.lr={default:g} is algo={algo.name}'s default for tiny models trained from scratch; on the "
            f"pretrained model={model.name} it will likely destroy what the model knows. Set algo.lr=1e-5 (about "
            "1e-4 with LoRA, model.lora.r=8)"]

"""Test helpers for alignzoo and for plugin authors (``pytest_plugins = ["alignzoo.testing"]``).

- ``compose_config(overrides)``: the composed Hydra config, exactly as ``alignzoo run`` would build it;
- ``run_tiny(overrides, job_dir)``: run one tiny job in-process and return its ``RunRecord``;
- ``make_preference_dataset(path, n)``: a small local preference dataset (prompt / chosen / rejected);
- fixtures ``preference_dataset`` (a dataset directory) and ``tiny_overrides`` (overrides for a seconds-long job).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

#: a seconds-long job: smoke budget, few steps, small evaluation, metrics to metrics.jsonl only
TINY_RUN = ["budget=smoke", "train.steps=4", "train.batch_size=8", "eval.num_prompts=8", "eval.max_new_tokens=8",
            "logger=[jsonl]"]
#: the smallest useful model=tiny
TINY_MODEL = ["model=tiny", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.n_positions=64",
              "model.vocab_size=300"]
TINY_OVERRIDES = TINY_MODEL + TINY_RUN

_SUBJECTS = ["the movie", "the plot", "the acting", "the music", "the ending", "the cast", "the story", "the film",
             "the script", "the score", "the pacing", "the dialogue"]
_OPENERS = ["honestly", "overall", "in short", "to be fair", "frankly", "sadly", "luckily", "i think"]
_GOOD = ["great", "wonderful", "lovely", "brilliant", "superb", "moving", "fun", "charming", "fresh", "delightful"]
_BAD = ["awful", "boring", "dull", "terrible", "bad", "weak", "messy", "tedious", "flat", "clumsy"]


def make_preference_dataset(path: str | Path, n: int = 200, *, seed: int = 0) -> Path:
    """Save ``n`` pairs where the chosen completion is positive and the rejected one negative."""
    import datasets

    rng = random.Random(seed)
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n):
        rows["prompt"].append(f"{rng.choice(_OPENERS)} {rng.choice(_SUBJECTS)} was")
        rows["chosen"].append(f" {rng.choice(_GOOD)} and {rng.choice(_GOOD)}")
        rows["rejected"].append(f" {rng.choice(_BAD)} and {rng.choice(_BAD)}")
    path = Path(path)
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def compose_config(overrides: list[str]) -> Any:
    """Compose the config for ``overrides`` as the CLI would (plugins loaded first)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from alignzoo import plugins
    from alignzoo.config import store_schema

    plugins.load()
    store_schema()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="alignzoo.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def run_tiny(overrides: list[str], job_dir: str | Path, *, tiny: bool = True) -> Any:
    """Run one job in-process (tiny settings first, then ``overrides``) and return its ``RunRecord``."""
    from alignzoo.run import run_job

    all_overrides = (TINY_OVERRIDES if tiny else []) + list(overrides)
    return run_job(compose_config(all_overrides), Path(job_dir), overrides=all_overrides)


try:  # fixtures, when pytest is there
    import pytest

    @pytest.fixture
    def preference_dataset(tmp_path_factory: Any) -> Path:
        return make_preference_dataset(tmp_path_factory.mktemp("prefs") / "data", 120)

    @pytest.fixture
    def tiny_overrides() -> list[str]:
        return list(TINY_OVERRIDES)
except ImportError:  # pragma: no cover
    pass

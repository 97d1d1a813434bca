"""Every algorithm of the GRPO family runs end to end (a two-step job on a tiny model with a rule reward) and logs
finite metrics of its own (DAPO: dynamic sampling and the overlong penalty); docs/algorithms.md#grpo-family."""

from __future__ import annotations

import json
import math

import pytest

from alignzoo.algos.group import PRESETS
from alignzoo.testing import run_tiny  # TINY_OVERRIDES: a seconds-long job on a tiny model

SHORT = ["train.steps=2", "train.batch_size=8", "reward=vader", "eval.num_prompts=8", "run.checkpoint_every=0",
         "budget.eval_every=0"]
COMMON = {"train/loss", "train/kl_k3", "train/clipfrac", "train/reward", "train/length", "train/grad_norm"}
OWN = {"dapo": {"train/dynamic/dropped_groups", "train/dynamic/rounds", "train/overlong_penalty"}}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_algorithm_runs_and_logs_finite_metrics(name, tmp_path, preference_dataset):
    rec = run_tiny([f"algo={name}", "task=hf_preferences", f"task.path={preference_dataset}", *SHORT,
                    "algo.epochs=1", "algo.max_new_tokens=8"], tmp_path)
    assert rec.status == "ok", rec.error
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = {k: v for line in lines for k, v in line.items() if k.startswith("train/")}
    assert COMMON | OWN.get(name, set()) <= set(train), sorted(train)
    assert all(math.isfinite(v) for v in train.values()), train
    assert rec.metrics and all(math.isfinite(v) for v in rec.metrics.values() if isinstance(v, float)), rec.metrics

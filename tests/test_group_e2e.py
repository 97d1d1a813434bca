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


#: with `make test` the three that cover every advantage/loss/aggregation path the others reuse (grpo: clip +
#: token mean; dapo: dynamic sampling + overlong shaping; rloo: REINFORCE + KL in the reward); the rest with
#: `make test-slow` (their tables' oracles run with make test in tests/test_group_oracles.py)
FAST = {"grpo", "dapo", "rloo"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(PRESETS)])
def test_each_algorithm_runs_and_logs_finite_metrics(name, tmp_path, preference_dataset):
    rec = run_tiny([f"algo={name}", "task=hf_preferences", f"task.path={preference_dataset}", *SHORT,
                    "algo.epochs=1", "algo.max_new_tokens=8"], tmp_path)
    assert rec.status == "ok", rec.error
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = {k: v for line in lines for k, v in line.items() if k.startswith("train/")}
    assert COMMON | OWN.get(name, set()) <= set(train), sorted(train)
    assert all(math.isfinite(v) for v in train.values()), train
    assert rec.metrics and all(math.isfinite(v) for v in rec.metrics.values() if isinstance(v, float)), rec.metrics


def test_dapo_interrupted_resumes_to_the_same_metrics_with_dynamic_sampling(tmp_path, preference_dataset,
                                                                            monkeypatch):
    """Dynamic sampling draws a varying number of prompt batches per step; the checkpoint's data position (the
    batches drawn) makes the resumed job draw what the uninterrupted one drew."""
    from alignzoo import checkpoint
    from alignzoo.record import read_record

    job = ["algo=dapo", "task=hf_preferences", f"task.path={preference_dataset}", "reward=vader", "train.steps=4",
           "train.batch_size=8", "eval.num_prompts=8", "budget.eval_every=0", "run.checkpoint_every=2",
           "algo.epochs=1", "algo.max_new_tokens=8", "algo.overlong_buffer=0"]  # no length term: VADER ties
    want = run_tiny(job, tmp_path / "whole")
    assert want.status == "ok", want.error
    lines = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert sum(line.get("train/dynamic/dropped_groups", 0) for line in lines) > 0  # rounds were resampled

    save = checkpoint.save_if_due

    def save_then_stop(ctx, state, step):
        out = save(ctx, state, step)
        if step == 3:
            raise KeyboardInterrupt("stopped after step 3")
        return out

    monkeypatch.setattr(checkpoint, "save_if_due", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(job, tmp_path / "job")
    assert read_record(tmp_path / "job").status == "failed"
    monkeypatch.undo()
    got = run_tiny(job, tmp_path / "job")
    assert got.status == "ok", got.error
    assert got.metrics == want.metrics and got.history == want.history and got.tokens == want.tokens

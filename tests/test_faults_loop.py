"""Fault rows of the training loop (catalogue kit: tests/faultkit.py): what a user meets now that every algorithm,
the GRPO/RLOO plugin included, runs on ``training.loop`` and A2C has a config of its own."""

from __future__ import annotations

import sys

import pytest

from faultkit import CKPT, Env, Fault, _failed_record_aside, _fresh_plugins, data, golden, run_fault  # noqa: F401

from alignzoo import plugins
from alignzoo.testing import TINY_OVERRIDES

GRPO = ["algo=grpo", "reward=vader"]  # a rule reward: no reward model to train first


def _grpo(env: Env) -> None:
    """Load the example GRPO/RLOO plugin for this row (the catalogue runs with built-ins only)."""
    env.monkeypatch.setenv("ALIGNZOO_PLUGINS", "grpo")
    plugins.load(reload=True)


def _grpo_only(env: Env) -> list[str]:
    _grpo(env)
    return []


def _grpo_job_with_checkpoints(env: Env) -> list[str]:
    """A finished GRPO job with checkpoints of steps 2 and 4 (the plugin's loop checkpoints like the built-ins)."""
    from alignzoo.cli import main

    _grpo(env)
    env.monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as exit_:
        main(["run", *TINY_OVERRIDES, "task=hf_preferences", f"task.path={env.data}", *GRPO, *CKPT,
              f"hydra.run.dir={env.job}"])
    assert exit_.value.code == 0
    steps = sorted(p.name for p in (env.job / "checkpoints").iterdir())
    assert steps == ["step-00000002", "step-00000004"], steps
    env.before["record.json"] = (env.job / "record.json").read_bytes()
    for ckpt in (env.job / "checkpoints").iterdir():
        for f in ckpt.iterdir():
            env.before[f"checkpoints/{ckpt.name}/{f.name}"] = f.read_bytes()
    return CKPT


FAULTS = [
    Fault("loop-a2c-has-no-epochs", "config", ["algo=a2c", "algo.epochs=2"], 2,
          ("algo.epochs", "Key 'epochs' not in 'A2CConfig'")),
    Fault("loop-grpo-batch-does-not-split-into-micro-batches", "config",
          [*GRPO, "algo.group_size=3", "train.grad_accum=4"], 2,
          ("algo=grpo: a step samples 6 completions", "train.grad_accum=4 micro-batches",
           "make train.batch_size a multiple of algo.group_size x 4"), setup=_grpo_only),
    Fault("loop-grpo-checkpoint-other-config", "checkpoints", [*GRPO, "algo.beta=0.1"], 2,
          ("was written by a different config (algo.beta: 0.05 -> 0.1)", "run.resume=false"),
          setup=_grpo_job_with_checkpoints, check=_failed_record_aside),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):  # noqa: F811
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

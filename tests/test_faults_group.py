"""Fault rows of the GRPO family (catalogue kit: tests/faultkit.py): settings of ``alignzoo.algos.group`` that
cannot work stop before training with one message naming the key and the fix; an earlier finished job in the same
directory stays byte-identical."""

from __future__ import annotations

import pytest

from faultkit import Env, Fault, _kept_intact, data, golden, run_fault  # noqa: F401

RULE = ["reward=vader"]  # a rule reward: no reward model to train first


def _over_finished_job(env: Env) -> list[str]:
    """The row runs in the directory of a finished job (with checkpoints), which must stay as it was."""
    env.from_golden()
    return []


def _row(id_: str, args: list[str], *says: str) -> Fault:
    return Fault(f"group-{id_}", "config", [*RULE, *args], 2, says, setup=_over_finished_job, check=_kept_intact)


FAULTS = [
    _row("size-below-two", ["algo=grpo", "algo.group_size=1"],
         "algo.group_size must be >= 2 for advantage=grpo (got 1)", "needs another sample of the same prompt"),
    _row("eps-high-below-eps-low", ["algo=dapo", "algo.eps_high=0.1"],
         "eps_high >= eps_low (got eps_low=0.2, eps_high=0.1)", "e.g. eps_low=0.2 eps_high=0.28"),
    _row("unknown-advantage", ["algo=grpo", "algo.advantage=median"],
         "algo.advantage must be one of grpo, dr_grpo, rloo, reinforce_pp", "(got 'median')"),
    _row("unknown-aggregation", ["algo=gspo", "algo.aggregation=seq_mean"],
         "algo.aggregation must be one of token_mean, seq_mean_token_mean, seq_sum (got 'seq_mean')"),
    _row("overlong-buffer-not-below-max-new-tokens", ["algo=dapo", "algo.overlong_buffer=20"],
         "algo.overlong_buffer must be in [0, max_new_tokens=20)"),
    _row("no-sampling-rounds", ["algo=dapo", "algo.max_sampling_rounds=0"],
         "algo.max_sampling_rounds must be >= 1 (got 0)"),
    _row("negative-loss-constant", ["algo=dr_grpo", "algo.loss_constant=-1"],
         "algo.loss_constant must be >= 0 (0: max_new_tokens)"),
    Fault("group-batch-does-not-split-into-micro-batches", "config",
          [*RULE, "algo=reinforce_pp", "algo.group_size=3", "train.grad_accum=4"], 2,
          ("algo=reinforce_pp: a step samples 6 completions", "train.grad_accum=4 micro-batches",
           "make train.batch_size a multiple of algo.group_size x 4")),  # (over a finished job: its resume check)
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

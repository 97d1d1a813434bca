"""Fault-catalogue rows of task=arithmetic and the verifiable track (reward=verifier, labeler=verifier, its
evaluators): bad task settings and components used on a task they do not fit (tests/faultkit.py runs them)."""

from __future__ import annotations

import pytest

from faultkit import Fault, _fresh_plugins, data, golden, run_fault  # noqa: F401

ARITH = ["task=arithmetic", "task.ops=+-*", "task.max_digits=1", "task.sft_size=40", "task.rl_size=20",
         "task.eval_size=20", "task.length_size=20", "task.val_size=10", "pipeline.feedback_prompts=32"]

FAULTS = [
    Fault("arith-unknown-op", "config", [*ARITH, "task.ops=+/"], 2,
          ("task.ops must be one or more of + - *, each once (got '+/'); e.g. task.ops='+-*'",)),
    Fault("arith-digits-out-of-order", "config", [*ARITH, "task.min_digits=3", "task.max_digits=2"], 2,
          ("task.min_digits=3 and max_digits=2 must satisfy 1 <= min_digits <= max_digits <= 40",)),
    Fault("arith-too-few-problems", "config", ["task=arithmetic", "task.max_digits=1"], 2,
          ("task.max_digits=1 with ops='+-' allows only 200 distinct problems, but the held-out splits need",
           "raise task.max_digits or lower the split sizes")),
    Fault("arith-no-length-split", "config", [*ARITH, "task.length_extra_digits=0", "task.eval_size=0"], 2,
          ("task.length_extra_digits must be >= 1 (got 0)", "task.eval_size must be >= 1 (got 0)")),
    Fault("arith-negative-format-weight", "config", [*ARITH, "algo=ppo", "reward=verifier",
                                                     "reward.format_weight=-1"], 2,
          ("reward.format_weight must be >= 0 (got -1.0)",)),
    Fault("arith-pass-at-k-above-n", "config", [*ARITH, "evaluator=[pass_at_k]", "evaluator.pass_at_k.k=20"], 2,
          ("evaluator.pass_at_k.k=20 must be in 1..n (n=16 samples per prompt)",)),
    Fault("arith-simulated-labeler", "runtime", [*ARITH, "algo=dpo"], 2,
          ("the verifier checks each completion against its prompt's answer", "use labeler=verifier")),
    Fault("arith-verifier-labeler-elsewhere", "runtime", ["algo=dpo", "labeler=verifier"], 2,
          ("labeler=verifier needs a task with checkable answers and feedback prompts (task=arithmetic); "
           "task=hf_preferences has not both",)),
    Fault("arith-verifier-reward-elsewhere", "runtime", ["algo=ppo", "reward=verifier"], 2,
          ("reward=verifier needs a task with checkable answers (task=arithmetic); task=hf_preferences has none",)),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):  # noqa: F811
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

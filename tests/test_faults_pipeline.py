"""Fault-catalogue rows of the pipeline (alignzoo/pipeline): labelers and stage sizes (tests/faultkit.py runs them)."""

from __future__ import annotations

import pytest

from faultkit import Fault, _fresh_plugins, data, golden, run_fault  # noqa: F401

FAULTS = [
    Fault("pipeline-unknown-labeler", "config", ["labeler=simulatd"], 2,
          ("unknown labeler 'simulatd'", "Did you mean labeler=simulated?", "Known labeler names: critic, dataset")),
    Fault("pipeline-no-labeler", "config", ["~labeler"], 2,
          ("labeler is not set; choose one with labeler=<name> (labeler=dataset: the task's own pairs)",)),
    Fault("pipeline-human-labeler-without-path", "config", ["labeler=human"], 2,
          ("labeler.path is required with labeler=human", "labeler.path=<folder written by `alignzoo label`>")),
    Fault("pipeline-negative-stage-size", "config", ["pipeline.sft_steps=-1", "pipeline.completions_per_prompt=1"], 2,
          ("pipeline.sft_steps must be >= 0 (got -1)", "pipeline.completions_per_prompt must be >= 2 (got 1)")),
    Fault("pipeline-moved-budget-key", "config", ["budget.pretrain_steps=20"], 2,
          ("budget.pretrain_steps moved to pipeline.pretrain_steps", "write pipeline.pretrain_steps=20")),
    Fault("pipeline-critic-labeler-without-critic", "runtime", ["labeler=critic"], 2,
          ("labeler=critic needs a critic: add critic=rule",)),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):  # noqa: F811
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

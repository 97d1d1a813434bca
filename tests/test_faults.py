"""The fault catalogue: bad inputs and faults across config, data, plugins, runtime and checkpoints, one row each.

Every row runs ``alignzoo run ...`` in this process (the real CLI: plugin loading, Hydra, ``run_job``) and checks
the exit code, one clear message on stderr that names the thing and the fix (never a Python traceback), and that
every record and checkpoint that was complete before the fault is still there and intact. Most rows fail at
validation; the others use a seconds-long job on a tiny model and a small local preference dataset. The kit (row
type, setups, runner, fixtures) is tests/faultkit.py; more rows live in tests/test_faults_*.py, and the count below
covers them all.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch

from faultkit import (CKPT, Fault, _broken_dist, _checkpoint_write_fails, _damage, _data, _DuplicateDPO,  # noqa: F401
                      _ExplodingAlgo, _failed_record_aside, _flip_bytes, _foreign_weights, _fresh_plugins, _golden,
                      _half_written, _history_kept, _ignored_and_removed, _in_file, _newest_damaged, _notes_say,
                      _RaisingHook, _record_write_fails, _resumed_from_the_older_one, _reward_plugin,
                      _run_goes_on_with_the_previous_checkpoint, _set_format, _truncate,
                      _earlier_record_kept_and_no_temp_file, data, golden, run_fault)

# -- the catalogue -------------------------------------------------------------------------------------------------

FAULTS = [
    # config: one message per problem with its full key and the fix; a config Hydra cannot compose is one line too
    Fault("unknown-component", "config", ["algo=dpx"], 2, ("unknown algo 'dpx'", "Did you mean algo=dpo?")),
    Fault("unknown-component-in-list", "config", ["evaluator=[kl,lenght]"], 2,
          ("unknown evaluator 'lenght'", "Did you mean evaluator=length?")),
    Fault("negative-learning-rate", "config", ["algo.lr=-0.001"], 2, ("algo.lr must be > 0 (got -0.001)",)),
    Fault("unknown-optimizer", "config", ["train.optimizer=adamx"], 2,
          ("train.optimizer must be one of adamw, adam, rmsprop, sgd (got 'adamx')",)),
    Fault("batch-not-divisible", "config", ["train.grad_accum=3"], 2,
          ("train.batch_size=8 must be divisible by grad_accum=3",)),
    Fault("wrong-type", "config", ["train.steps=abc"], 2, ("train.steps", "could not be converted to Integer")),
    Fault("unknown-key", "config", ["algo.betta=0.2"], 2, ("algo.betta", "Key 'betta' not in 'DPOConfig'")),
    Fault("negative-checkpoint-interval", "config", ["run.checkpoint_every=-1"], 2,
          ("run.checkpoint_every must be >= 0 (got -1)",)),
    Fault("negative-temperature", "config", ["eval.temperature=-1"], 2, ("eval.temperature must be >= 0",)),
    Fault("generation-longer-than-context", "config", ["eval.max_new_tokens=100"], 2,
          ("eval.max_new_tokens=100 leaves no room for a prompt in the model's 64-token context", "below 64")),
    Fault("max-length-beyond-context", "config", ["algo.max_length=512"], 2,
          ("algo.max_length=512 is longer than the model's 64-token context", "at most 64")),
    # data
    Fault("dataset-missing-column", "data", [], 2, ("has no column 'rejected'", "task.rejected_column"),
          setup=_data(prompt=["a"] * 8, chosen=["b"] * 8)),
    Fault("dataset-empty", "data", [], 2, ("has no rows",),
          setup=_data(prompt=[], chosen=[], rejected=[])),
    Fault("dataset-all-rows-empty", "data", [], 2, ("every row has an empty chosen or rejected response",),
          setup=_data(prompt=["p"] * 20, chosen=[""] * 20, rejected=["r"] * 20)),
    Fault("dataset-some-rows-empty", "data", ["train.steps=2", "task.eval_fraction=0"], 0, (),
          setup=_data(prompt=["the film was"] * 40, chosen=[" great"] * 30 + [""] * 10,
                      rejected=[" awful"] * 36 + ["   "] * 4),
          check=_notes_say("skipped 10 rows with an empty chosen or rejected response")),
    Fault("prompts-longer-than-context", "data", ["train.steps=2"], 0, (),
          setup=_data(prompt=["the film was " * 80] * 30, chosen=[" great"] * 30, rejected=[" awful"] * 30),
          check=_notes_say("prompts are longer than algo.max_prompt_length=32 tokens and keep only their end")),
    Fault("dataset-path-missing", "data", ["task.path=/nonexistent/prefs"], 2,
          ("path '/nonexistent/prefs' does not exist",)),
    Fault("dataset-not-json", "data", [], 2, ("could not load dataset", "bad.jsonl"),
          setup=_in_file("bad.jsonl", '{"prompt": "a", "chosen"\n', "task.path")),
    # plugins
    Fault("plugin-raises-at-import", "plugins", [], 0,
          ("plugin broken_plugin (1.2.3) is broken and was skipped", "this plugin is broken on purpose"),
          setup=_broken_dist),
    Fault("plugin-hook-raises", "plugins", ["--cfg", "job"], 0,
          ("is broken and was skipped", "boom while registering evaluators"),
          setup=lambda env: env.plugin("raising", _RaisingHook())),
    Fault("plugin-duplicate-name", "plugins", ["--cfg", "job"], 0, ("dupe", "is broken and was skipped", "dpo"),
          setup=lambda env: env.plugin("dupe", _DuplicateDPO())),
    Fault("plugin-algorithm-crashes", "plugins", ["algo=boom"], 1,
          ("kaboom in training", "this looks like a bug; the traceback is in"),
          setup=lambda env: env.plugin("exploding", _ExplodingAlgo()), check=_history_kept),
    # runtime
    Fault("reward-wrong-shape", "runtime", ["algo=ppo", "reward=bad_shape"], 2,
          ("reward 'bad_shape' returned shape [3] for 8 completions", "must return a tensor of shape [8]"),
          setup=lambda env: env.plugin("bad_shape", _reward_plugin("bad_shape", lambda n: torch.zeros(3)))),
    Fault("reward-nan", "runtime", ["algo=ppo", "reward=nan_reward"], 2,
          ("became nan at step 1", "check the reward for NaN/inf values"),
          setup=lambda env: env.plugin("nan", _reward_plugin("nan_reward", lambda n: torch.full((n,), float("nan")))),
          check=_history_kept),
    Fault("output-dir-unwritable", "runtime", [], 2,
          ("cannot create the output directory", "is not a directory", "hydra.run.dir=<dir>"),
          setup=_in_file("a-file", "x", "hydra.run.dir")),
    Fault("stage-cache-unwritable", "runtime", ["task=sentiment"], 2,
          ("cannot write the stage cache", "set run.cache_dir=<dir>"), setup=_in_file("a-file", "x", "run.cache_dir")),
    Fault("disk-full-writing-the-record", "runtime", [], 2,
          ("could not write", "No space left on device", "free space on that disk"),
          setup=_record_write_fails, check=_earlier_record_kept_and_no_temp_file),
    Fault("disk-full-writing-a-checkpoint", "runtime", [], 0, (),
          setup=_checkpoint_write_fails, check=_run_goes_on_with_the_previous_checkpoint),
    # checkpoints
    Fault("checkpoint-corrupt", "checkpoints", [], 2,
          ("checkpoint", "is damaged: policy.safetensors does not match its SHA-256 checksum", "rm -r",
           "run.resume=false"),
          setup=_damage("policy.safetensors", _flip_bytes), check=_failed_record_aside),
    Fault("checkpoint-truncated", "checkpoints", [], 2, ("is damaged: tensors.safetensors has", "bytes instead of"),
          setup=_damage("tensors.safetensors", _truncate), check=_failed_record_aside),
    Fault("checkpoint-without-manifest", "checkpoints", [], 2, ("is damaged: manifest.json is missing",),
          setup=_damage("manifest.json", lambda p: p.unlink()), check=_failed_record_aside),
    Fault("checkpoint-other-format", "checkpoints", [], 2, ("it has format 99; this alignzoo reads format 1",),
          setup=_damage("manifest.json", _set_format), check=_failed_record_aside),
    Fault("checkpoint-of-another-model", "checkpoints", [], 2,
          ("does not fit this job", "run.resume=false", "own hydra.run.dir"), setup=_foreign_weights,
          check=_failed_record_aside),
    Fault("checkpoint-other-config", "checkpoints", ["algo.beta=0.2"], 2,
          ("was written by a different config (algo.beta: 0.1 -> 0.2)", "own hydra.run.dir", "run.resume=false"),
          setup=lambda env: _golden(env), check=_failed_record_aside),
    Fault("checkpoint-newest-damaged-older-whole", "checkpoints", [], 0, (), setup=_newest_damaged,
          check=_resumed_from_the_older_one),
    Fault("checkpoint-half-written", "checkpoints", [], 0, (), setup=_half_written, check=_ignored_and_removed),
]


def all_rows() -> list:
    """Every row of the catalogue: this module's FAULTS and the FAULTS (or ROWS) of every tests/test_faults_*.py."""
    rows = list(FAULTS)
    for path in sorted(Path(__file__).parent.glob("test_faults_*.py")):
        module = importlib.import_module(path.stem)
        rows += list(getattr(module, "FAULTS", [])) + list(getattr(module, "ROWS", []))
    return rows


def test_the_catalogue_has_at_least_60_faults_across_every_area():
    assert len(FAULTS) >= 20 and len({f.id for f in FAULTS}) == len(FAULTS)
    assert {f.area for f in FAULTS} == {"config", "data", "plugins", "runtime", "checkpoints"}
    rows = all_rows()
    assert len({r.id for r in rows}) == len(rows), "row ids must be unique across the catalogue"
    assert len(rows) >= 60
    prefixes = {r.id.split("-")[0] for r in rows}
    assert {"config", "data", "plugins", "runtime", "cache", "board", "label", "checkpoint"} <= prefixes, prefixes


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

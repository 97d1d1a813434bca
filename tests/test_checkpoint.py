"""Checkpoints and exact resume: a job killed after a checkpoint and re-run with the same command finishes with
the metrics of an uninterrupted run; checkpoints are atomic, pickle-free and verified before they are loaded."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alignzoo import checkpoint
from alignzoo.record import read_record
from alignzoo.testing import SMOKE_TASK, run_tiny


def cli(args, cwd, plugins=""):
    env = {**os.environ, "ALIGNZOO_PLUGINS": plugins, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    return subprocess.Popen([sys.executable, "-m", "alignzoo", "run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def logged_steps(job: Path) -> list[int]:
    path = job / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]
    return [line["step"] for line in lines if "train/loss" in line]


#: algorithm -> the plugins it needs (none now: the GRPO family is built in); every loop stands on training.loop
KILLED = {"ppo": "", "ilql": "", "grpo": "", "rloo": ""}
#: 18-29 s each: PPO runs with `make test`, the other loops with `make test-slow` (the same test, the same loop code)
SLOW_KILLS = {"ilql", "grpo", "rloo"}


@pytest.mark.parametrize("algo", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW_KILLS else a
                                  for a in sorted(KILLED)])
def test_killed_with_sigkill_after_a_checkpoint_resumes_to_the_same_final_metrics(algo, tmp_path, stage_cache):
    steps, every = 8, 2
    args = [*SMOKE_TASK, f"algo={algo}", f"train.steps={steps}", f"run.checkpoint_every={every}",
            "budget.eval_every=4", "eval.num_prompts=16", f"run.cache_dir={stage_cache}"]
    plugins = KILLED[algo]
    whole = cli([*args, f"hydra.run.dir={tmp_path / 'whole'}"], tmp_path, plugins)
    out, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out
    want = read_record(tmp_path / "whole")

    # the same command, SIGKILLed at a random point after its first checkpoint: once the first checkpoint is on
    # disk and step `k` was logged, plus a random fraction of a step (so it dies mid-step or mid-save too)
    job = tmp_path / "job"
    rng = random.Random()
    k, pause = rng.randint(every, steps - 3), rng.uniform(0.0, 0.3)
    killed = cli([*args, f"hydra.run.dir={job}"], tmp_path, plugins)
    deadline = time.time() + 600
    while killed.poll() is None and time.time() < deadline and not (
            any((job / "checkpoints").glob("step-*")) and logged_steps(job) and logged_steps(job)[-1] >= k):
        time.sleep(0.02)
    time.sleep(pause)
    assert killed.poll() is None, f"the run ended before the kill point (step {k} + {pause:.2f}s)"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    killed.stdout.close()
    assert killed.returncode == -signal.SIGKILL
    assert not (job / "record.json").exists()  # it died without finishing
    left = sorted(p.name for p in (job / "checkpoints").glob("step-*"))
    assert left, "no complete checkpoint survived the kill"

    again = cli([*args, f"hydra.run.dir={job}"], tmp_path, plugins)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out
    got = read_record(job)
    resumed = [n for n in got.notes if n.startswith("resumed from checkpoint")]
    newest = left[-1]
    assert len(resumed) == 1 and f"{newest} at step {int(newest[5:])} of {steps}" in resumed[0], (k, pause, got.notes)
    assert got.status == "ok" and got.algo == algo
    assert got.metrics == want.metrics, f"killed after step {k} + {pause:.2f}s: metrics differ"
    assert got.history == want.history and [h["step"] for h in got.history] == [0, 4, 8]
    assert got.tokens == want.tokens
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == [f"step-{steps:08d}"]  # keep=1, no temp left


@pytest.fixture
def dpo_job(tmp_path, preference_dataset):
    return ["task=hf_preferences", f"task.path={preference_dataset}", "train.steps=6", "run.checkpoint_every=2",
            "budget.eval_every=3"]


def interrupt_after(monkeypatch, at_step):
    """Make the job stop (as Ctrl-C would) right after the training loop's step ``at_step``."""
    save = checkpoint.save_if_due

    def save_then_stop(ctx, state, step):
        out = save(ctx, state, step)
        if step == at_step:
            raise KeyboardInterrupt(f"stopped after step {step}")
        return out

    monkeypatch.setattr(checkpoint, "save_if_due", save_then_stop)


def test_dpo_interrupted_resumes_with_the_same_metrics_history_and_tokens(tmp_path, dpo_job, monkeypatch):
    want = run_tiny(dpo_job, tmp_path / "whole")
    assert want.status == "ok", want.error
    interrupt_after(monkeypatch, 5)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(dpo_job, tmp_path / "job")
    assert read_record(tmp_path / "job").status == "failed"
    assert [p.name for p in (tmp_path / "job" / "checkpoints").iterdir()] == ["step-00000004"]
    monkeypatch.undo()
    got = run_tiny(dpo_job, tmp_path / "job")
    assert got.status == "ok", got.error
    assert got.metrics == want.metrics and got.history == want.history and got.tokens == want.tokens
    assert [h["step"] for h in got.history] == [0, 3, 6]
    assert any(n.endswith("step-00000004 at step 4 of 6") for n in got.notes)
    assert read_record(tmp_path / "job").status == "ok"  # the finished attempt's record replaced the failed one


def test_checkpoint_is_safetensors_and_json_only_and_round_trips_the_loop_state(tmp_path, dpo_job):
    rec = run_tiny([*dpo_job, "run.checkpoint_keep=2"], tmp_path)
    assert rec.status == "ok", rec.error
    ckpts = sorted((tmp_path / "checkpoints").iterdir())
    assert [p.name for p in ckpts] == ["step-00000004", "step-00000006"]  # keep=2: step 2 was pruned
    last = ckpts[-1]
    assert sorted(p.name for p in last.iterdir()) == ["manifest.json", "policy.safetensors", "state.json",
                                                      "tensors.safetensors"]
    from safetensors.torch import load_file

    tensors = load_file(str(last / "tensors.safetensors"))
    state = json.loads((last / "state.json").read_text())
    manifest = json.loads((last / "manifest.json").read_text())
    assert manifest["step"] == state["step"] == 6 and manifest["format"] == checkpoint.FORMAT
    assert set(manifest["files"]) == {"policy.safetensors", "tensors.safetensors", "state.json"}
    # Adam's moments for every trained tensor, its step count, the LR schedule, every RNG, the data position
    n_params = len(state["optimizer"]["param_groups"][0]["params"])
    assert n_params > 0 and {f"optimizer.{i}.exp_avg" for i in range(n_params)} <= set(tensors)
    assert float(tensors["optimizer.0.step"]) == 6.0 and state["scheduler"]["last_epoch"] == 6
    assert tensors["rng.torch"].dtype == torch.uint8 and len(state["rng"]["python"][1]) == 625
    assert state["objects"]["batches"] == {"drawn": 6}
    # the final evaluation comes after the loop: a re-run resumes at step 6 and only evaluates again
    assert [h["step"] for h in state["run"]["history"]] == [0, 3] and state["run"]["last_step"] == 6
    assert state["config"]["algo"]["name"] == "dpo" and "run" not in state["config"]
    assert checkpoint.verify(last) is None


def test_replay_resumes_the_data_position():
    from alignzoo.training import infinite_batches

    a = infinite_batches(10, 3, seed=5)
    seen = [next(a) for _ in range(7)]
    b = infinite_batches(10, 3, seed=5)
    b.load_state_dict(a.state_dict())
    assert [next(b) for _ in range(5)] == [next(a) for _ in range(5)]
    assert seen[:3] != seen[3:6]  # reshuffled every epoch, never the same order twice


def test_a_crash_while_saving_keeps_the_previous_checkpoint_and_leaves_no_complete_looking_one(tmp_path, dpo_job,
                                                                                               monkeypatch):
    import safetensors.torch as st

    real = st.save_file
    calls = {"n": 0}

    def dies_on_second_checkpoint(tensors, filename, *a, **kw):
        calls["n"] += str(filename).endswith(checkpoint.TENSORS)
        if calls["n"] == 2:  # step 4: the policy is written, the other tensors half, then the process dies
            Path(filename).write_bytes(b"\0" * 100)
            raise KeyboardInterrupt("killed while writing a checkpoint")
        return real(tensors, filename, *a, **kw)

    monkeypatch.setattr(st, "save_file", dies_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        run_tiny(dpo_job, tmp_path)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names[-1] == "step-00000002" and len(names) == 2 and names[0].startswith(".tmp-step-00000004")
    monkeypatch.undo()
    rec = run_tiny(dpo_job, tmp_path)  # the half-written one is ignored and removed; resumes from step 2
    assert rec.status == "ok" and any(n.endswith("step-00000002 at step 2 of 6") for n in rec.notes)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000006"]


def test_resume_false_moves_old_checkpoints_aside_and_starts_over(tmp_path, dpo_job):
    first = run_tiny(dpo_job, tmp_path)
    assert first.status == "ok", first.error
    again = run_tiny([*dpo_job, "run.resume=false"], tmp_path)
    assert again.status == "ok" and again.metrics == first.metrics  # trained again from step 0: the same run
    assert not any(n.startswith("resumed") for n in again.notes)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("checkpoints.old-")]
    assert len(aside) == 1 and any(str(aside[0]) in n for n in again.notes)
    assert [p.name for p in aside[0].iterdir()] == ["step-00000006"]  # kept, never deleted
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000006"]


def _bare_ctx(tmp_path):
    """The least a RunContext must offer ``checkpoint.save``: its manager, record, progress and notes."""
    from types import SimpleNamespace

    from alignzoo.record import RunRecord

    record = RunRecord("t", "running", config={"algo": {"name": "x"}})
    manager = checkpoint.Checkpoints(tmp_path / "checkpoints", every=1, keep=1, config={})
    progress = {"history": record.history, "train_metrics": {}, "tokens": 0, "last_step": 0}
    return SimpleNamespace(checkpoints=manager, record=record, note=record.notes.append,
                           progress_state=lambda: progress)


def test_a_full_disk_at_the_rename_keeps_the_earlier_checkpoint_of_the_same_step(tmp_path, monkeypatch):
    """Re-saving a step first moves the earlier checkpoint of that step out of the way; when the rename of the new
    one then fails (ENOSPC), the earlier one is put back, whole, instead of being left as a removable .tmp-*."""
    import errno

    ctx, state = _bare_ctx(tmp_path), checkpoint.TrainingState(modules={"policy": torch.nn.Linear(2, 2)})
    first = checkpoint.save(ctx, state, 2)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    real = os.replace

    def replace(src, dst, *a, **kw):
        if ".tmp-step-00000002" in str(src):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    assert checkpoint.save(ctx, state, 2) is None
    assert sorted(p.name for p in ctx.checkpoints.root.iterdir()) == ["step-00000002"]
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before and checkpoint.verify(first) is None
    assert "checkpoint of step 2 could not be written (OSError: [Errno 28] No space left" in ctx.record.notes[-1]


def test_a_bug_while_saving_is_raised_not_taken_for_a_full_disk(tmp_path, monkeypatch):
    """Only the disk's failures are survivable warnings; anything else is a bug and stops the run."""
    import safetensors.torch as st

    ctx, state = _bare_ctx(tmp_path), checkpoint.TrainingState(modules={"policy": torch.nn.Linear(2, 2)})
    monkeypatch.setattr(st, "save_file", lambda *a, **k: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):
        checkpoint.save(ctx, state, 1)
    assert not list(ctx.checkpoints.root.iterdir())  # no half checkpoint left behind

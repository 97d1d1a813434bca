"""The `alignzoo` command line: clear errors, composed configs, sweeps that survive a failing job."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignzoo.testing import TINY_OVERRIDES, make_preference_dataset


def run_cli(args, cwd, env_extra=None, timeout=300):
    env = {**os.environ, "ALIGNZOO_PLUGINS": "", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "alignzoo", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_preference_dataset(tmp_path_factory.mktemp("cli") / "prefs", 120)


def assert_clean_error(out, *needles):
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    for needle in needles:
        assert needle in out.stderr, out.stderr


def test_unknown_algo_lists_names_and_suggests(tmp_path):
    out = run_cli(["run", "algo=dpx"], tmp_path)
    assert_clean_error(out, "unknown algo 'dpx'", "Did you mean algo=dpo?", "Known algo names: ")
    listing = out.stderr.split("Known algo names: ")[1].split(".")[0].split(", ")
    assert {"dpo", "ipo", "cdpo", "sft"} <= set(listing) and listing == sorted(listing)


def test_negative_beta_is_one_clear_message(tmp_path, data):
    out = run_cli(["run", "algo=dpo", "algo.beta=-1", "task=hf_preferences", f"task.path={data}"], tmp_path)
    assert_clean_error(out, "algo.beta must be > 0 (got -1.0)")


def test_every_config_problem_is_reported_at_once(tmp_path):
    out = run_cli(["run", "task=hf_preferences", "algo.beta=0", "train.grad_accum=3", "model.n_head=3"], tmp_path)
    assert_clean_error(out, "algo.beta must be > 0", "task.path is required", "model.n_embd=64 must be divisible",
                       "train.batch_size=16 must be divisible by grad_accum=3")


def test_dataset_missing_rejected_column(tmp_path):
    import datasets

    path = tmp_path / "norej"
    datasets.Dataset.from_dict({"prompt": ["a", "b"], "chosen": ["x", "y"]}).save_to_disk(str(path))
    out = run_cli(["run", "task=hf_preferences", f"task.path={path}"], tmp_path)
    assert_clean_error(out, "no column 'rejected'", str(path), "['prompt', 'chosen']")


@pytest.mark.parametrize("kind", ["saved", "jsonl"])
def test_empty_dataset(tmp_path, kind):
    import datasets

    if kind == "saved":
        path = tmp_path / "empty"
        datasets.Dataset.from_dict({"prompt": [], "chosen": [], "rejected": []}).save_to_disk(str(path))
    else:
        path = tmp_path / "empty.jsonl"
        path.write_text("")
    out = run_cli(["run", "task=hf_preferences", f"task.path={path}"], tmp_path)
    assert_clean_error(out, f"dataset '{path}' has no rows")


def test_cfg_job_prints_composed_config(tmp_path):
    out = run_cli(["run", "--cfg", "job", "algo=ipo"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "name: ipo" in out.stdout and "variant: ipo" in out.stdout and "beta: 0.1" in out.stdout


def test_help_lists_config_groups(tmp_path):
    out = run_cli(["run", "--help"], tmp_path)
    assert out.returncode == 0
    algos = next(line for line in out.stdout.splitlines() if line.startswith("algo: "))[6:].split(", ")
    assert {"dpo", "ipo", "cdpo", "sft"} <= set(algos) and algos == sorted(algos)
    assert "logger: console, jsonl, wandb" in out.stdout
    assert "task: arithmetic, hf_preferences, sentiment" in out.stdout


def test_sweep_goes_on_after_a_failing_job(tmp_path, data):
    out = run_cli(["run", "-m", *TINY_OVERRIDES, "task=hf_preferences", f"task.path={data},/nonexistent/data"], tmp_path)
    assert out.returncode == 0, out.stderr
    records = sorted(Path(tmp_path, "outputs", "sweeps").glob("*/*/record.json"))
    statuses = sorted(json.loads(p.read_text())["status"] for p in records)
    assert statuses == ["failed", "ok"]
    failed = next(json.loads(p.read_text()) for p in records if json.loads(p.read_text())["status"] == "failed")
    assert "/nonexistent/data" in failed["error"]["message"]


def test_python_m_alignzoo_and_unknown_command(tmp_path):
    out = run_cli(["frobnicate"], tmp_path)
    assert out.returncode == 2 and "unknown command 'frobnicate'" in out.stderr

"""Scale-out: two gloo processes train DPO, PPO, ILQL and GRPO (a plugin's loop) with the same global batch as one
process, give the same loss trajectory, and only rank 0 writes; sharded sampling, the launcher plumbing and the
precision knob."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignzoo import distributed, plugins
from alignzoo import rollout as ro
from alignzoo.distributed import Engine, RowShard
from alignzoo.errors import AlignzooError
from alignzoo.testing import TINY_OVERRIDES, run_tiny

CONF = Path(distributed.__file__).parent / "conf" / "accelerate"
COMMON = ["train.steps=3", "train.batch_size=8", "evaluator=[kl]"]
#: algorithm -> (extra overrides, launcher, plugins): DPO through `accelerate launch` with the CPU preset, the others
#: through torchrun; ILQL and GRPO with gradient accumulation too (token means over micro-batches and ranks). GRPO
#: is scored by length: VADER gives a whole group of the tiny model's completions one score (zero advantages)
CASES = {
    "dpo": (["algo=dpo", "train.grad_accum=2"], "accelerate", ""),
    "ppo": (["algo=ppo", "reward=vader"], "torchrun", ""),
    "ilql": (["algo=ilql", "reward=vader", "train.grad_accum=2"], "torchrun", ""),
    "grpo": (["algo=grpo", "reward=length", "train.grad_accum=2"], "torchrun", ""),
    # the GRPO family's batch statistics over ranks: REINFORCE++'s batch-wide normalisation, DAPO's token count
    "reinforce_pp": (["algo=reinforce_pp", "reward=length", "train.grad_accum=2"], "torchrun", ""),
    "dapo": (["algo=dapo", "algo.dynamic_sampling=false", "reward=length", "train.grad_accum=2"], "torchrun", ""),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(launcher: str, overrides: list[str], cwd: Path, plugins: str = "") -> subprocess.CompletedProcess:
    port = str(_free_port())
    if launcher == "torchrun":
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    else:
        head = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONF / "cpu.yaml"),
                "--num_processes", "2", "--main_process_port", port]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "ALIGNZOO_PLUGINS": plugins}
    return subprocess.run([*head, "-m", "alignzoo", "run", *overrides], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=540)


def _train_steps(path: Path) -> list[dict]:
    return [row for row in map(json.loads, path.read_text().splitlines()) if any(k.startswith("train/") for k in row)]


#: about 11 s each: DPO and PPO run with `make test`, ILQL and the GRPO family (the same sharding code) with
#: `make test-slow`
SLOW_CASES = {"ilql", "grpo", "reinforce_pp", "dapo"}


@pytest.mark.parametrize("algo", [pytest.param(a, marks=pytest.mark.slow) if a in SLOW_CASES else a
                                  for a in sorted(CASES)])
def test_two_gloo_processes_match_one_process_and_only_rank0_writes(tmp_path, preference_dataset, algo,
                                                                    monkeypatch):
    extra, launcher, plugin_names = CASES[algo]
    overrides = [*TINY_OVERRIDES, "task=hf_preferences", f"task.path={preference_dataset}", *COMMON, *extra,
                 f"run.cache_dir={tmp_path / 'cache'}"]
    monkeypatch.setenv("ALIGNZOO_PLUGINS", plugin_names)
    plugins.load(reload=True)
    try:
        one = run_tiny(overrides, tmp_path / "one", tiny=False)
    finally:
        monkeypatch.undo()
        plugins.load(reload=True)
    assert one.status == "ok", one.error

    work = tmp_path / "two"
    work.mkdir()
    proc = _launch(launcher, overrides, work, plugin_names)  # Hydra's default, time-stamped run directory under work/outputs
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    runs = list((work / "outputs" / "runs").iterdir())
    assert len(runs) == 1, runs  # both ranks used rank 0's directory; rank 1 made none of its own
    job = runs[0]
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "alignzoo.log", "metrics.jsonl", "record.json"]
    assert sorted(p.name for p in work.iterdir()) == ["outputs"]
    record = json.loads((job / "record.json").read_text())
    assert record["status"] == "ok" and "2 process(es), fp32 on cpu" in record["notes"]
    assert record["tokens"] == one.tokens  # both ranks' shares, counted once
    assert (job / "alignzoo.log").read_text().count("2 process(es)") == 1  # rank 0's log only

    two_steps = _train_steps(job / "metrics.jsonl")
    one_steps = _train_steps(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in two_steps] == [r["step"] for r in one_steps] == [1, 2, 3]  # logged once, by rank 0
    for a, b in zip(one_steps, two_steps):
        assert abs(a["train/loss"] - b["train/loss"]) <= 1e-5, (a["step"], a["train/loss"], b["train/loss"])
        for key in a:
            if key.startswith("train/"):
                # clip fractions count tokens on either side of a threshold: float rounding may move one token
                tol = 0.01 if "clipfrac" in key else 1e-5
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=tol), key
    assert one_steps[-1]["train/loss"] != one_steps[0]["train/loss"]  # it trained
    assert record["metrics"]["eval/kl"] == pytest.approx(one.metrics["eval/kl"], abs=1e-4)


def test_a_shard_samples_exactly_the_rows_one_process_samples():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 3
    probs = torch.softmax(logits, -1)
    whole = ro.draw(probs, ro.uniforms(6, torch.Generator().manual_seed(7), "cpu"))  # what one process samples
    for rank in range(3):
        engine = Engine(world_size=3, rank=rank)
        shard = RowShard(engine, engine.rows(6), 6)
        got = shard.sample(probs[shard.rows], torch.Generator().manual_seed(7))
        assert torch.equal(got, whole[shard.rows])


def test_shards_split_a_batch_evenly_or_say_how_to_fix_it():
    engine = Engine(world_size=2, rank=1)
    assert engine.shard(list(range(8))) == [4, 5, 6, 7]
    assert engine.shard(torch.arange(4)).tolist() == [2, 3]
    with pytest.raises(AlignzooError, match=r"train.batch_size: a global batch of 7 does not split evenly over 2"):
        engine.shard(list(range(7)))
    assert Engine().shard([1, 2, 3]) == [1, 2, 3]  # one process: the batch itself


def test_rank_other_than_zero_writes_no_hydra_files_and_sweeps_are_refused(monkeypatch):
    assert distributed.hydra_overrides(["algo=dpo"]) == []  # no launcher
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert distributed.hydra_overrides(["algo=dpo"]) == []
    monkeypatch.setenv("RANK", "1")
    assert distributed.hydra_overrides(["algo=dpo"]) == ["hydra.output_subdir=null", "hydra/job_logging=stdout"]
    with pytest.raises(AlignzooError, match="a sweep"):
        distributed.hydra_overrides(["-m", "seed=0,1"])


def test_fsdp_and_deepspeed_launches_are_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(AlignzooError, match=r"FSDP.*conf/accelerate/ddp.yaml"):
        distributed.setup(device="cpu")


def test_precision_is_fp32_on_cpu_and_autocasts_on_request():
    cpu = torch.device("cpu")
    assert distributed.resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(AlignzooError, match="run.precision=fp16 needs a GPU"):
        distributed.resolve_precision("fp16", cpu)
    x = torch.randn(3, 4)
    with Engine(precision="fp32").autocast():
        assert (x @ x.T).dtype == torch.float32
    with Engine(precision="bf16").autocast():
        assert (x @ x.T).dtype == torch.bfloat16
        with Engine(precision="bf16").no_autocast():
            assert (x @ x.T).dtype == torch.float32
    assert Engine(precision="bf16").grad_scaler() is None


def test_bad_precision_is_reported_with_its_key():
    from alignzoo import plugins
    from alignzoo.config import validate
    from alignzoo.testing import compose_config

    _, problems = validate(compose_config([*TINY_OVERRIDES, "run.precision=fp8"]), plugins.load().registries)
    assert any(p.startswith("run.precision must be one of auto, fp32, bf16, fp16 (got 'fp8')") for p in problems)


def test_a_bf16_run_autocasts_its_forwards_and_still_starts_at_log2(tmp_path, preference_dataset):
    import math

    base = ["task=hf_preferences", f"task.path={preference_dataset}", "algo=dpo", "train.steps=3",
            "evaluator=[kl]", "task.pretrain=false"]  # the random model, as before the pipeline pretrained it
    bf16 = run_tiny([*base, "run.precision=bf16"], tmp_path / "bf16")
    fp32 = run_tiny(base, tmp_path / "fp32")
    assert bf16.status == fp32.status == "ok", (bf16.error, fp32.error)
    assert "1 process(es), bf16 on cpu" in bf16.notes and not any("process(es)" in n for n in fp32.notes)
    steps = lambda rec: [h for h in map(json.loads, (Path(rec.job_dir) / "metrics.jsonl").read_text().splitlines())
                         if "train/loss" in h]  # noqa: E731
    low, full = steps(bf16), steps(fp32)
    assert low[0]["train/loss"] == full[0]["train/loss"] == pytest.approx(math.log(2), abs=1e-7)  # policy == ref
    assert low[0]["train/logps/chosen"] != full[0]["train/logps/chosen"]  # bf16 forwards round differently
    assert low[-1]["train/loss"] == pytest.approx(full[-1]["train/loss"], abs=0.05)

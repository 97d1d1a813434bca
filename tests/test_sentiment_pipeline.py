"""The embedded default task end to end at budget=smoke: stages, caching, gold evaluation."""

import json
import os
import subprocess
import sys

import pytest

from alignzoo.record import read_record
from alignzoo.testing import run_tiny

SMOKE = ["task=sentiment", "budget=smoke", "logger=[jsonl]"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("stage-cache")  # its own: the first runs here must find it empty


@pytest.fixture(scope="module")
def cold_and_warm(cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cold = run_tiny([*SMOKE, "algo=dpo", f"run.cache_dir={cache}"], root / "cold", tiny=False)
    warm = run_tiny([*SMOKE, "algo=dpo", f"run.cache_dir={cache}"], root / "warm", tiny=False)
    return cold, warm


def test_cold_run_builds_every_stage_and_warm_run_reuses_them(cold_and_warm, cache):
    cold, warm = cold_and_warm
    assert cold.status == warm.status == "ok", (cold.error, warm.error)
    stages = ("tokenizer", "pretrain", "sft", "feedback")
    for stage in stages:
        assert any(n.startswith(f"stage {stage}: built") for n in cold.notes), cold.notes
        assert any(n.startswith(f"stage {stage}: reused from cache") for n in warm.notes), warm.notes
        assert len([p for p in (cache / stage).iterdir() if p.is_dir()]) == 1
    assert warm.metrics == cold.metrics  # reuse changes nothing about the result


def test_base_model_writes_corpus_like_text(cold_and_warm, cache):
    meta = json.loads(next((cache / "pretrain").glob("*/meta.json")).read_text())
    assert meta["val_perplexity"] < 0.05 * meta["uniform_perplexity"]  # uniform over 1024 tokens: 1024
    assert any("held-out perplexity" in n for n in cold_and_warm[0].notes)


def test_every_evaluation_reports_gold_kl_length_eos_and_repetition(cold_and_warm):
    rec = cold_and_warm[0]
    for entry in rec.history:
        for key in ("eval/gold_reward", "eval/kl", "eval/win_rate", "eval/length", "eval/eos_share",
                    "eval/repetition", "eval/distinct_2"):
            assert key in entry, key
    start = rec.history[0]
    assert start["step"] == 0 and start["eval/kl"] == 0.0 and start["eval/win_rate"] == 0.5
    assert rec.metrics["eval/kl"] > 0


def test_feedback_stats_are_recorded(cold_and_warm, cache):
    meta = json.loads(next((cache / "feedback").glob("*/meta.json")).read_text())
    assert meta["pairs"] == 128 and 0.5 < meta["agreement_with_gold"] <= 1.0
    assert "inter_annotator_agreement" in meta
    assert any(n.startswith("feedback: 128 pairs") for n in cold_and_warm[0].notes)


def test_sft_row_is_the_unchanged_reference(cache, tmp_path):
    rec = run_tiny([*SMOKE, "algo=sft", f"run.cache_dir={cache}"], tmp_path, tiny=False)
    assert rec.status == "ok", rec.error
    assert rec.history[0]["eval/gold_reward"] == rec.history[-1]["eval/gold_reward"]
    assert rec.metrics["eval/kl"] == 0.0


def test_two_jobs_on_an_empty_cache_build_each_stage_once(tmp_path):
    cache = tmp_path / "cache"
    env = {**os.environ, "ALIGNZOO_PLUGINS": ""}
    args = [sys.executable, "-m", "alignzoo", "run", *SMOKE, "algo=sft", f"run.cache_dir={cache}",
            "pipeline.pretrain_steps=20", "budget.eval_prompts=16"]
    procs = [subprocess.Popen([*args, f"seed={i}", f"hydra.run.dir={tmp_path}/job{i}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    records = [read_record(tmp_path / f"job{i}") for i in range(2)]
    assert all(r.status == "ok" for r in records)
    for stage in ("tokenizer", "pretrain", "sft"):
        built = [r for r in records if any(n.startswith(f"stage {stage}: built") for n in r.notes)]
        assert len(built) == 1, [r.notes for r in records]
        assert len([p for p in (cache / stage).iterdir() if p.is_dir()]) == 1


def test_feedback_size_is_in_the_tokenizer_key_because_it_moves_the_training_split(tmp_path):
    """The feedback prompts are cut from the corpus before the training remainder: another feedback size trains the
    tokenizer (and the base model) on other text, so it must not reuse their cached stages."""
    from types import SimpleNamespace

    from alignzoo.tasks.sentiment import SentimentConfig, SentimentTask

    ctx = SimpleNamespace(cache_dir=str(tmp_path), note=lambda *a, **k: None)
    tasks = [SentimentTask(SentimentConfig(corpus_size=20000, feedback_prompts=n), ctx) for n in (128, 256)]
    assert tasks[0].splits["train"] != tasks[1].splits["train"]
    for task in tasks:
        task.tokenizer(300)
    assert len([p for p in (tmp_path / "tokenizer").iterdir() if p.is_dir()]) == 2
    tasks[0].tokenizer(300)  # the same sizes again: reused
    assert len([p for p in (tmp_path / "tokenizer").iterdir() if p.is_dir()]) == 2


# -- the stage cache verifies what it reuses ---------------------------------------------------------------------

def _build_slowly(out):
    """A stage build that takes long enough for a second job to arrive while it runs."""
    import time

    time.sleep(0.5)
    (out / "weights.bin").write_bytes(b"w" * 1000)
    return {"built_by": os.getpid()}


def _stage_in_a_child(cache, queue):
    from alignzoo.stages.cache import run_stage

    notes = []
    result = run_stage(cache, "demo", {"x": 1}, _build_slowly, note=notes.append)
    queue.put((result.reused, notes))


def test_two_jobs_on_a_damaged_entry_move_it_aside_once_and_build_it_once(tmp_path):
    """Both jobs see the damage; under the lock the first moves it aside and rebuilds, the second waits and reuses
    the rebuilt entry (it never moves aside an entry another job is writing: entries are renamed in complete)."""
    import multiprocessing

    from alignzoo.stages.cache import damage, run_stage

    cache = tmp_path / "cache"
    entry = run_stage(cache, "demo", {"x": 1}, _build_slowly, note=lambda n: None).path
    (entry / "weights.bin").write_bytes(b"w" * 10)  # truncated
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()
    children = [fork.Process(target=_stage_in_a_child, args=(cache, queue)) for _ in range(2)]
    for c in children:
        c.start()
    results = [queue.get(timeout=60) for _ in children]
    for c in children:
        c.join(timeout=60)
        assert c.exitcode == 0
    assert sorted(reused for reused, _ in results) == [False, True]
    builder_notes = next(notes for reused, notes in results if not reused)
    assert "weights.bin has 10 bytes instead of 1000 (truncated or overwritten)" in builder_notes[0]
    assert len(list(entry.parent.glob(f"{entry.name}.damaged-*"))) == 1
    assert damage(entry, "demo", entry.name) is None and (entry / "weights.bin").read_bytes() == b"w" * 1000


def test_reuse_hashes_an_entry_once_per_process_and_still_sees_a_rewritten_file(tmp_path, monkeypatch):
    """Checksums are computed on the first reuse in a process; later reuses check sizes and timestamps only, so a
    file rewritten in place (same size) is hashed again and caught."""
    import time

    from alignzoo import manifest
    from alignzoo.stages import cache as stage_cache

    entry = stage_cache.run_stage(tmp_path, "demo", {"x": 1}, _build_slowly, note=lambda n: None).path
    stage_cache._VERIFIED.clear()  # as in a fresh process
    hashed = []
    real = manifest.sha256
    monkeypatch.setattr(manifest, "sha256", lambda path: hashed.append(path.name) or real(path))
    notes = []
    for _ in range(3):
        assert stage_cache.run_stage(tmp_path, "demo", {"x": 1}, _build_slowly, note=notes.append).reused
    assert sorted(hashed) == ["meta.json", "weights.bin"]  # once, not three times
    time.sleep(0.05)  # file timestamps tick coarsely; a real rewrite comes long after the build
    (entry / "weights.bin").write_bytes(b"x" * 1000)
    result = stage_cache.run_stage(tmp_path, "demo", {"x": 1}, _build_slowly, note=notes.append)
    assert not result.reused
    assert "weights.bin does not match its SHA-256 checksum (corrupted)" in notes[-2]


def test_a_build_that_fails_for_its_own_reasons_keeps_its_error_and_leaves_nothing(tmp_path):
    """Only the cache disk's failures become the cache's message; a bug in a build stays a bug (its own error)."""
    from alignzoo.stages.cache import run_stage

    def broken(out):
        (out / "half.bin").write_bytes(b"x")
        raise PermissionError(13, "Permission denied", "/elsewhere/input.txt")  # reading an input, not the cache

    with pytest.raises(PermissionError):
        run_stage(tmp_path, "demo", {"x": 2}, broken, note=lambda n: None)
    assert [p.name for p in (tmp_path / "demo").iterdir() if not p.name.endswith(".lock")] == []

"""Fault catalogue rows for the runtime: the stage cache verifies what it reuses, finished work is never lost, a
diverged run fails, and a device this machine lacks is a config error.

Every row runs ``alignzoo run`` in this process through ``faultkit.run_fault`` (exit code, one message naming the
thing and the fix, no traceback) and checks that the work complete before the fault is byte-identical afterwards.
Stage-cache rows run the embedded sentiment task on the tiny model over a copy of the session's stage cache (its
stages are built once per session by ``sentiment_stages``) and damage one entry of the copy.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from alignzoo import checkpoint, hookimpl
from alignzoo.record import read_record
from alignzoo.stages import cache as stage_cache_mod
from alignzoo.testing import TINY_OVERRIDES
from faultkit import (CKPT, Env, Fault, _fail_fsync_for, _fresh_plugins,  # noqa: F401 - fixtures
                      _run_goes_on_with_the_previous_checkpoint, _truncate, data, golden, run_fault, run_ok)

#: the embedded task on faultkit's tiny model (its 64-token context is too short for the pretraining rows)
SENTIMENT = ["task=sentiment", "model.n_positions=128", "algo=ppo"]
STAGES = ("tokenizer", "pretrain", "sft", "feedback", "reward_model")
#: stage name -> its entry in the session's stage cache (filled once by the ``sentiment_stages`` fixture)
_ENTRIES: dict[str, Path] = {}
_STAGE_NOTE = re.compile(r"^stage (\w+): (?:built|reused)[^(]*\((/[^)]+)\)$")


@pytest.fixture(scope="module")
def sentiment_stages(stage_cache, tmp_path_factory):
    """Build (or reuse) the tiny sentiment pipeline's stages in the session cache and note where each lives."""
    job = run_ok([*TINY_OVERRIDES, *SENTIMENT, f"run.cache_dir={stage_cache}"],
                 tmp_path_factory.mktemp("stages") / "job")
    for note in read_record(job).notes:
        if m := _STAGE_NOTE.match(note):
            _ENTRIES[m.group(1)] = Path(m.group(2))
    assert set(_ENTRIES) == set(STAGES), _ENTRIES
    return dict(_ENTRIES)


# -- stage-cache setups and checks ------------------------------------------------------------------------------

def _copy_stages(env: Env, *, without: tuple[str, ...] = ()) -> Path:
    """A private copy of the built stages under ``env.tmp/cache``; every file of it is recorded in ``env.before``."""
    cache = env.tmp / "cache"
    for stage, entry in _ENTRIES.items():
        if stage not in without:
            shutil.copytree(entry, cache / stage / entry.name)
    for f in cache.rglob("*"):
        if f.is_file():
            env.before[str(f.relative_to(env.tmp))] = f.read_bytes()
    return cache


def _entry(env: Env, stage: str) -> Path:
    return env.tmp / "cache" / stage / _ENTRIES[stage].name


def _damaged(stage: str, how: Callable[[Path], None]) -> Callable[[Env], list[str]]:
    """Damage one entry of a copy of the cache; the other entries must stay byte-identical."""
    def setup(env: Env) -> list[str]:
        cache = _copy_stages(env)
        entry = _entry(env, stage)
        env.before = {k: v for k, v in env.before.items() if not k.startswith(str(entry.relative_to(env.tmp)))}
        how(entry)
        return [f"run.cache_dir={cache}"]
    return setup


def _others_intact(env: Env) -> None:
    for rel, content in env.before.items():
        assert (env.tmp / rel).read_bytes() == content, f"{rel} changed"


def _rebuilt(stage: str, *says: str) -> Callable[[Env], None]:
    """The damaged entry was moved aside and built again (the note says why); every other stage was reused."""
    def check(env: Env) -> None:
        rec = read_record(env.job)
        assert rec.status == "ok", rec.error
        notes = " | ".join(rec.notes)
        entry = _entry(env, stage)
        for fragment in (f"stage {stage}: the cached entry {entry} is damaged", "building the stage again",
                         f"stage {stage}: built", *says):
            assert fragment in notes, (fragment, notes)
        for other in STAGES:
            if other != stage:
                assert f"stage {other}: reused from cache ({_entry(env, other)})" in notes, (other, notes)
        asides = sorted(entry.parent.glob(f"{entry.name}.damaged-*"))
        assert len(asides) == 1 and f"moved it to {asides[0]}" in notes
        assert stage_cache_mod.damage(entry, stage, entry.name) is None  # the new entry is whole
        assert not [p for p in entry.parent.iterdir() if ".tmp-" in p.name]
        _others_intact(env)
    return check


def _garbage(path: Path) -> None:
    path.write_text("{not json")


def _other_manifest(entry: Path) -> None:
    """The manifest of another entry (e.g. copied by hand): its checksums may even match, its key does not."""
    (entry / "manifest.json").write_bytes((entry.parent.parent / "sft" / _ENTRIES["sft"].name /
                                           "manifest.json").read_bytes())


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _read_only(env: Env, root: Path) -> None:
    """Every write below ``root`` fails with EROFS, as on a read-only mount (tests run as root, where chmod does not
    stop a write): creating, opening for writing, renaming or removing anything there."""
    prefix = str(root.absolute())

    def inside(path: Any) -> bool:
        return isinstance(path, (str, bytes, os.PathLike)) and str(Path(os.fsdecode(path)).absolute()).startswith(
            prefix)

    def refuse(path: Any) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    real_open = os.open

    def open_(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            refuse(path)
        return real_open(path, flags, *args, **kwargs)

    env.monkeypatch.setattr(os, "open", open_)
    for name in ("mkdir", "unlink", "rmdir"):
        real = getattr(os, name)
        env.monkeypatch.setattr(os, name, lambda path, *a, _real=real, **k: refuse(path) if inside(path)
                                else _real(path, *a, **k))
    for name in ("replace", "rename"):
        real = getattr(os, name)
        env.monkeypatch.setattr(os, name, lambda src, dst, *a, _real=real, **k: refuse(src) if inside(src)
                                or inside(dst) else _real(src, dst, *a, **k))


def _read_only_cache(*, copy: bool, damage: tuple[str, Callable[[Path], None]] | None = None):
    def setup(env: Env) -> list[str]:
        cache = _copy_stages(env) if copy else env.tmp / "cache"
        cache.mkdir(exist_ok=True)
        env.listing = _listing(cache)  # type: ignore[attr-defined] - what the cache held, damaged files included
        if damage:
            stage, how = damage
            how(_entry(env, stage) / "model.safetensors")
            env.before = {k: v for k, v in env.before.items() if not k.endswith(f"{stage}/{_ENTRIES[stage].name}/"
                                                                                   "model.safetensors")}
        _read_only(env, cache)
        return [f"run.cache_dir={cache}"]
    return setup


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _nothing_written_to_the_cache(env: Env) -> None:
    assert _listing(env.tmp / "cache") == env.listing  # type: ignore[attr-defined] - no entry, lock or temp dir
    _others_intact(env)
    rec = read_record(env.job)
    assert rec.status == "failed" and rec.error["user_error"]


def _reused_read_only(env: Env) -> None:
    rec = read_record(env.job)
    assert rec.status == "ok", rec.error
    notes = " | ".join(rec.notes)
    assert all(f"stage {s}: reused from cache" in notes for s in STAGES), notes
    _others_intact(env)


def _disk_full_building(stage: str) -> Callable[[Env], list[str]]:
    """The stage is not in the cache; every fsync of its temporary build directory fails with ENOSPC."""
    def setup(env: Env) -> list[str]:
        cache = _copy_stages(env, without=(stage,))
        env.monkeypatch.setattr(os, "fsync", _fail_fsync_for(f"/{stage}/.{_ENTRIES[stage].name}.tmp-"))
        return [f"run.cache_dir={cache}"]
    return setup


def _no_half_entry(stage: str) -> Callable[[Env], None]:
    def check(env: Env) -> None:
        root = env.tmp / "cache" / stage
        assert not [p.name for p in root.iterdir() if p.is_dir()], list(root.iterdir())  # no entry, no .tmp-*
        _others_intact(env)
        rec = read_record(env.job)
        assert rec.status == "failed" and rec.error["user_error"]
    return check


# -- checkpoint and record setups and checks --------------------------------------------------------------------

def _fail_during_save(target: str, *, fragment: str = ".tmp-step-00000004") -> Callable[[Env], list[str]]:
    """ENOSPC at one point of writing the step-4 checkpoint: its mkdir, its tensors file, or the rename."""
    def setup(env: Env) -> list[str]:
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if target == "mkdir":
            real = os.mkdir
            env.monkeypatch.setattr(os, "mkdir", lambda p, *a, **k: (_ for _ in ()).throw(full)
                                    if fragment in os.fsdecode(p) else real(p, *a, **k))
        elif target == "tensors":
            import safetensors.torch
            from safetensors import SafetensorError

            real = safetensors.torch.save_file

            def save_file(tensors, filename, *a, **k):
                if fragment in str(filename) and str(filename).endswith(checkpoint.TENSORS):
                    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
                return real(tensors, filename, *a, **k)
            env.monkeypatch.setattr(safetensors.torch, "save_file", save_file)
        else:
            real = os.replace
            env.monkeypatch.setattr(os, "replace", lambda s, d, *a, **k: (_ for _ in ()).throw(full)
                                    if fragment in os.fsdecode(s) else real(s, d, *a, **k))
        return ["train.steps=4", "run.checkpoint_every=2"]
    return setup


def _kept_aside(*why: str, checkpoints_aside: bool = False) -> Callable[[Env], None]:
    """The earlier ok record is byte-identical as record.<time>.json, the notes name it and why; the new record
    is ok; the earlier checkpoints are byte-identical where they were moved (run.resume=false) or kept."""
    def check(env: Env) -> None:
        rec = read_record(env.job)
        assert rec.status == "ok", rec.error
        asides = sorted(p for p in env.job.iterdir() if re.fullmatch(r"record\.\d{8}-\d{6}(-\d+)?\.json", p.name))
        assert len(asides) == 1, list(env.job.iterdir())
        assert asides[0].read_bytes() == env.before["record.json"]
        notes = " | ".join(rec.notes)
        for fragment in (f"the earlier attempt's ok record was kept as {asides[0]}", *why):
            assert fragment in notes, (fragment, notes)
        root = env.job / "checkpoints"
        if checkpoints_aside:
            (old,) = env.job.glob("checkpoints.old-*")
            root = old
        for rel, content in env.before.items():
            if rel.startswith("checkpoints/"):
                assert (root / rel.split("/", 1)[1]).read_bytes() == content, rel
    return check


def _golden_without_checkpoints(env: Env) -> list[str]:
    shutil.rmtree(env.from_golden())
    env.before = {k: v for k, v in env.before.items() if not k.startswith("checkpoints/")}
    return []


def _golden_kept(env: Env) -> list[str]:
    env.from_golden()
    return CKPT


# -- diverged runs and devices ----------------------------------------------------------------------------------

@dataclass
class _Named:
    name: str = "x"


class _NanAlgo:
    """An algorithm whose last logged loss is NaN (a diverged run that its own loop did not stop)."""

    @hookimpl
    def alignzoo_register_algos(self, register):
        def train(cfg, ctx):
            ctx.log({"train/loss": 0.5}, 1)
            ctx.log({"train/loss": float("nan")}, 2)
            return ctx.policy

        register("nan_algo", train, _Named(name="nan_algo"))


def _diverged_and_kept(env: Env) -> None:
    rec = read_record(env.job)
    assert rec.status == "failed" and rec.error["type"] == "TrainingDivergedError" and rec.error["user_error"]
    assert rec.history and rec.history[-1]["step"] == 2  # what was measured is kept
    assert str(rec.metrics["train/loss"]) == "nan"


def _cuda(available: bool, count: int = 0) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        env.monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        env.monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        return []
    return setup


def _no_mps(env: Env) -> list[str]:
    env.monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    return []


def _nothing_ran(env: Env) -> None:
    rec = read_record(env.job)
    assert rec.status == "failed" and rec.error["user_error"] and not rec.history


# -- the rows ---------------------------------------------------------------------------------------------------

NEEDS_STAGES = "cache"  # rows of this area run on the copy of the built stages

FAULTS = [
    # the stage cache: a damaged entry is moved aside and rebuilt, and the run ends ok
    Fault("cache-truncated-safetensors", "cache", SENTIMENT, 0, (),
          setup=_damaged("sft", lambda e: _truncate(e / "model.safetensors")),
          check=_rebuilt("sft", "model.safetensors has", "bytes instead of", "(truncated or overwritten)")),
    Fault("cache-garbage-meta-json", "cache", SENTIMENT, 0, (),
          setup=_damaged("pretrain", lambda e: _garbage(e / "meta.json")), check=_rebuilt("pretrain", "meta.json has")),
    Fault("cache-missing-tokenizer-file", "cache", SENTIMENT, 0, (),
          setup=_damaged("tokenizer", lambda e: (e / "tokenizer.json").unlink()),
          check=_rebuilt("tokenizer", "tokenizer.json is missing")),
    Fault("cache-flipped-byte-in-a-data-file", "cache", SENTIMENT, 0, (),
          setup=_damaged("feedback", lambda e: _flip_one_byte(e / "data" / "data-00000-of-00001.arrow")),
          check=_rebuilt("feedback", "data/data-00000-of-00001.arrow does not match its SHA-256 checksum")),
    Fault("cache-entry-without-manifest", "cache", SENTIMENT, 0, (),  # written before stages had manifests
          setup=_damaged("reward_model", lambda e: (e / "manifest.json").unlink()),
          check=_rebuilt("reward_model", "it has no manifest.json (written by an alignzoo that did not checksum")),
    Fault("cache-manifest-of-another-entry", "cache", SENTIMENT, 0, (),
          setup=_damaged("pretrain", _other_manifest), check=_rebuilt("pretrain", "manifest.json belongs to sft/")),
    Fault("cache-read-only-with-whole-entries", "cache", SENTIMENT, 0, (),
          setup=_read_only_cache(copy=True), check=_reused_read_only),
    Fault("cache-read-only-building-a-stage", "cache", SENTIMENT, 2,
          ("cannot write the stage cache", "Read-only file system", "while building stage tokenizer",
           "set run.cache_dir=<dir>"), setup=_read_only_cache(copy=False), check=_nothing_written_to_the_cache),
    Fault("cache-read-only-with-a-damaged-entry", "cache", SENTIMENT, 2,
          ("cannot write the stage cache", "Read-only file system", "while replacing the damaged entry",
           "model.safetensors has", "set run.cache_dir=<dir>"),
          setup=_read_only_cache(copy=True, damage=("sft", _truncate)), check=_nothing_written_to_the_cache),
    Fault("cache-disk-full-building-a-stage", "cache", SENTIMENT, 2,
          ("the stage cache", "is full (No space left on device) while building stage sft",
           "nothing half-built was left there", "Free space on that disk", "run.cache_dir=<dir>"),
          setup=_disk_full_building("sft"), check=_no_half_entry("sft")),
    # a full disk while writing a checkpoint: a warning, and training goes on with the previous one
    Fault("runtime-disk-full-checkpoint-mkdir", "runtime", [], 0, (), setup=_fail_during_save("mkdir"),
          check=_run_goes_on_with_the_previous_checkpoint),
    Fault("runtime-disk-full-checkpoint-tensors-file", "runtime", [], 0, (), setup=_fail_during_save("tensors"),
          check=_run_goes_on_with_the_previous_checkpoint),
    Fault("runtime-disk-full-checkpoint-rename", "runtime", [], 0, (), setup=_fail_during_save("rename"),
          check=_run_goes_on_with_the_previous_checkpoint),
    # an earlier ok record is kept whenever a new attempt does not continue it
    Fault("runtime-resume-false-keeps-the-ok-record", "runtime", ["run.resume=false"], 0, (), setup=_golden_kept,
          check=_kept_aside("(run.resume=false)", "run.resume=false: the earlier checkpoints were moved to",
                            checkpoints_aside=True)),
    Fault("runtime-other-config-keeps-the-ok-record", "runtime", ["algo.beta=0.2"], 0, (),
          setup=_golden_without_checkpoints, check=_kept_aside("another config: algo.beta: 0.1 -> 0.2")),
    Fault("runtime-same-config-started-over-keeps-the-ok-record", "runtime", [], 0, (),
          setup=_golden_without_checkpoints, check=_kept_aside("it had no checkpoint of that run to continue from")),
    # a diverged run fails: NaN/inf settings at validation, NaN/inf final metrics at the end
    Fault("runtime-nan-max-grad-norm", "runtime", ["train.max_grad_norm=nan"], 2,
          ("train.max_grad_norm=nan must be a finite number", "e.g. train.max_grad_norm=1.0 (the default)"),
          check=_nothing_ran),
    Fault("runtime-inf-learning-rate", "runtime", ["algo.lr=inf"], 2,
          ("algo.lr=inf must be a finite number", "e.g. algo.lr=0.0005 (the default)"), check=_nothing_ran),
    Fault("runtime-nan-learning-rate", "runtime", ["algo.lr=nan"], 2, ("algo.lr=nan must be a finite number",),
          check=_nothing_ran),
    Fault("runtime-nan-in-a-list-setting", "runtime", ["train.betas=[0.9,nan]"], 2,
          ("train.betas[1]=nan must be a finite number",), check=_nothing_ran),
    Fault("runtime-diverged-final-metric", "runtime", ["algo=nan_algo"], 2,
          ("the run diverged: train/loss=nan at step 2", "lower the learning rate (algo.lr)",
           "train.max_grad_norm=1.0"),
          setup=lambda env: env.plugin("nan_algo", _NanAlgo()), check=_diverged_and_kept),
    # devices this machine does not have
    Fault("runtime-cuda-unavailable", "runtime", ["run.device=cuda"], 2,
          ("run.device=cuda: this torch", "sees no CUDA GPU", "use run.device=cpu"), setup=_cuda(False),
          check=_nothing_ran),
    Fault("runtime-cuda-index-beyond-the-gpus", "runtime", ["run.device=cuda:3"], 2,
          ("run.device=cuda:3: this machine has 1 CUDA device(s), cuda:0 to cuda:0", "use run.device=cpu"),
          setup=_cuda(True, 1), check=_nothing_ran),
    Fault("runtime-mps-unavailable", "runtime", ["run.device=mps"], 2,
          ("run.device=mps: this machine has no Apple MPS device", "use run.device=cpu"), setup=_no_mps,
          check=_nothing_ran),
    Fault("runtime-unknown-device", "runtime", ["run.device=gpu"], 2,
          ("run.device must be auto, cpu, cuda, cuda:N or mps (got 'gpu')", "e.g. run.device=cpu"),
          check=_nothing_ran),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, request, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    if fault.area == NEEDS_STAGES:
        request.getfixturevalue("sentiment_stages")
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)


def test_the_rows_cover_the_cache_and_the_runtime():
    assert len(FAULTS) >= 14 and len({f.id for f in FAULTS}) == len(FAULTS)
    assert all(f.id.startswith(("cache-", "runtime-")) for f in FAULTS)
    assert {f.area for f in FAULTS} == {"cache", "runtime"}

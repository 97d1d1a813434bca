"""The fault catalogue's kit (the rows live in tests/test_faults*.py): bad inputs and faults across config, data,
plugins, runtime and checkpoints, one row each.

Every row runs ``alignzoo run ...`` in this process (the real CLI: plugin loading, Hydra, ``run_job``) and checks
the exit code, one clear message on stderr that names the thing and the fix (never a Python traceback), and that
every record and checkpoint that was complete before the fault is still there and intact. Most rows fail at
validation; the others use a seconds-long job on a tiny model and a small local preference dataset.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch

from alignzoo import checkpoint, hookimpl, plugins
from alignzoo.manifest import sha256 as file_sha256
from alignzoo.record import read_record
from alignzoo.testing import TINY_OVERRIDES, make_preference_dataset

CKPT = ["train.steps=4", "run.checkpoint_every=2", "run.checkpoint_keep=2"]


@dataclass
class Env:
    """What a row's setup may use and change."""

    tmp: Path
    data: Path
    golden: Path  # an ok job with checkpoints of steps 2 and 4 (CKPT), copied into ``job`` by rows that need it
    job: Path
    monkeypatch: Any
    before: dict[str, bytes] = field(default_factory=dict)  # files that must be byte-identical afterwards

    def dataset(self, rows: dict[str, list[Any]], name: str = "bad") -> Path:
        import datasets

        path = self.tmp / name
        datasets.Dataset.from_dict(rows).save_to_disk(str(path))
        return path

    def from_golden(self) -> Path:
        shutil.copytree(self.golden, self.job)
        self.before["record.json"] = (self.job / "record.json").read_bytes()
        for ckpt in (self.job / "checkpoints").iterdir():
            for f in ckpt.iterdir():
                self.before[f"checkpoints/{ckpt.name}/{f.name}"] = f.read_bytes()
        return self.job / "checkpoints"

    def plugin(self, name: str, obj: Any) -> None:
        plugins.load(extra_plugins=[(name, obj)])


@dataclass
class Fault:
    id: str
    area: str  # config | data | plugins | runtime | checkpoints
    args: list[str] = field(default_factory=list)  # overrides after the tiny job's
    # 2: the user's error (a config Hydra cannot compose too); 1: a bug (traceback in the record); 0: handled
    exit: int = 2
    says: tuple[str, ...] = ()  # fragments of the one message on stderr
    setup: Optional[Callable[[Env], Optional[list[str]]]] = None  # may return more overrides
    check: Optional[Callable[[Env], None]] = None  # what must hold afterwards (records, checkpoints, notes)


# -- row helpers ---------------------------------------------------------------------------------------------------

def _record(env: Env) -> Any:
    return read_record(env.job)


def _notes_say(*fragments: str) -> Callable[[Env], None]:
    def check(env: Env) -> None:
        notes = " | ".join(_record(env).notes)
        for f in fragments:
            assert f in notes, (f, notes)
    return check


def _kept_intact(env: Env) -> None:
    """Everything complete before the fault is byte-identical (the damaged file itself excepted)."""
    for rel, content in env.before.items():
        assert (env.job / rel).read_bytes() == content, f"{rel} changed"
    assert read_record(env.job).status == "ok"


def _failed_record_aside(env: Env) -> None:
    _kept_intact(env)
    failed = read_record(env.job / "record.failed.json")
    assert failed.status == "failed" and failed.error["user_error"]


def _damage(name: str, how: Callable[[Path], None], *, keep_intact: bool = True):
    def setup(env: Env) -> list[str]:
        root = env.from_golden()
        shutil.rmtree(root / "step-00000002")  # only the newest: nothing whole to fall back to
        env.before = {k: v for k, v in env.before.items() if "step-00000002" not in k and not k.endswith(name)}
        how(root / "step-00000004" / name)
        return CKPT
    return setup


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-20:] = bytes(255 - b for b in data[-20:])
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _foreign_weights(env: Env) -> list[str]:
    """A whole checkpoint (checksums match) whose policy file holds another model's tensors."""
    from safetensors.torch import save_file

    args = _damage("policy.safetensors", lambda p: save_file({"other.weight": torch.zeros(3, 3)}, str(p)))(env)
    step = env.job / "checkpoints" / "step-00000004"
    manifest = json.loads((step / "manifest.json").read_text())
    manifest["files"]["policy.safetensors"] = {"bytes": (step / "policy.safetensors").stat().st_size,
                                               "sha256": file_sha256(step / "policy.safetensors")}
    (step / "manifest.json").write_text(json.dumps(manifest))
    env.before.pop("checkpoints/step-00000004/manifest.json")
    return args


def _set_format(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["format"] = 99
    path.write_text(json.dumps(manifest))


def _fail_fsync_for(fragment: str):
    """Simulate a full disk: fsync of any file whose path contains ``fragment`` fails with ENOSPC."""
    real = os.fsync

    def fsync(fd: int) -> None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if fragment in path:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)
    return fsync


# -- in-process plugins -------------------------------------------------------------------------------------------

@dataclass
class _Named:
    name: str = "x"


def _reward_plugin(name: str, score: Callable[[int], Any]):
    class Plugin:
        @hookimpl
        def alignzoo_register_rewards(self, register):
            class Reward:
                def __init__(self, cfg, ctx):
                    pass

                def score(self, prompts, completions, ended=None):
                    return score(len(completions))

            register(name, Reward, _Named(name=name))
    return Plugin()


class _RaisingHook:
    @hookimpl
    def alignzoo_register_evaluators(self, register):
        raise RuntimeError("boom while registering evaluators")


class _DuplicateDPO:
    @hookimpl
    def alignzoo_register_algos(self, register):
        register("dpo", lambda cfg, ctx: ctx.policy, _Named(name="dpo"))


class _ExplodingAlgo:
    @hookimpl
    def alignzoo_register_algos(self, register):
        def train(cfg, ctx):
            ctx.log({"train/loss": 1.0}, 1)
            raise RuntimeError("kaboom in training")

        register("boom", train, _Named(name="boom"))


def _broken_dist(env: Env) -> list[str]:
    (env.tmp / "broken_plugin.py").write_text("raise ImportError('this plugin is broken on purpose')\n")
    info = env.tmp / "broken_plugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken_plugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[alignzoo]\nbroken_plugin = broken_plugin\n")
    env.monkeypatch.syspath_prepend(str(env.tmp))
    env.monkeypatch.setenv("ALIGNZOO_PLUGINS", "broken_plugin")
    plugins.load(reload=True)
    return ["--cfg", "job"]


def _history_kept(env: Env) -> None:
    rec = _record(env)
    assert rec.status == "failed" and rec.history and rec.history[0]["step"] == 0


def _record_write_fails(env: Env) -> list[str]:
    env.from_golden()  # the job finished before; the re-run resumes at its last step and only evaluates again
    env.monkeypatch.setattr(os, "fsync", _fail_fsync_for("/.record."))
    return CKPT


def _earlier_record_kept_and_no_temp_file(env: Env) -> None:
    _kept_intact(env)
    assert not [p.name for p in env.job.iterdir() if p.name.startswith(".record")]


def _checkpoint_write_fails(env: Env) -> list[str]:
    env.monkeypatch.setattr(os, "fsync", _fail_fsync_for(".tmp-step-00000004"))
    return ["train.steps=4", "run.checkpoint_every=2"]


def _run_goes_on_with_the_previous_checkpoint(env: Env) -> None:
    _notes_say("checkpoint of step 4 could not be written", "No space left on device", "kept ")(env)
    assert _record(env).status == "ok"
    assert sorted(p.name for p in (env.job / "checkpoints").iterdir()) == ["step-00000002"]
    assert checkpoint.verify(env.job / "checkpoints" / "step-00000002") is None


def _newest_damaged(env: Env) -> list[str]:
    env.from_golden()
    _flip_bytes(env.job / "checkpoints" / "step-00000004" / "state.json")
    return CKPT


def _resumed_from_the_older_one(env: Env) -> None:
    _notes_say("is damaged (state.json does not match", "resuming from the one before it",
               "resumed from checkpoint")(env)
    names = [p.name for p in (env.job / "checkpoints").iterdir()]
    assert any(n.startswith("damaged-step-00000004") for n in names) and "step-00000004" in names


def _half_written(env: Env) -> list[str]:
    tmp = env.job / "checkpoints" / ".tmp-step-00000002-999"
    tmp.mkdir(parents=True)
    (tmp / "policy.safetensors").write_bytes(b"\0" * 10)
    return CKPT


def _ignored_and_removed(env: Env) -> None:
    rec = _record(env)
    assert rec.status == "ok" and not any(n.startswith("resumed") for n in rec.notes)
    assert not (env.job / "checkpoints" / ".tmp-step-00000002-999").exists()


def _golden(env: Env) -> list[str]:
    env.from_golden()
    return CKPT


def _data(**columns: list[str]) -> Callable[[Env], list[str]]:
    return lambda env: [f"task.path={env.dataset(columns)}"]


def _in_file(name: str, content: str, override: str) -> Callable[[Env], list[str]]:
    def setup(env: Env) -> list[str]:
        env.tmp.joinpath(name).write_text(content)
        return [f"{override}={env.tmp / name / 'below' if override != 'task.path' else env.tmp / name}"]
    return setup


# -- the runner -------------------------------------------------------------------------------------------------

def _merged(args: list[str]) -> list[str]:
    """The overrides with the last value of each key (as a user would type them once)."""
    out: dict[str, str] = {}
    for a in args:
        out[a.split("=", 1)[0] if "=" in a else a] = a
    return list(out.values())


def alignzoo_run(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """``alignzoo run ARGS`` in this process: (exit code, stderr)."""
    from alignzoo.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["run", *args])
    code = exit_.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_preference_dataset(tmp_path_factory.mktemp("faults") / "prefs", 120)


def run_ok(args: list[str], job: Path) -> Path:
    """``alignzoo run ARGS hydra.run.dir=JOB`` in this process, outside any test's monkeypatch (for module-scoped
    fixtures); asserts exit 0 and returns the job directory."""
    from _pytest.monkeypatch import MonkeyPatch

    from alignzoo.cli import main

    mp = MonkeyPatch()
    try:
        mp.setattr(sys, "argv", list(sys.argv))
        with pytest.raises(SystemExit) as exit_:
            main(["run", *args, f"hydra.run.dir={job}"])
        assert exit_.value.code == 0
    finally:
        mp.undo()
    return job


@pytest.fixture(scope="module")
def golden(tmp_path_factory, data):
    """An ok job with the checkpoints of steps 2 and 4, written by the CLI."""
    job = run_ok([*TINY_OVERRIDES, "task=hf_preferences", f"task.path={data}", *CKPT],
                 tmp_path_factory.mktemp("golden") / "job")
    assert read_record(job).status == "ok"
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    return job


@pytest.fixture(autouse=True)
def _fresh_plugins():
    yield
    plugins.load(reload=True)



def run_fault(fault: Fault, tmp_path: Path, data: Path, golden: Path, capsys, monkeypatch, stage_cache: Path) -> None:
    """One catalogue row through ``alignzoo run``: exit code, the message on stderr, no traceback, the row's check."""
    env = Env(tmp=tmp_path, data=data, golden=golden, job=tmp_path / "job", monkeypatch=monkeypatch)
    extra = (fault.setup(env) if fault.setup else None) or []
    task = [] if any(a.startswith("task=") for a in fault.args) else ["task=hf_preferences", f"task.path={data}"]
    args = _merged([*TINY_OVERRIDES, *task, f"run.cache_dir={stage_cache}", f"hydra.run.dir={env.job}",
                    *fault.args, *extra])
    code, err = alignzoo_run(args, capsys, monkeypatch)
    assert code == fault.exit, err[-3000:]
    assert "Traceback (most recent call last)" not in err, err[-3000:]
    for fragment in fault.says:
        assert fragment in err, (fragment, err[-3000:])
    if fault.exit == 2:  # a user error: exactly one "error:" line, then where the failed record is
        assert len([line for line in err.splitlines() if line.startswith("alignzoo: error:")]) == 1, err[-3000:]
    if fault.check:
        fault.check(env)

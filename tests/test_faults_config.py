"""Fault catalogue rows for config files and what they may run: malformed YAML, Hydra's pickle rerun, remote model
code asked for by a file, and walk-arounds of the import-path guard. Each goes through ``alignzoo run`` over a
finished job (the golden one) and must leave it byte-identical; the kit is tests/faultkit.py."""

from __future__ import annotations

import os
import pickle
from typing import Callable

import pytest

from faultkit import Env, Fault, _fresh_plugins, _kept_intact, data, golden, run_fault  # noqa: F401

HEADER = "# @package _global_\n"


def _experiment(name: str, text: str, *extra: str) -> Callable[[Env], list[str]]:
    """A downloaded config folder holding experiment/<name>.yaml, put on Hydra's search path (an override: the rows'
    arguments follow overrides, where Hydra's parser takes no flags) and selected with +experiment=<name>, over the
    golden job (which must come out untouched)."""
    def setup(env: Env) -> list[str]:
        env.from_golden()
        folder = env.tmp / "downloaded"
        (folder / "experiment").mkdir(parents=True)
        (folder / "experiment" / f"{name}.yaml").write_text(text.replace("MARKER", str(env.tmp / "MARKER")))
        return [f"hydra.searchpath=[file://{folder}]", f"+experiment={name}", f"hydra.sweep.dir={env.tmp / 'sweep'}",
                *extra]
    return setup


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled_rerun(env: Env) -> list[str]:
    """A config.pickle (as Hydra writes with its pickle callback) whose unpickling would run a command."""
    env.from_golden()
    (env.tmp / "config.pickle").write_bytes(pickle.dumps(_Payload(str(env.tmp / "MARKER"))))
    return ["--experimental-rerun", str(env.tmp / "config.pickle")]


def _inert(env: Env) -> None:
    """Nothing ran: no marker, no sweep, the finished job byte-identical."""
    assert not (env.tmp / "MARKER").exists(), "the payload ran"
    assert not (env.tmp / "sweep").exists()
    _kept_intact(env)


def _remote_code(env: Env) -> list[str]:
    """An experiment that picks model=hf with trust_remote_code (the row's job runs on model=hf, not the tiny model
    the kit puts first)."""
    import faultkit
    from alignzoo.testing import TINY_RUN

    env.monkeypatch.setattr(faultkit, "TINY_OVERRIDES", TINY_RUN)
    (env.tmp / "model").mkdir()
    return _experiment("remote", f"{HEADER}defaults:\n  - override /model: hf\nmodel:\n  path: {env.tmp / 'model'}\n"
                                 "  trust_remote_code: true\n")(env)


def _no_confirmation(setup: Callable[[Env], list[str]]) -> Callable[[Env], list[str]]:
    def wrapped(env: Env) -> list[str]:
        env.monkeypatch.delenv("ALIGNZOO_TRUST_REMOTE_CODE", raising=False)
        return setup(env)
    return wrapped


FAULTS = [
    Fault("config-yaml-bad-indentation", "config", [], 2,
          ("bad.yaml line 4: not valid YAML (mapping values are not allowed here)", "indent with spaces"),
          setup=_experiment("bad", f"{HEADER}algo:\n  beta: 0.2\n   lr: 0.1\n"), check=_inert),
    Fault("config-yaml-tab", "config", [], 2,
          ("tabs.yaml line 3: not valid YAML", "found character '\\t'", "(never tabs)"),
          setup=_experiment("tabs", f"{HEADER}algo:\n\tbeta: 0.2\n"), check=_inert),
    Fault("config-yaml-unclosed-quote", "config", [], 2,
          ("quote.yaml line 3: not valid YAML (while scanning a quoted scalar", "close every quote"),
          setup=_experiment("quote", f"{HEADER}algo:\n  name: \"dpo\n  beta: 0.2\n"), check=_inert),
    Fault("config-experimental-rerun", "config", [], 2,
          ("--experimental-rerun: Hydra would unpickle that file", "alignzoo never unpickles",
           ".hydra/overrides.yaml"), setup=_pickled_rerun, check=_inert),
    Fault("config-trust-remote-code-from-a-file", "config", [], 2,
          ("model.trust_remote_code=true comes from a config file", "ALIGNZOO_TRUST_REMOTE_CODE=1"),
          setup=_no_confirmation(_remote_code), check=_inert),
    Fault("config-attribute-walk-to-os-system", "config", [], 2,
          ("hydra.callbacks.evil._target_='alignzoo.cli.os.system'", "(it is os.system)",
           "select components by name"),
          setup=_experiment("walk", f"{HEADER}hydra:\n  callbacks:\n    evil:\n      _target_: alignzoo.cli.os.system\n"
                                    "      _args_: ['touch MARKER']\n"), check=_inert),
    Fault("config-target-from-a-resolver", "config", [], 2,
          ("hydra.callbacks.evil._target_='pathlib.Path.touch'", "configs may not name import paths"),
          setup=_experiment("resolver", f"{HEADER}hydra:\n  callbacks:\n    evil: "
                                        "\"${oc.create:{_target_: pathlib.Path.touch, _args_: [MARKER]}}\"\n"),
          check=_inert),
    Fault("config-logging-class-in-a-sweep-job", "config", [], 2,
          ("hydra.job_logging.handlers.console.class='pathlib.Path.touch'", "logging configs may only name",
           "(in the sweep job hydra.job_logging.handlers.console.class=pathlib.Path.touch)"),
          setup=_experiment("logs", f"{HEADER}hydra:\n  sweeper:\n    params:\n"
                                    "      hydra.job_logging.handlers.console.class: logging.StreamHandler,"
                                    "pathlib.Path.touch\n", "hydra.mode=MULTIRUN"), check=_inert),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

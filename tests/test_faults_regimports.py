"""Fault catalogue rows for hook names: a plugin whose hook implementation names no hook specification (a
misspelling pluggy would otherwise ignore in silence) is reported by ``alignzoo run`` as broken, with the closest
real hook, and none of its other hooks registers anything. Rows and runner: tests/faultkit.py."""

from __future__ import annotations

import pytest

from alignzoo import hookimpl
from faultkit import Fault, _fresh_plugins, _Named, data, golden, run_fault  # noqa: F401


class _MisspelledHook:
    @hookimpl
    def alignzoo_register_algo(self, register):  # the hook is alignzoo_register_algos
        register("typo_algo", lambda cfg, ctx: ctx.policy, _Named(name="typo_algo"))

    @hookimpl
    def alignzoo_register_evaluators(self, register):  # spelled right: must not register either
        register("typo_eval", lambda cfg, ctx: None, _Named(name="typo_eval"))


SAYS = ("alignzoo: warning: plugin typo (None) is broken and was skipped: unknown hook alignzoo_register_algo "
        "(did you mean alignzoo_register_algos?); rename the function to a hook of alignzoo.hookspecs",)

FAULTS = [
    Fault("regimports-misspelled-hook", "plugins", ["--cfg", "job"], 0, SAYS,
          setup=lambda env: env.plugin("typo", _MisspelledHook())),
    Fault("regimports-misspelled-hook-registers-nothing", "plugins", ["evaluator=[typo_eval]"], 2,
          (*SAYS, "unknown evaluator 'typo_eval'"), setup=lambda env: env.plugin("typo", _MisspelledHook())),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

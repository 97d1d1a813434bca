"""Catalogue rows for the plugin environment variables: a name that no installed plugin has is a warning with the
closest installed name, and the run goes on (``alignzoo plugins`` says the same)."""

from __future__ import annotations

import pytest

from alignzoo import plugins
from faultkit import Env, Fault, _fresh_plugins, data, golden, run_fault  # noqa: F401 (fixtures)


def _env(var: str, value: str):
    def setup(env: Env) -> list[str]:
        env.monkeypatch.setenv(var, value)
        plugins.load(reload=True)
        return ["--cfg", "job"]
    return setup


FAULTS = [
    Fault("plugins-env-unknown-name", "plugins", [], 0,
          ("warning: ALIGNZOO_PLUGINS names 'no_such_plugin', which is not an installed plugin",
           "fix the name or remove it from ALIGNZOO_PLUGINS"),
          setup=_env("ALIGNZOO_PLUGINS", "no_such_plugin")),
    Fault("plugins-env-unknown-disabled-name", "plugins", [], 0,
          ("warning: ALIGNZOO_DISABLE_PLUGINS names 'ktoo', which is not an installed plugin", "did you mean kto?"),
          setup=_env("ALIGNZOO_DISABLE_PLUGINS", "ktoo")),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

"""Plugin loading, registries and the `alignzoo plugins` command."""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from alignzoo import hookimpl, plugins
from alignzoo.errors import DuplicateComponentError, UnknownComponentError
from alignzoo.registry import Registry

BUILTINS = {
    "algo": {"dpo", "ipo", "cdpo", "sft"},
    "task": {"hf_preferences"},
    "model": {"tiny", "hf"},
    "reward": {"vader"},
    "evaluator": {"kl", "length", "distinct", "reward"},
    "logger": {"console", "jsonl", "wandb"},
}


@pytest.fixture(autouse=True)
def _fresh_plugins():
    yield
    plugins.load(reload=True)


@dataclass
class EchoConfig:
    name: str = "echo"


def _echo(cfg, ctx):
    return ctx.policy


def test_builtins_register_through_hooks():
    state = plugins.load(reload=True)
    for kind, names in BUILTINS.items():
        assert names <= set(state.registries[kind].names()), kind
    builtin = state.plugins[0]
    assert builtin.name == "alignzoo" and builtin.builtin and not builtin.broken
    assert set(builtin.components["algo"]) >= {"dpo", "ipo", "cdpo"}


def test_duplicate_name_names_both_providers():
    reg = Registry("algo", store_configs=False)
    reg.register("echo", _echo, EchoConfig, provider="first-pkg")
    with pytest.raises(DuplicateComponentError, match="first-pkg.*second-pkg"):
        reg.register("echo", _echo, EchoConfig, provider="second-pkg")


def test_unknown_name_lists_known_and_suggests_closest():
    reg = Registry("algo", store_configs=False)
    for n in ("dpo", "ipo", "ppo"):
        reg.register(n, _echo, EchoConfig(name=n), provider="x")
    with pytest.raises(UnknownComponentError) as err:
        reg.get("dpx")
    msg = str(err.value)
    assert "Did you mean algo=dpo?" in msg and "dpo, ipo, ppo" in msg


def test_config_without_name_field_is_rejected():
    @dataclass
    class NoName:
        beta: float = 1.0

    with pytest.raises(TypeError, match="name"):
        Registry("algo", store_configs=False).register("x", _echo, NoName)


class GoodPlugin:
    @hookimpl
    def alignzoo_register_algos(self, register):
        register("echo", _echo, EchoConfig)


class RaisingPlugin:
    @hookimpl
    def alignzoo_register_evaluators(self, register):
        register("half_done", _echo, EchoConfig(name="half_done"))
        raise RuntimeError("boom during registration")


def test_plugin_whose_hook_raises_is_reported_and_others_load():
    state = plugins.load(extra_plugins=[("good", GoodPlugin()), ("raising", RaisingPlugin())])
    info = {p.name: p for p in state.plugins}
    assert info["raising"].broken and "boom during registration" in info["raising"].error
    assert "half_done" not in state.registries["evaluator"]  # what it registered before failing is removed
    assert "echo" in state.registries["algo"] and info["good"].components == {"algo": ["echo"]}
    assert "dpo" in state.registries["algo"]


def _fake_dist(root: Path, name: str, module_source: str, version: str = "1.2.3") -> None:
    (root / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = root / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[alignzoo]\n{name} = {name}\n")


def _cli(args, env_extra, cwd):
    env = {**os.environ, **env_extra}
    env.pop("ALIGNZOO_PLUGINS", None) if "ALIGNZOO_PLUGINS" not in env_extra else None
    return subprocess.run([sys.executable, "-m", "alignzoo", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


@pytest.fixture
def plugin_dir(tmp_path):
    _fake_dist(tmp_path, "broken_plugin", "raise ImportError('this plugin is broken on purpose')\n")
    _fake_dist(tmp_path, "echo_plugin", """
        from dataclasses import dataclass
        from alignzoo import hookimpl

        @dataclass
        class EchoConfig:
            name: str = "echo"

        def train(cfg, ctx):
            return ctx.policy

        @hookimpl
        def alignzoo_register_algos(register):
            register("echo", train, EchoConfig)
    """, version="0.4.0")
    return tmp_path


def test_cli_plugins_json_reports_broken_plugin_and_still_succeeds(plugin_dir, tmp_path):
    env = {"PYTHONPATH": str(plugin_dir), "ALIGNZOO_PLUGINS": "broken_plugin,echo_plugin"}
    out = _cli(["plugins", "--json"], env, tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for kind, names in BUILTINS.items():
        assert names <= set(data["components"][kind])
    broken = {p["name"]: p for p in data["broken"]}
    assert "this plugin is broken on purpose" in broken["broken_plugin"]["error"]
    assert broken["broken_plugin"]["version"] == "1.2.3"
    echo = next(p for p in data["plugins"] if p["name"] == "echo_plugin")
    assert echo["version"] == "0.4.0" and echo["components"] == {"algo": ["echo"]}
    assert "echo" in data["components"]["algo"]


def test_env_gating(plugin_dir, tmp_path):
    only_builtins = json.loads(_cli(["plugins", "--json"], {"PYTHONPATH": str(plugin_dir), "ALIGNZOO_PLUGINS": ""},
                                    tmp_path).stdout)
    assert [p["name"] for p in only_builtins["plugins"]] == ["alignzoo"]
    disabled = json.loads(_cli(["plugins", "--json"], {"PYTHONPATH": str(plugin_dir),
                                                       "ALIGNZOO_DISABLE_PLUGINS": "broken_plugin"}, tmp_path).stdout)
    names = [p["name"] for p in disabled["plugins"]]
    assert "broken_plugin" not in names and "echo_plugin" in names


def test_importing_alignzoo_loads_no_plugins():
    code = "import alignzoo, alignzoo.plugins as p, sys; print(p._STATE is None, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "False"]

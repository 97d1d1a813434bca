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
    if "PYTHONPATH" in env_extra:  # in front of the caller's path, which may point at this checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env_extra["PYTHONPATH"], os.environ.get("PYTHONPATH")]))
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


# -- built-ins register next to their code --------------------------------------------------------------------------

def test_builtin_modules_are_the_component_modules_with_hooks_in_package_order():
    found = plugins.builtin_modules()
    assert {"alignzoo.algos.dpo", "alignzoo.algos.ppo", "alignzoo.tasks.sentiment", "alignzoo.critics.rule",
            "alignzoo.loggers.basic"} <= set(found)
    helpers = {"alignzoo.experience", "alignzoo.rewards.losses", "alignzoo.rewards.scalar_model",
               "alignzoo.models.base", "alignzoo.tasks.base"}  # no hooks: never registered, never imported here
    assert not helpers & set(found)
    assert found == sorted(found, key=lambda m: (plugins.BUILTIN_PACKAGES.index(m.rpartition(".")[0]), m))


def test_finding_builtin_modules_imports_none_of_them():
    code = ("import sys, alignzoo.plugins as p; found = p.builtin_modules(); "
            "print(len(found), [m for m in sys.modules if m.startswith(tuple(f'{q}.' for q in p.BUILTIN_PACKAGES))], "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    count, imported, torch_loaded = out.stdout.rsplit(" ", 2)
    assert int(count) >= 20 and imported == "[]" and torch_loaded.strip() == "False", out.stdout + out.stderr


def test_each_builtin_module_registers_its_own_code():
    state = plugins.load(reload=True)
    seen = {}
    for module_name in plugins.builtin_modules():
        plugin = state.manager.get_plugin(module_name)
        assert plugin is not None, f"{module_name} was not registered"
        for caller in state.manager.get_hookcallers(plugin):
            for impl in caller.get_hookimpls():
                if impl.plugin_name == module_name:
                    impl.function(register=lambda name, factory, config, description="", _m=module_name:
                                  seen.setdefault((caller.name, name), (_m, factory.__module__)))
    assert len(seen) == sum(len(names) for names in state.plugins[0].components.values())
    # a module registers its own code; a package (e.g. alignzoo.tasks.sentiment) may register its submodules' code
    elsewhere = {key: where for key, where in seen.items()
                 if where[0] != where[1] and not where[1].startswith(where[0] + ".")}
    assert not elsewhere, f"registered away from their code: {elsewhere}"
    assert {e.provider for kind in state.registries.values() for e in kind.entries()} == {"alignzoo"}


NEW_BUILTIN = '''
"""A built-in added as one new file of alignzoo/algos."""
from dataclasses import dataclass

from alignzoo.hookspecs import hookimpl


@dataclass
class KeepConfig:
    name: str = "keep_policy"


def train(cfg, ctx):
    ctx.log({"train/kept": 1.0}, 1)
    return ctx.policy


@hookimpl
def alignzoo_register_algos(register):
    register("keep_policy", train, KeepConfig, description="keeps the starting policy")
'''


def _add_to_algos(monkeypatch, tmp_path, name, source):
    """A module ``alignzoo.algos.<name>`` in a temporary directory made part of the package (undone afterwards)."""
    import alignzoo.algos

    folder = tmp_path / "more_algos"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.setattr(alignzoo.algos, "__path__", [*alignzoo.algos.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, f"alignzoo.algos.{name}", raising=False)  # and forgotten at the end


def test_a_new_builtin_is_one_new_file(tmp_path, monkeypatch, capsys, preference_dataset):
    from alignzoo.cli import main
    from alignzoo.record import read_record
    from alignzoo.testing import TINY_OVERRIDES

    _add_to_algos(monkeypatch, tmp_path, "keep_policy", NEW_BUILTIN)
    state = plugins.load(reload=True)
    assert "alignzoo.algos.keep_policy" in plugins.builtin_modules()
    assert "keep_policy" in state.plugins[0].components["algo"]
    entry = state.registries["algo"].get("keep_policy")
    assert entry.provider == "alignzoo" and entry.description == "keeps the starting policy"

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    job = tmp_path / "job"
    with pytest.raises(SystemExit) as exit_:
        main(["run", *TINY_OVERRIDES, "task=hf_preferences", f"task.path={preference_dataset}", "algo=keep_policy",
              f"hydra.run.dir={job}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 0, err
    record = read_record(job)
    assert record.status == "ok" and record.algo == "keep_policy" and record.config["algo"] == {"name": "keep_policy"}
    with pytest.raises(SystemExit):
        main(["plugins"])
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == "alignzoo 0.1.0 [built-in]"
    assert listing[1] == ("    algo: a2c, best_of_16, best_of_n, cdpo, cispo, dapo, dpo, dr_grpo, grpo, gspo, ilql, "
                          "ilql_light, ipo, keep_policy, ppo, reinforce_pp, rlaif, rloo, sft")


# -- misspelled hooks (pluggy's check_pending) ----------------------------------------------------------------------

class MisspelledPlugin:
    @hookimpl
    def alignzoo_register_algo(self, register):  # the hook is alignzoo_register_algos
        register("never", _echo, EchoConfig(name="never"))

    @hookimpl
    def alignzoo_register_evaluators(self, register):  # spelled right, but the plugin is broken
        register("half_registered", _echo, EchoConfig(name="half_registered"))


class NoSuchHookPlugin:
    @hookimpl
    def alignzoo_setup(self):
        pass

    @hookimpl
    def alignzoo_register_tsks(self, register):
        pass


def test_misspelled_hook_breaks_the_whole_plugin_and_names_the_closest_hook():
    state = plugins.load(extra_plugins=[("typo", MisspelledPlugin()), ("nosuch", NoSuchHookPlugin()),
                                        ("good", GoodPlugin())])
    info = {p.name: p for p in state.plugins}
    assert info["typo"].error == ("unknown hook alignzoo_register_algo (did you mean alignzoo_register_algos?); "
                                  "rename the function to a hook of alignzoo.hookspecs")
    assert info["typo"].components == {}
    assert "half_registered" not in state.registries["evaluator"] and "never" not in state.registries["algo"]
    assert state.manager.get_plugin("typo") is None  # unregistered: none of its hooks is ever called
    assert info["nosuch"].error == (
        "unknown hooks alignzoo_register_tsks (did you mean alignzoo_register_tasks?), alignzoo_setup (the hooks are "
        "alignzoo_config_searchpath, alignzoo_register_algos, alignzoo_register_critics, alignzoo_register_evaluators, "
        "alignzoo_register_labelers, alignzoo_register_loggers, alignzoo_register_models, alignzoo_register_rewards, alignzoo_register_tasks, "
        "alignzoo_run_end); rename the functions to hooks of alignzoo.hookspecs")
    assert not info["good"].broken and "echo" in state.registries["algo"] and not info["alignzoo"].broken


def test_misspelled_hook_in_a_builtin_module_names_the_module(tmp_path, monkeypatch):
    _add_to_algos(monkeypatch, tmp_path, "typo_algo", NEW_BUILTIN.replace("alignzoo_register_algos",
                                                                          "alignzoo_register_algo"))
    builtin = plugins.load(reload=True).plugins[0]
    assert builtin.error == ("alignzoo.algos.typo_algo: unknown hook alignzoo_register_algo (did you mean "
                             "alignzoo_register_algos?); rename the function to a hook of alignzoo.hookspecs")


def test_cli_reports_a_misspelled_entry_point_plugin(tmp_path):
    _fake_dist(tmp_path, "typo_plugin", """
        from dataclasses import dataclass
        from alignzoo import hookimpl

        @dataclass
        class EchoConfig:
            name: str = "typo_echo"

        def train(cfg, ctx):
            return ctx.policy

        @hookimpl
        def alignzoo_register_algo(register):
            register("typo_echo", train, EchoConfig)

        @hookimpl
        def alignzoo_register_loggers(register):
            register("typo_logger", train, EchoConfig(name="typo_logger"))
    """, version="0.2.0")
    env = {"PYTHONPATH": str(tmp_path), "ALIGNZOO_PLUGINS": "typo_plugin"}
    said = "unknown hook alignzoo_register_algo (did you mean alignzoo_register_algos?)"
    text = _cli(["plugins"], env, tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"typo_plugin 0.2.0 [BROKEN]\n    error: {said}" in text.stdout
    data = json.loads(_cli(["plugins", "--json"], env, tmp_path).stdout)
    broken = {p["name"]: p for p in data["broken"]}
    assert said in broken["typo_plugin"]["error"] and broken["typo_plugin"]["components"] == {}
    assert "typo_logger" not in data["components"]["logger"] and "typo_echo" not in data["components"]["algo"]
    run = _cli(["run", "algo=typo_echo"], env, tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert f"alignzoo: warning: plugin typo_plugin (0.2.0) is broken and was skipped: {said}" in run.stderr
    assert "alignzoo: error: unknown algo 'typo_echo'" in run.stderr


def test_unknown_names_in_the_plugin_environment_variables_warn_with_the_closest_name(monkeypatch, capsys):
    from alignzoo.cli import cmd_plugins

    monkeypatch.setenv("ALIGNZOO_PLUGINS", "kto,grpoo")
    monkeypatch.setenv("ALIGNZOO_DISABLE_PLUGINS", "")
    try:
        state = plugins.load(reload=True)
        assert state.warnings == [
            "ALIGNZOO_PLUGINS names 'grpoo', which is not an installed plugin (did you mean grpo? installed: grpo, "
            "kto); fix the name or remove it from ALIGNZOO_PLUGINS"]
        assert [p.name for p in state.plugins] == ["alignzoo", "kto"]  # the known name still loads
        assert cmd_plugins([]) == 0
        assert "alignzoo: warning: ALIGNZOO_PLUGINS names 'grpoo'" in capsys.readouterr().err
        monkeypatch.setenv("ALIGNZOO_PLUGINS", "kto")
        assert plugins.load(reload=True).warnings == []
    finally:
        monkeypatch.undo()
        plugins.load(reload=True)

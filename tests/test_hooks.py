"""Every hook specification is documented (docstring and docs/plugins.md) and has a test named test_hook_<name>
here (datasette's rule). Each test registers a throwaway plugin that implements just that hook."""

import inspect
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from alignzoo import hookimpl, hookspecs, plugins
from alignzoo.testing import TINY_OVERRIDES, compose_config, run_tiny

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
HOOKS = sorted(n for n, f in inspect.getmembers(hookspecs.AlignzooSpecs, inspect.isfunction) if n.startswith("alignzoo_"))


@pytest.fixture(autouse=True)
def _reset_plugins():
    yield
    plugins.load(reload=True)


def test_every_hook_has_a_docstring_docs_and_a_test():
    tests_here = {n for n in globals() if n.startswith("test_hook_")}
    docs = DOCS.read_text()
    for hook in HOOKS:
        spec = getattr(hookspecs.AlignzooSpecs, hook)
        assert (spec.__doc__ or "").strip(), f"hook {hook} has no docstring"
        assert f"`{hook}" in docs, f"hook {hook} is not documented in docs/plugins.md"
        assert f"test_hook_{hook}" in tests_here, f"hook {hook} has no test_hook_{hook} in tests/test_hooks.py"


def _load(obj):
    return plugins.load(extra_plugins=[("probe", obj)])


@dataclass
class ProbeConfig:
    name: str = "probe"


def test_hook_alignzoo_register_algos(tmp_path, preference_dataset):
    class P:
        @hookimpl
        def alignzoo_register_algos(self, register):
            register("probe", lambda cfg, ctx: ctx.policy, ProbeConfig)

    _load(P())
    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}", "algo=probe"], tmp_path)
    assert rec.status == "ok" and rec.algo == "probe"


def test_hook_alignzoo_register_tasks(tmp_path, preference_dataset):
    from alignzoo.tasks.hf_preferences import HFPreferencesConfig, HFPreferencesTask

    @dataclass
    class MyTaskConfig(HFPreferencesConfig):
        name: str = "my_prefs"

    class P:
        @hookimpl
        def alignzoo_register_tasks(self, register):
            register("my_prefs", lambda cfg, ctx: HFPreferencesTask(cfg, ctx.seed), MyTaskConfig)

    _load(P())
    rec = run_tiny(["task=my_prefs", f"task.path={preference_dataset}"], tmp_path)
    assert rec.status == "ok" and rec.task == "my_prefs"


def test_hook_alignzoo_register_models(tmp_path, preference_dataset):
    from alignzoo.models.tiny import TinyModelConfig, build_tiny

    @dataclass
    class Wide(TinyModelConfig):
        name: str = "wide_tiny"

    class P:
        @hookimpl
        def alignzoo_register_models(self, register):
            register("wide_tiny", build_tiny, Wide)

    _load(P())
    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}", "model=wide_tiny", "model.n_embd=48",
                    "model.n_layer=1", "model.vocab_size=300"], tmp_path, tiny=False)
    assert rec.status == "ok" and rec.config["model"]["n_embd"] == 48


def test_hook_alignzoo_register_rewards(tmp_path, preference_dataset):
    class Const:
        def __init__(self, cfg, ctx):
            pass

        def score(self, prompts, completions, ended=None):
            return torch.full((len(completions),), 0.25)

    class P:
        @hookimpl
        def alignzoo_register_rewards(self, register):
            register("const", Const, ProbeConfig(name="const"))

    _load(P())
    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}", "reward=const"], tmp_path)
    assert rec.status == "ok" and rec.metrics["eval/proxy_reward"] == 0.25


def test_hook_alignzoo_register_critics():
    class P:
        @hookimpl
        def alignzoo_register_critics(self, register):
            register("probe_critic", lambda cfg, ctx: object(), ProbeConfig(name="probe_critic"))

    state = _load(P())
    assert "probe_critic" in state.registries["critic"]
    assert compose_config(["critic=probe_critic"]).critic.name == "probe_critic"


def test_hook_alignzoo_register_evaluators(tmp_path, preference_dataset):
    class CountWords:
        def __init__(self, cfg, ctx):
            pass

        def evaluate(self, samples):
            return {"words": float(sum(len(c.split()) for c in samples.completions))}

    class P:
        @hookimpl
        def alignzoo_register_evaluators(self, register):
            register("count_words", CountWords, ProbeConfig(name="count_words"))

    _load(P())
    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}", "evaluator=[count_words]"], tmp_path)
    assert rec.status == "ok" and "eval/words" in rec.metrics


def test_hook_alignzoo_register_labelers(tmp_path, preference_dataset):
    import datasets

    class Swap:  # a labeler that disagrees with every pair of the dataset
        name = "swap"

        def __init__(self, cfg, ctx):
            pass

        def feedback(self, pipe, policy):
            pairs = pipe.task.preference_data(policy)

            def build(out):
                rows = {"prompt": pairs["prompt"], "chosen": pairs["rejected"], "rejected": pairs["chosen"]}
                rows.update(completions=[[c, r] for c, r in zip(rows["chosen"], rows["rejected"])],
                            ended=[[True, True]] * len(pairs), ranking=[[0, 1]] * len(pairs))
                datasets.Dataset.from_dict(rows).save_to_disk(str(out / "data"))
                return {"pairs": len(pairs)}

            return pipe.stage("feedback_swap", {"n": len(pairs), **pipe.data_key}, build)

    class P:
        @hookimpl
        def alignzoo_register_labelers(self, register):
            register("swap", Swap, ProbeConfig(name="swap"))

    _load(P())
    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}", "labeler=swap", "algo=dpo",
                    f"run.cache_dir={tmp_path / 'cache'}"], tmp_path / "job")
    assert rec.status == "ok", rec.error
    assert any(n.startswith("stage feedback_swap: built") for n in rec.notes), rec.notes
    saved = datasets.load_from_disk(str(next((tmp_path / "cache" / "feedback_swap").glob("*/data"))))
    original = datasets.load_from_disk(str(preference_dataset))
    assert len(saved) == 108 and set(saved["chosen"]) <= set(original["rejected"])  # 120 pairs, 10% held out


def test_hook_alignzoo_register_loggers(tmp_path, preference_dataset):
    seen = []

    class Collect:
        def __init__(self, cfg, ctx):
            pass

        def log(self, metrics, step):
            seen.append(step)

        def finish(self, record):
            seen.append(record.status)

    class P:
        @hookimpl
        def alignzoo_register_loggers(self, register):
            register("collect", Collect, ProbeConfig(name="collect"))

    _load(P())
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("logger=")]
    rec = run_tiny([*overrides, "task=hf_preferences", f"task.path={preference_dataset}", "logger=[collect]"],
                   tmp_path, tiny=False)
    assert rec.status == "ok" and seen[0] == 0 and seen[-1] == "ok" and 4 in seen


def test_hook_alignzoo_config_searchpath(tmp_path):
    pkg = tmp_path / "probe_presets"
    (pkg / "conf" / "algo").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "conf" / "__init__.py").write_text("")
    (pkg / "conf" / "algo" / "dpo_gentle.yaml").write_text("defaults:\n  - dpo\n  - _self_\nbeta: 0.5\n")
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        class P:
            @hookimpl
            def alignzoo_config_searchpath(self):
                return ["pkg://probe_presets.conf"]

        _load(P())
        cfg = compose_config(["algo=dpo_gentle"])
        assert cfg.algo.name == "dpo" and cfg.algo.beta == 0.5
    finally:
        sys.path.remove(str(tmp_path))


def test_hook_alignzoo_run_end(tmp_path, preference_dataset):
    ended = []

    class P:
        @hookimpl
        def alignzoo_run_end(self, record):
            ended.append((record.status, (Path(record.job_dir) / "record.json").exists()))
            raise RuntimeError("a failing run_end hook never fails the job")

    _load(P())
    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}"], tmp_path)
    assert rec.status == "ok" and ended == [("ok", True)]


def test_builtin_modules_implement_only_specified_hooks():
    """Every hook implementation in a built-in module names a specification: none was unregistered by
    ``check_pending`` (which would break every built-in), and each module implements at least one hook."""
    state = plugins.load(reload=True)
    assert not state.plugins[0].broken, state.plugins[0].error
    for module_name in plugins.builtin_modules():
        plugin = state.manager.get_plugin(module_name)
        assert plugin is not None, f"{module_name} was not registered"
        implemented = [c.name for c in state.manager.get_hookcallers(plugin)]
        assert implemented and set(implemented) <= set(HOOKS), (module_name, implemented)

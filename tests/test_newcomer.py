"""A newcomer's front door: throughput in every record, reference-free algorithms, the public collate helper,
component provenance, the public-import check, learning rates on pretrained models, and the README's "First five
minutes" block that CI runs verbatim (.ci/first-five-minutes)."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import alignzoo
from alignzoo import hookimpl, plugins
from alignzoo.algos.dpo import DPOConfig
from alignzoo.models.hf import HFModelConfig
from alignzoo.models.pretrained import pretrained_lr
from alignzoo.models.tiny import TinyModelConfig
from alignzoo.ops import collate_completions
from alignzoo.testing import (TINY_OVERRIDES, build_context, check_public_imports, make_preference_dataset,
                              private_imports, run_tiny)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    return make_preference_dataset(tmp_path_factory.mktemp("prefs") / "data", 64)


def _task(prefs: Path, cache: Path) -> list[str]:
    return ["task=hf_preferences", f"task.path={prefs}", f"run.cache_dir={cache}"]


# -- seconds per step and tokens per second ------------------------------------------------------------------------

def test_a_tiny_run_records_finite_positive_throughput(tmp_path, prefs, stage_cache):
    record = run_tiny(_task(prefs, stage_cache), tmp_path)
    assert record.status == "ok", record.error
    on_disk = json.loads((tmp_path / "record.json").read_text())
    perf = on_disk["perf"]
    assert perf["steps"] == 4 and perf["tokens"] > 0
    for key in ("s_per_step", "tokens_per_s", "train_s"):
        assert math.isfinite(perf[key]) and perf[key] > 0, (key, perf)
    assert perf["tokens_per_s"] == pytest.approx(perf["tokens"] / perf["train_s"], rel=1e-3)
    assert not any(k.startswith("perf/") for k in on_disk["metrics"])  # metrics stay bit-for-bit reproducible
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "train/loss" in line]
    assert [line["step"] for line in steps] == [1, 2, 3, 4]
    assert all(line["perf/s_per_step"] > 0 and line["perf/tokens_per_s"] > 0 for line in steps)


def test_an_algorithm_without_optimizer_steps_says_so(tmp_path, prefs, stage_cache):
    record = run_tiny([*_task(prefs, stage_cache), "algo=sft"], tmp_path)
    assert record.status == "ok", record.error
    assert record.perf["steps"] == 0 and record.perf["s_per_step"] is None and record.perf["tokens_per_s"] is None


# -- needs_reference = False ---------------------------------------------------------------------------------------

@dataclass
class NoRefConfig:
    needs_reference = False
    name: str = "noref"
    lr: float = 1e-3


class NoRefPlugin:
    seen: dict = {}

    @hookimpl
    def alignzoo_register_algos(self, register):
        def train(cfg, ctx):
            NoRefPlugin.seen["reference"] = ctx.reference
            return ctx.policy

        register("noref", train, NoRefConfig)


@pytest.fixture
def noref_plugin():
    plugins.load(reload=True, extra_plugins=[("noref", NoRefPlugin())])
    yield
    plugins.load(reload=True)


def _parameter_bytes(*policies) -> int:
    """Bytes of the distinct tensors behind the policies' parameters (a view of the same weights counts once)."""
    seen = {}
    for p in policies:
        if p is not None:
            for t in p.model.parameters():
                seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def test_needs_reference_false_builds_no_reference_and_saves_its_memory(tmp_path, prefs, stage_cache, noref_plugin):
    with_ref = build_context([*TINY_OVERRIDES, *_task(prefs, stage_cache), "algo=dpo"], tmp_path / "a")
    without = build_context([*TINY_OVERRIDES, *_task(prefs, stage_cache), "algo=noref"], tmp_path / "b")
    assert with_ref.reference is not None and without.reference is None
    one = _parameter_bytes(without.policy)
    assert _parameter_bytes(with_ref.policy, with_ref.reference) == 2 * one  # the frozen copy is not built
    assert _parameter_bytes(without.policy, without.reference) == one
    assert "kl" not in without.evaluators and "win_rate" not in without.evaluators  # they compare with the reference
    assert "kl" in with_ref.evaluators and "length" in without.evaluators
    assert any("evaluator kl skipped" in n and "needs_reference = False" in n for n in without.record.notes)


def test_needs_reference_false_runs_end_to_end(tmp_path, prefs, stage_cache, noref_plugin):
    record = run_tiny([*_task(prefs, stage_cache), "algo=noref"], tmp_path)
    assert record.status == "ok", record.error
    assert NoRefPlugin.seen["reference"] is None
    assert "eval/length" in record.metrics and "eval/kl" not in record.metrics


# -- the public collate helper -------------------------------------------------------------------------------------

def test_collate_completions_pads_right_and_shifts_the_mask_to_the_labels():
    batch = collate_completions([[5, 6], [7]], [[8, 9, 2], [3, 2]], pad_id=1)
    assert batch.ids.tolist() == [[5, 6, 8, 9, 2], [7, 3, 2, 1, 1]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    # label t is ids[:, t + 1]: row 0's labels 6 8 9 2 -> completion from 8; row 1's 3 2 1 1 -> 3 and 2 only
    assert batch.label_mask.tolist() == [[0, 1, 1, 1], [1, 1, 0, 0]]
    ids, attn, labels = collate_completions([[4]], [[2]], pad_id=0, max_len=1)  # a plain tuple too; cut to 1
    assert ids.tolist() == [[4]] and labels.shape == (1, 0)


def test_the_kto_plugin_uses_the_public_collate():
    import alignzoo_kto

    assert alignzoo_kto.collate_completions is collate_completions
    assert not hasattr(alignzoo_kto, "_collate")


# -- provenance ----------------------------------------------------------------------------------------------------

def test_records_name_the_package_and_version_of_every_component(tmp_path, prefs, stage_cache):
    record = run_tiny(_task(prefs, stage_cache), tmp_path)
    components = json.loads((tmp_path / "record.json").read_text())["components"]
    built_in = {"package": "alignzoo", "version": alignzoo.__version__}
    assert components["algo"] == {"name": "dpo", **built_in}
    assert components["task"] == {"name": "hf_preferences", **built_in}
    assert components["model"] == {"name": "tiny", **built_in}
    assert components["logger/jsonl"] == {"name": "jsonl", **built_in}
    assert {k for k in components if k.startswith("evaluator/")} == {f"evaluator/{k}" for k in
                                                                      record.config["evaluator"]}


def test_a_plugin_component_names_its_distribution(tmp_path, prefs, stage_cache, monkeypatch):
    pytest.importorskip("alignzoo_kto")
    import importlib.metadata as md

    if not any(ep.name == "kto" for ep in md.entry_points(group="alignzoo")):
        pytest.skip("alignzoo-kto is not installed as a distribution here")
    monkeypatch.setenv("ALIGNZOO_PLUGINS", "kto")
    plugins.load(reload=True)
    try:
        record = run_tiny([*_task(prefs, stage_cache), "algo=kto", "train.steps=1"], tmp_path)
    finally:
        monkeypatch.setenv("ALIGNZOO_PLUGINS", "")
        plugins.load(reload=True)
    assert record.status == "ok", record.error
    assert record.components["algo"] == {"name": "kto", "package": "alignzoo-kto", "version": "0.1.0"}
    assert record.components["model"]["package"] == "alignzoo"


# -- the public-import check ---------------------------------------------------------------------------------------

def test_check_public_imports_names_each_private_use(tmp_path):
    (tmp_path / "good.py").write_text("from alignzoo.context import RunContext\nfrom alignzoo import rollout as ro\n"
                                      "ro.sample\n")
    assert check_public_imports(tmp_path) == [tmp_path / "good.py"]
    (tmp_path / "bad.py").write_text("from alignzoo import rollout as ro\nimport alignzoo.run\nro._left_pad\n")
    with pytest.raises(AssertionError) as caught:
        check_public_imports(tmp_path)
    assert "bad.py: import alignzoo.run" in str(caught.value) and "bad.py: ro._left_pad" in str(caught.value)
    assert private_imports(tmp_path / "good.py") == []


def test_the_docs_public_api_list_is_the_checkers_list():
    from alignzoo.testing import PUBLIC_MODULES

    section = (ROOT / "docs" / "plugins.md").read_text().split("## 4. Public API", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(alignzoo(?:\.[a-z_]+)*)`", section)) - {"alignzoo.testing.PUBLIC_MODULES"}
    assert named == set(PUBLIC_MODULES), named ^ set(PUBLIC_MODULES)
    assert "`RunContext`" in section and "`save_if_due(ctx, state, step)`" in section


# -- learning rates on pretrained models ---------------------------------------------------------------------------

def test_a_pretrained_model_at_a_from_scratch_default_lr_warns():
    built = {"algo": DPOConfig(), "model": HFModelConfig(path="/m")}
    (message,) = pretrained_lr(built, [], {})
    assert message.startswith("warning: algo.lr=0.0005 is algo=dpo's default for tiny models")
    assert "Set algo.lr=1e-5" in message and built["algo"].lr == 5e-4
    assert pretrained_lr(built, ["algo.lr=5e-4"], {}) == []  # chosen on the command line: the user's call
    assert pretrained_lr({"algo": DPOConfig(), "model": TinyModelConfig()}, [], {}) == []


def test_a_model_lr_replaces_the_default_unless_the_command_line_sets_one():
    from alignzoo.models.smollm2 import SmolLM2Config

    config = {"algo": {"name": "dpo", "lr": 5e-4}}
    built = {"algo": DPOConfig(), "model": SmolLM2Config(name="smollm2_lora", algo_lr=1e-4)}
    (message,) = pretrained_lr(built, ["algo=dpo"], config)
    assert built["algo"].lr == 1e-4 and config["algo"]["lr"] == 1e-4
    assert message.startswith("algo.lr=0.0001: model=smollm2_lora's rate for a pretrained model")
    typed = {"algo": DPOConfig(), "model": SmolLM2Config()}
    assert pretrained_lr(typed, ["algo.lr=5e-4"], {}) == [] and typed["algo"].lr == 5e-4


# -- the README's first five minutes -------------------------------------------------------------------------------

def first_five_minutes() -> list[str]:
    from importlib.machinery import SourceFileLoader

    ci = SourceFileLoader("first_five_minutes", str(ROOT / ".ci" / "first_five_minutes.py")).load_module()
    return ci.commands((ROOT / "README.md").read_text())


def test_the_readme_block_exists_and_parses_as_bash():
    commands = first_five_minutes()
    assert commands[:2] == ["make venv", "source .venv/bin/activate"]
    words = [shlex.split(c, comments=True) for c in commands]
    assert [w[:2] for w in words if w[0] == "alignzoo"][:2] == [["alignzoo", "run"], ["alignzoo", "plugins"]]
    assert any(w[:3] == ["alignzoo", "board", "build"] for w in words)
    assert any("model=smollm2_lora" in w for w in words)
    script = "\n".join(commands)
    assert subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True).returncode == 0
    readme = (ROOT / "README.md").read_text()
    assert "budget=smoke" in readme.split("## First five minutes", 1)[1][:2500]  # the default budget, stated


def test_every_alignzoo_command_in_the_block_is_a_command_and_every_run_composes():
    from alignzoo.cli import COMMANDS
    from alignzoo.testing import compose_config

    for command in first_five_minutes():
        words = shlex.split(command, comments=True)
        if words[0] != "alignzoo":
            continue
        assert words[1] in COMMANDS, command
        if words[1] == "run":
            overrides = [w for w in words[2:] if not w.startswith("-") and not w.startswith("hydra.")]
            overrides = [re.sub(r"=([^,]+),.*", r"=\1", o) for o in overrides]  # a sweep's first job
            cfg = compose_config(overrides)
            assert cfg.budget.name == "smoke", command


def test_config_path_works_from_any_directory(tmp_path, monkeypatch, capsys):
    from alignzoo.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        main(["config", "path", "accelerate/ddp.yaml"])
    assert done.value.code == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.is_absolute() and path.is_file() and path.name == "ddp.yaml"


def test_the_ci_step_runs_after_make_test():
    run = (ROOT / ".ci" / "run").read_text()
    assert run.index("make test") < run.index(".ci/first-five-minutes")
    for substitute in __import__("json").loads((ROOT / ".ci" / "first-five-minutes.json").read_text()).values():
        assert substitute  # each replaced README line is replaced by something
    replaced = json.loads((ROOT / ".ci" / "first-five-minutes.json").read_text())
    assert set(replaced) <= set(first_five_minutes()), "a CI substitute names a line the README no longer has"

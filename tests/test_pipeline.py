"""The pipeline as its own part (alignzoo/pipeline): the run drives pretrain -> SFT -> feedback -> reward model ->
optimizer for any task that supplies data; labelers are a registry kind; budget presets size the stages; the
public run context (alignzoo/context.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import torch
import yaml

from alignzoo import hookimpl, plugins
from alignzoo.testing import run_tiny

CONF = Path(__file__).resolve().parent.parent / "alignzoo" / "conf"
#: small stages: a tiny model learns the toy language in seconds
FAST_STAGES = ["pipeline.pretrain_steps=40", "pipeline.sft_steps=10", "pipeline.feedback_prompts=32"]


# -- a task written as data only: prompts, corpus, demonstrations, a gold function; no stage code -------------------

SUBJECTS = ["the cat", "the dog", "the tea", "the room", "the song", "the book", "the park", "the film"]
GOOD, BAD = ["good", "nice", "bright", "warm", "fun"], ["bad", "dull", "grim", "cold", "weak"]


class ToyGold:
    """+1 per good word, -1 per bad word, -0.5 for a completion that never ends."""

    def score(self, prompts, completions, ended):
        words = [c.split() for c in completions]
        return torch.tensor([sum((w in GOOD) - (w in BAD) for w in ws) - 0.5 * (not bool(e))
                             for ws, e in zip(words, ended)], dtype=torch.float32)


@dataclass
class ToyConfig:
    name: str = "toy"


class ToyTask:
    def __init__(self, cfg: ToyConfig, ctx):
        rng = random.Random(0)
        self.name = cfg.name
        self.sentences = [f"{rng.choice(SUBJECTS)} is {rng.choice(GOOD + BAD)} and {rng.choice(GOOD + BAD)} ."
                          for _ in range(800)]
        self.gold = ToyGold()

    def corpus(self):
        return {"train": self.sentences[:700], "val": self.sentences[700:]}

    def demonstrations(self):
        cut = [s.split(" is ", 1) for s in self.sentences[:200]]
        return [f"{a} is" for a, _ in cut], [f" {b}" for _, b in cut]

    def feedback_prompts(self):
        return [f"{s} is" for s in SUBJECTS] * 4

    def train_prompts(self, policy):
        return [f"{s} is" for s in SUBJECTS] * 2

    def eval_prompts(self, policy, n):
        return [f"{s} is" for s in SUBJECTS][:n]


class ToyPlugin:
    @hookimpl
    def alignzoo_register_tasks(self, register):
        register("toy", ToyTask, ToyConfig, description="a data-only test task")


@pytest.fixture
def toy_task():
    plugins.load(extra_plugins=[("toy_task", ToyPlugin())])
    yield
    plugins.load(reload=True)


@pytest.fixture(scope="module")
def toy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("toy-cache")


def _stages(record) -> set[str]:
    """The stages a record's notes say were built or reused."""
    return {n.split(":")[0].removeprefix("stage ") for n in record.notes if n.startswith("stage ")}


@pytest.mark.parametrize("algo, feedback", [("ppo", "feedback"), ("dpo", "feedback"), ("rlaif", "feedback_ai")])
def test_a_data_only_task_runs_every_stage(toy_task, toy_cache, tmp_path, algo, feedback):
    rec = run_tiny(["task=toy", f"algo={algo}", f"run.cache_dir={toy_cache}", "evaluator=[gold_reward,kl]",
                    *FAST_STAGES], tmp_path)
    assert rec.status == "ok", rec.error
    expected = {"pretrain", "sft", feedback} | ({"reward_model"} if algo == "ppo" else set())
    assert expected <= _stages(rec), rec.notes
    assert any(n.startswith("base model: held-out perplexity") for n in rec.notes)
    assert rec.history[0]["step"] == 0 and rec.history[-1]["step"] == 4 and "eval/gold_reward" in rec.metrics


# -- hf_preferences on the pipeline ---------------------------------------------------------------------------------

def test_hf_preferences_pretrains_and_fine_tunes_a_random_model_and_sft_is_a_real_row(preference_dataset, tmp_path):
    cache = tmp_path / "cache"
    common = ["task=hf_preferences", f"task.path={preference_dataset}", f"run.cache_dir={cache}",
              "evaluator=[length]", "eval.num_prompts=12"]
    sft = run_tiny([*common, "algo=sft"], tmp_path / "sft")
    assert sft.status == "ok", sft.error
    assert {"pretrain", "sft"} <= _stages(sft)
    untrained = run_tiny([*common, "algo=sft", "task.pretrain=false"], tmp_path / "untrained")
    assert untrained.status == "ok", untrained.error
    assert not {"pretrain", "sft"} & _stages(untrained)
    assert any("model=tiny starts from random weights and no stage trains it: task=hf_preferences gives no corpus"
               in n for n in untrained.notes), untrained.notes
    # random weights never end a completion in 8 tokens; after pretraining and SFT a third already do
    assert untrained.metrics["eval/truncated_share"] == 1.0 and untrained.metrics["eval/eos_share"] == 0.0
    assert sft.metrics["eval/eos_share"] > 0.25
    dpo = run_tiny([*common, "algo=dpo"], tmp_path / "dpo")
    assert dpo.status == "ok" and {"pretrain", "sft"} <= _stages(dpo)
    assert any(n.startswith("stage pretrain: reused") for n in dpo.notes)  # cached like the sentiment task's


def test_hf_preferences_pairs_are_relabelled_by_the_rule_critic(preference_dataset, tmp_path):
    import datasets

    rec = run_tiny(["task=hf_preferences", f"task.path={preference_dataset}", f"run.cache_dir={tmp_path / 'c'}",
                    "labeler=critic", "critic=rule", "algo=dpo", "evaluator=[length]"], tmp_path / "job")
    assert rec.status == "ok", rec.error
    assert "feedback_ai" in _stages(rec)
    assert any(n.startswith("labeler=critic relabelled task=hf_preferences's 108 pairs") for n in rec.notes)
    assert any("no gold reward to measure the AI labels against" in n for n in rec.notes)
    saved = datasets.load_from_disk(str(next((tmp_path / "c" / "feedback_ai").glob("*/data"))))
    assert len(saved) == 108 and "gold" not in saved.column_names
    # the rule critic (VADER, fluency, harmlessness) agrees with the dataset: positive responses are chosen
    assert set(saved["chosen"]) <= set(datasets.load_from_disk(str(preference_dataset))["chosen"])


# -- labelers, budgets, the run context -----------------------------------------------------------------------------

def test_labelers_are_a_registry_kind_checked_with_did_you_mean():
    from alignzoo.cli import check_component_overrides

    regs = plugins.load().registries
    assert regs["labeler"].names() == ["critic", "dataset", "human", "simulated", "verifier"]
    assert check_component_overrides(["labeler=simulatd"], regs) == [
        "unknown labeler 'simulatd'. Did you mean labeler=simulated? Known labeler names: critic, dataset, human, "
        "simulated, verifier. (`alignzoo plugins` lists every component.)"]


def test_moved_override_keys_name_their_new_place():
    from alignzoo.pipeline.moved import moved_key_problems

    assert moved_key_problems(["algo=dpo", "+task.flip_rate=0.1", "budget.steps=3", "pipeline.sft_steps=5"]) == [
        "task.flip_rate moved to labeler.flip_rate (budget is compute only; the pipeline's stages and labelers have "
        "their own sections): write labeler.flip_rate=0.1"]


def test_dataclass_defaults_are_the_smoke_preset():
    """budget=smoke is the default preset: no dataclass default may disagree with it (single-sourced)."""
    from alignzoo.config import BudgetConfig, PipelineConfig

    presets = {p.stem: yaml.safe_load(p.read_text()) for p in (CONF / "budget").glob("*.yaml")}
    assert set(presets) == {"smoke", "quick", "standard"}
    for cls, section in ((BudgetConfig, "budget"), (PipelineConfig, "pipeline")):
        defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
        assert {k: defaults[k] for k in presets["smoke"][section]} == presets["smoke"][section], section
        for name, preset in presets.items():  # every preset sets the same keys: none falls back to a default
            assert set(preset[section]) == set(presets["smoke"][section]), (name, section)


@pytest.mark.parametrize("preset", ["smoke", "quick", "standard"])
def test_budget_presets_set_compute_and_stage_sizes(preset):
    from alignzoo.testing import compose_config

    cfg = compose_config([f"budget={preset}"])
    raw = yaml.safe_load((CONF / "budget" / f"{preset}.yaml").read_text())
    assert cfg.budget.name == preset and cfg.pipeline.pretrain_steps == raw["pipeline"]["pretrain_steps"]
    assert cfg.model.n_embd == raw["pipeline"]["model_width"] and "pretrain_steps" not in cfg.budget


def test_run_context_keeps_the_critic_and_restores_progress(tmp_path):
    from types import SimpleNamespace

    from alignzoo.context import RunContext
    from alignzoo.record import RunRecord
    from alignzoo.run import RunContext as Reexported

    assert Reexported is RunContext  # plugins import it from alignzoo.run
    ctx = RunContext(cfg=None, job_dir=tmp_path, seed=0, device="cpu", train=None, eval_cfg=None, budget=None,
                     record=RunRecord("r", "running", config={}), registries=None, built={})
    critic = SimpleNamespace(name="rule", principle_mode="all", settings={"temperature": 0.1},
                             constitution=SimpleNamespace(as_dict=lambda: {"name": "sentiment"}))
    ctx.set_critic(critic)
    assert ctx.critic is critic and ctx.record.config["critic"] == {
        "name": "rule", "constitution": {"name": "sentiment"}, "principles": "all", "temperature": 0.1}
    ctx.log({"train/loss": 0.5}, step=3)
    ctx.add_tokens(7)
    saved = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
             for k, v in ctx.progress_state().items()}
    fresh = RunContext(cfg=None, job_dir=tmp_path, seed=0, device="cpu", train=None, eval_cfg=None, budget=None,
                       record=RunRecord("r", "running"), registries=None, built={})
    fresh.restore_progress(saved)
    assert fresh.progress_state() == {"history": [], "train_metrics": {"train/loss": 0.5}, "tokens": 7,
                                      "last_step": 3, "per_prompt": {}}

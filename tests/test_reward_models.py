"""Learned reward models, ensembles, rule rewards and the quality gate (on the smoke-budget sentiment task)."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from alignzoo import hookimpl, plugins
from alignzoo.rewards.learned import EnsembleReward
from alignzoo.testing import run_tiny

SMOKE = ["task=sentiment", "budget=smoke", "logger=[jsonl]", "algo=sft"]


def test_ensemble_mean_and_std_match_the_members():
    class Fixed:
        def __init__(self, values):
            self.values = torch.tensor(values)

        def score(self, prompts, completions, ended=None):
            return self.values

    members = [Fixed([1.0, 0.0]), Fixed([3.0, 0.0]), Fixed([2.0, 3.0])]
    ens = EnsembleReward(members, k=0.5)
    mean, std = ens.mean_and_std(["p", "p"], ["a", "b"])
    stacked = torch.stack([m.values for m in members])
    assert torch.allclose(mean, stacked.mean(0)) and torch.allclose(std, stacked.std(0, unbiased=False))
    assert torch.allclose(ens.score(["p", "p"], ["a", "b"]), mean - 0.5 * std)


@pytest.fixture(scope="module")
def learned_run(smoke_cache, tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    first = run_tiny([*SMOKE, "reward=learned", f"run.cache_dir={smoke_cache}"], root / "a", tiny=False)
    second = run_tiny([*SMOKE, "reward=learned", f"run.cache_dir={smoke_cache}", "seed=1"], root / "b", tiny=False)
    return first, second


def test_learned_reward_is_trained_once_and_reused(learned_run, smoke_cache):
    first, second = learned_run
    assert first.status == second.status == "ok", (first.error, second.error)
    def stage_dir(rec):
        return next(n.split("(")[-1].rstrip(")") for n in rec.notes if n.startswith("stage reward_model:"))

    assert any(n.startswith("stage reward_model: reused from cache") for n in second.notes)
    assert stage_dir(first) == stage_dir(second)  # one model, trained by whichever run came first


def test_learned_reward_quality_is_recorded_and_normalized(learned_run, smoke_cache):
    rec = learned_run[0]
    for key in ("eval/rm_accuracy", "eval/rm_gold_spearman", "eval/proxy_reward", "reward/heldout_accuracy"):
        assert key in rec.metrics, key
    stage = next(n.split("(")[-1].rstrip(")") for n in rec.notes if n.startswith("stage reward_model:"))
    meta = json.loads((Path(stage) / "reward_model.json").read_text())  # this run's model (the cache holds others)
    assert meta["kind"] == "alignzoo-reward-model" and meta["heldout"]["groups"] > 0
    assert meta["heldout"]["groups"] == meta["gate_groups"]  # reported and gated on the gating split
    assert rec.metrics["eval/rm_accuracy"] == rec.metrics["reward/heldout_accuracy"] == meta["heldout"]["accuracy"]
    # normalized under the reference policy's samples: the SFT policy's own samples score about mean 0
    assert abs(rec.history[0]["eval/proxy_reward"]) < 0.5


def test_ensemble_is_more_uncertain_far_from_the_feedback_data(smoke_cache, tmp_path):
    rec = run_tiny([*SMOKE, "reward=ensemble", f"run.cache_dir={smoke_cache}"], tmp_path / "run", tiny=False)
    assert rec.status == "ok", rec.error
    ctx = _context_for(smoke_cache, tmp_path)
    from alignzoo.rewards.learned import EnsembleConfig, build_ensemble

    ens = build_ensemble(EnsembleConfig(), ctx)
    data = ctx.ranking_data()
    prompts = [r["prompt"] for r in data][:64]
    inside = [r["completions"][0] for r in data][:64]
    g = torch.Generator().manual_seed(0)
    vocab = len(ctx.policy.tokenizer)
    noise = [ctx.policy.tokenizer.decode(torch.randint(2, vocab, (12,), generator=g).tolist()) for _ in prompts]
    _, std_in = ens.mean_and_std(prompts, inside, [True] * 64)
    _, std_out = ens.mean_and_std(prompts, noise, [False] * 64)
    assert std_out.mean() > std_in.mean()


def _context_for(cache, tmp_path):
    """A built run context (task, SFT policy) for calling reward factories directly."""
    from alignzoo.testing import build_context

    return build_context([*SMOKE, f"run.cache_dir={cache}"], tmp_path)


def test_kwise_plackett_luce_reward_model_trains_on_rankings(smoke_cache, tmp_path):
    rec = run_tiny([*SMOKE, "reward=learned", "reward.loss=pl", "pipeline.completions_per_prompt=4",
                    f"run.cache_dir={smoke_cache}"], tmp_path, tiny=False)
    assert rec.status == "ok", rec.error
    meta = json.loads(next(p for p in (smoke_cache / "reward_model").glob("*/reward_model.json")
                           if json.loads(p.read_text())["loss"] == "pl").read_text())
    assert meta["k"] == 4 and meta["heldout"]["pairs"] > meta["heldout"]["groups"]


@pytest.mark.parametrize("case", ["missing", "plain_hf_dir", "wrong_kind"])
def test_bad_reward_model_directory_is_one_clear_message(case, tmp_path, smoke_cache):
    path = tmp_path / "rm"
    if case == "plain_hf_dir":
        path.mkdir()
        (path / "config.json").write_text("{}")
    elif case == "wrong_kind":
        path.mkdir()
        (path / "reward_model.json").write_text(json.dumps({"kind": "something-else"}))
    rec = run_tiny([*SMOKE, "reward=learned", f"reward.path={path}", f"run.cache_dir={smoke_cache}"],
                   tmp_path / "run", tiny=False)
    assert rec.status == "failed" and rec.error["user_error"], rec.error
    expected = {"missing": "does not exist", "plain_hf_dir": "not an alignzoo reward model",
                "wrong_kind": "describes a 'something-else'"}[case]
    assert expected in rec.error["message"] and str(path) in rec.error["message"]


def test_weighted_reward_with_unknown_component(tmp_path, smoke_cache):
    rec = run_tiny([*SMOKE, "reward=weighted", "reward.components={vader: 1.0, lenght: 0.5}",
                    f"run.cache_dir={smoke_cache}"], tmp_path, tiny=False)
    assert rec.status == "failed"
    assert "unknown reward 'lenght'" in rec.error["message"] and "Did you mean reward=length?" in rec.error["message"]


def test_weighted_and_length_rewards(tmp_path, smoke_cache):
    from alignzoo.rewards.rule import LengthReward, LengthRewardConfig

    scores = LengthReward(LengthRewardConfig(target=4, width=2.0)).score(["p"] * 2, ["a b c d", "a b"])
    assert scores[0].item() == 1.0 and scores[1].item() == pytest.approx(torch.exp(torch.tensor(-0.5)).item())
    rec = run_tiny([*SMOKE, "reward=weighted", "reward.components={vader: 1.0, length: 0.5}",
                    f"run.cache_dir={smoke_cache}"], tmp_path, tiny=False)
    assert rec.status == "ok", rec.error and "eval/proxy_reward" in rec.metrics


class OnlineProbe:
    @hookimpl
    def alignzoo_register_algos(self, register):
        @dataclass
        class ProbeConfig:
            name: str = "online_probe"
            ONLINE = True  # a class attribute, not a field: marks an online optimizer for the quality gate

        register("online_probe", lambda cfg, ctx: ctx.policy, ProbeConfig)


@pytest.mark.parametrize("skip", [False, True])
def test_quality_gate_stops_online_optimizers_below_the_floor(skip, tmp_path, smoke_cache):
    plugins.load(extra_plugins=[("probe", OnlineProbe())])
    try:
        rec = run_tiny(["task=sentiment", "budget=smoke", "logger=[jsonl]", "algo=online_probe", "reward=learned",
                        "reward.min_accuracy=0.999", f"reward.skip_quality_gate={skip}",
                        f"run.cache_dir={smoke_cache}"], tmp_path, tiny=False)
    finally:
        plugins.load(reload=True)
    if skip:
        assert rec.status == "ok", rec.error
    else:
        assert rec.status == "failed" and "reward.min_accuracy=0.999" in rec.error["message"]
        assert "reward.skip_quality_gate=true" in rec.error["message"]
    assert "reward/heldout_accuracy" in rec.metrics


def test_harmless_reward_scores_offensive_text_low():
    from alignzoo.rewards.rule import HarmlessConfig, HarmlessReward

    scores = HarmlessReward(HarmlessConfig()).score(["p"] * 2, ["You are a stupid idiot and I hate you.",
                                                                "the plot was lovely and the cast was warm"])
    assert scores[0].item() < 0.05 and scores[1].item() > 0.9


def test_minilm_backbone_trains_a_reward_model(tmp_path, smoke_cache):
    rec = run_tiny([*SMOKE, "reward=learned", "reward.backbone=minilm", "reward.epochs=1", "reward.eval_every=5",
                    f"run.cache_dir={smoke_cache}", "evaluator=[rm_accuracy]"], tmp_path, tiny=False)
    assert rec.status == "ok", rec.error
    meta = next(json.loads(p.read_text()) for p in (smoke_cache / "reward_model").glob("*/reward_model.json")
                if json.loads(p.read_text())["backbone"] == "minilm")
    assert meta["eos_id"] is None  # an encoder: no EOS appended, the score is read at [SEP]
    assert 0.0 <= rec.metrics["eval/rm_accuracy"] <= 1.0


def test_reward_model_learns_an_easy_preference(tmp_path, preference_dataset):
    """Chosen completions are positive, rejected negative: a reward model must separate them on held-out pairs."""
    from alignzoo.testing import TINY_OVERRIDES

    rec = run_tiny([*TINY_OVERRIDES, "task=hf_preferences", f"task.path={preference_dataset}", "algo=sft",
                    "reward=learned", "reward.heldout_fraction=0.25", "reward.epochs=4", "reward.batch_size=16",
                    "reward.eval_every=5", f"run.cache_dir={tmp_path}/cache", "evaluator=[rm_accuracy]"],
                   tmp_path / "run", tiny=False)
    assert rec.status == "ok", rec.error
    assert rec.metrics["eval/rm_accuracy"] >= 0.8


def test_hf_directory_backbone(tmp_path, preference_dataset):
    """Any Hugging Face model directory can be the reward model's backbone (here a tiny GPT-2 saved to disk)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo.models.base import Policy
    from alignzoo.models.tokenizer import train_bpe_tokenizer
    from alignzoo.testing import TINY_OVERRIDES

    tok = train_bpe_tokenizer(["the movie was great and fun", "the plot was dull and messy"] * 50, 300)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2))
    Policy(model, tok).save(tmp_path / "backbone")
    rec = run_tiny([*TINY_OVERRIDES, "task=hf_preferences", f"task.path={preference_dataset}", "algo=sft",
                    "reward=learned", "reward.backbone=hf", f"reward.hf_path={tmp_path / 'backbone'}",
                    "reward.epochs=1", f"run.cache_dir={tmp_path}/cache", "evaluator=[rm_accuracy]"],
                   tmp_path / "run", tiny=False)
    assert rec.status == "ok", rec.error
    meta = json.loads(next((tmp_path / "cache" / "reward_model").glob("*/reward_model.json")).read_text())
    assert meta["backbone"] == "hf" and meta["eos_id"] == tok.eos_token_id

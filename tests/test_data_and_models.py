"""hf_preferences with conversational data, model=hf from a local directory, and training-loop basics."""

import datasets
import pytest

from alignzoo.models.base import Policy
from alignzoo.models.tokenizer import train_bpe_tokenizer
from alignzoo.testing import TINY_RUN, run_tiny
from alignzoo.training import SCHEDULES


def _conversational(path):
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for i in range(60):
        rows["prompt"].append([{"role": "user", "content": f"describe film number {i % 12}"}])
        rows["chosen"].append([{"role": "assistant", "content": "it was lovely and moving"}])
        rows["rejected"].append([{"role": "assistant", "content": "it was dull and messy"}])
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def test_conversational_dataset_renders_with_the_chat_template(tmp_path):
    from alignzoo.tasks.hf_preferences import HFPreferencesConfig, HFPreferencesTask

    path = _conversational(tmp_path / "chat")
    task = HFPreferencesTask(HFPreferencesConfig(path=str(path), eval_fraction=0.2), seed=0)
    tok = train_bpe_tokenizer(task.tokenizer_texts(), 300)
    policy = Policy(model=None, tokenizer=tok)
    data = task.preference_data(policy)
    assert data[0]["prompt"].startswith("<|user|>describe film") and data[0]["prompt"].endswith("<|assistant|>")
    assert data[0]["chosen"] == "it was lovely and moving\n" and data[0]["rejected"] == "it was dull and messy\n"
    assert all(p.endswith("<|assistant|>") for p in task.eval_prompts(policy, 5))
    rec = run_tiny([f"task.path={path}", "algo=dpo", "task=hf_preferences"], tmp_path / "run")
    assert rec.status == "ok", rec.error


def test_model_hf_loads_a_local_directory(tmp_path, preference_dataset):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_bpe_tokenizer(["the movie was great and fun"] * 50 + ["the plot was dull"] * 50, 300)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                       resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    Policy(model, tok).save(tmp_path / "model")
    rec = run_tiny([*TINY_RUN, f"task.path={preference_dataset}", "task=hf_preferences", "model=hf",
                    f"model.path={tmp_path / 'model'}"], tmp_path / "run", tiny=False)
    assert rec.status == "ok", rec.error
    assert rec.config["model"]["path"] == str(tmp_path / "model")


def test_model_hf_missing_directory_is_a_config_error(tmp_path):
    rec = run_tiny([*TINY_RUN, "task=hf_preferences", "task.path=/nope", "model=hf",
                    f"model.path={tmp_path}/absent"], tmp_path / "run", tiny=False)
    assert rec.status == "failed" and rec.error["type"] == "ConfigError"
    assert "model.path" in rec.error["message"] and "is not a directory" in rec.error["message"]
    assert "task.path '/nope' does not exist" in rec.error["message"]


def test_gradient_accumulation_matches_one_big_batch(tmp_path, preference_dataset):
    base = [f"task.path={preference_dataset}", "task=hf_preferences", "train.steps=3", "train.batch_size=8",
            "eval.at_start=false"]
    one = run_tiny([*base, "train.grad_accum=1"], tmp_path / "a")
    two = run_tiny([*base, "train.grad_accum=2"], tmp_path / "b")
    assert one.status == two.status == "ok"
    assert one.metrics["train/loss"] == pytest.approx(two.metrics["train/loss"], abs=1e-5)


def test_schedules():
    assert [round(SCHEDULES["constant"](s, 4, 10), 2) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert SCHEDULES["linear"](10, 0, 10) == 0.0 and SCHEDULES["linear"](0, 0, 10) == 1.0
    assert SCHEDULES["cosine"](5, 0, 10) == pytest.approx(0.5)

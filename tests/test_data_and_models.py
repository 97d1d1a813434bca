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


@pytest.mark.parametrize("value, says", [
    (None, "is null"),
    ("", None), ("text", None),
    (7, "is a number (7), not text"), (True, "is a boolean (True)"),
    (b"x", "is bytes"),
    (["a", "b"], "is a list of strings"),
    ([], None),  # no messages: an empty response (skipped), or an empty prompt (refused by row_problems)
    ([{"role": "user", "content": "hi"}], None),
    ([{"role": "user", "content": "hi"}, 3], "message 1 is a number, not a message"),
    ([{"content": "hi"}], "message 0 has no 'role'"),
    ([{"role": "user"}], "message 0 (user) has no 'content'"),
    ([{"role": "user", "content": None}], "message 0 (user) has no 'content'"),  # what arrow fills in
    ([{"role": "user", "content": ["hi"]}], "message 0 (user) has content that is a list, not text"),
    ([{"role": "human", "content": "hi"}], "message 0 has role 'human'"),
    ({"role": "user", "content": "hi"}, "is a single message, not a list of messages"),
    ({"text": "hi"}, "is an object with keys ['text']"),
])
def test_each_kind_of_bad_cell_has_its_own_message(value, says):
    from alignzoo.tasks.hf_preferences import cell_problem

    got = cell_problem(value)
    assert (got is None) if says is None else (says in got[0] and got[1]), got


def test_bad_rows_are_named_by_their_index_in_the_split_before_the_eval_hold_out(tmp_path):
    from alignzoo.errors import DataError
    from alignzoo.tasks.hf_preferences import HFPreferencesConfig, HFPreferencesTask

    rows = {"prompt": ["the film was"] * 60, "chosen": [" great"] * 60, "rejected": [" awful"] * 60}
    rows["chosen"][57] = None
    rows["rejected"][58] = None
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError) as e:
        HFPreferencesTask(HFPreferencesConfig(path=str(tmp_path / "d"), eval_fraction=0.5), seed=0)
    message = str(e.value)
    assert "(split 'train') row 57 (0-based), column 'chosen': is null" in message
    assert "(1 more row(s) have problems)" in message
    # an empty response is not a bad cell: the row is skipped, and counted
    rows["chosen"][57], rows["rejected"][58] = "", "  "
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ok"))
    task = HFPreferencesTask(HFPreferencesConfig(path=str(tmp_path / "ok"), eval_fraction=0.0), seed=0)
    assert len(task.preference_data(Policy(model=None, tokenizer=None))) == 58 and task.skipped_rows == 2


def test_conversational_rows_with_a_system_message_and_empty_responses_pass(tmp_path):
    from alignzoo.tasks.hf_preferences import HFPreferencesConfig, HFPreferencesTask

    path = tmp_path / "chat"
    system = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the film?"}]
    rows = {"prompt": [system] * 6, "chosen": [[{"role": "assistant", "content": "lovely"}]] * 5 + [[]],
            "rejected": [[{"role": "assistant", "content": "dull"}]] * 6}
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    task = HFPreferencesTask(HFPreferencesConfig(path=str(path), eval_fraction=0.0), seed=0)
    tok = train_bpe_tokenizer(task.tokenizer_texts(), 300)
    assert len(task.preference_data(Policy(model=None, tokenizer=tok))) == 5 and task.skipped_rows == 1

"""``task=hf_preferences`` reads every preference format TRL documents, from every kind of local file, and a DPO run
on it reports held-out preference accuracy (alignzoo/tasks/hf_formats.py, alignzoo/evaluators/preference.py).

Bad rows of these formats and the missing chat template are rows of tests/test_faults_hfdata.py."""

from __future__ import annotations

import json
import logging
import math

import datasets
import pytest
import torch

from alignzoo.models.base import Policy
from alignzoo.models.tokenizer import train_bpe_tokenizer
from alignzoo.record import read_record
from alignzoo.tasks import hf_formats as f
from alignzoo.tasks.hf_preferences import HFPreferencesConfig, HFPreferencesTask
from alignzoo.testing import run_tiny

FILMS = ["the film", "the plot", "the music", "the cast", "the ending", "the script"]
GOOD, BAD = ["great and fun", "lovely and moving", "brilliant"], ["awful and dull", "boring and flat", "messy"]


def _hh_row(i: int) -> dict[str, str]:
    """An HH-RLHF row: two turns, the second assistant reply differs."""
    shared = (f"\n\nHuman: hello\n\nAssistant: hi there\n\nHuman: how was {FILMS[i % 6]} number {i}?"
              "\n\nAssistant:")
    return {"chosen": f"{shared} it was {GOOD[i % 3]}.", "rejected": f"{shared} it was {BAD[i % 3]}."}


def _chat_row(i: int) -> dict[str, list]:
    """A TRL conversational implicit-prompt row: whole conversations, the prompt being the shared user turn."""
    user = {"role": "user", "content": f"how was {FILMS[i % 6]} number {i}?"}
    return {"chosen": [user, {"role": "assistant", "content": f"it was {GOOD[i % 3]}"}],
            "rejected": [user, {"role": "assistant", "content": f"it was {BAD[i % 3]}"}]}


def _columns(rows: list[dict]) -> dict[str, list]:
    return {k: [r[k] for r in rows] for k in rows[0]}


# -- the converters, on hand-made rows ------------------------------------------------------------------------------

USER = {"role": "user", "content": "What color is the sky?"}
BLUE, GREEN = {"role": "assistant", "content": "It is blue."}, {"role": "assistant", "content": "It is green."}


@pytest.mark.parametrize("chosen, rejected, fmt, expected", [
    # HH-RLHF: up to and including the last "\n\nAssistant:" both share; the replies keep their leading space
    ("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: The sky?\n\nAssistant: It is blue.",
     "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: The sky?\n\nAssistant: It is green.", "hh_rlhf",
     ("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: The sky?\n\nAssistant:", " It is blue.", " It is green.")),
    # TRL's standard implicit example: the shared prefix, cut at a word
    ("The sky is blue.", "The sky is green.", "implicit_text", ("The sky is", " blue.", " green.")),
    ("I like cats.", "I like cats a lot.", "implicit_text", ("I like", " cats.", " cats a lot.")),
    ("Paris", "Parma", "implicit_text", ("Par", "is", "ma")),  # no whitespace: cut where they differ
    # TRL's conversational implicit example: the shared leading messages
    ([USER, BLUE], [USER, GREEN], "implicit_messages", ([USER], [BLUE], [GREEN])),
    ([{"role": "system", "content": "be brief"}, USER, BLUE], [{"role": "system", "content": "be brief"}, USER, GREEN],
     "implicit_messages", ([{"role": "system", "content": "be brief"}, USER], [BLUE], [GREEN])),
])
def test_the_prompt_is_extracted_from_chosen_and_rejected(chosen, rejected, fmt, expected):
    detected = f.detect_format(None, chosen)
    assert detected.name == fmt
    assert f.extract_prompt(detected, chosen, rejected) == expected


def test_a_prompt_column_is_the_explicit_format_and_empty_responses_give_an_empty_prompt():
    assert f.detect_format("The sky is", " blue.").name == "explicit"
    assert f.detect_format([USER], [BLUE]).name == "explicit"
    assert f.extract_prompt(f.BY_NAME["implicit_text"], "The sky is blue.", "  ") == ("", "The sky is blue.", "  ")
    assert f.extract_prompt(f.BY_NAME["implicit_messages"], [USER, BLUE], []) == ([], [USER, BLUE], [])
    with pytest.raises(f.RowMismatch, match="share no leading text"):
        f.extract_prompt(f.BY_NAME["implicit_text"], "great film", "awful film")


# -- every kind of local file ---------------------------------------------------------------------------------------

def _write(kind: str, root, rows: list[dict]):
    """``rows`` as a local dataset of ``kind``; returns the path task.path takes."""
    if kind == "jsonl":
        (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return root / "d.jsonl"
    if kind == "json":
        (root / "d.json").write_text(json.dumps(rows))
        return root / "d.json"
    if kind == "folder of jsonl files":
        (root / "d").mkdir()
        for part, chunk in enumerate((rows[:8], rows[8:])):
            (root / "d" / f"part{part}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in chunk))
        return root / "d"
    ds = datasets.Dataset.from_dict(_columns(rows))
    if kind == "csv":
        ds.to_csv(str(root / "d.csv"))
        return root / "d.csv"
    if kind == "parquet":
        ds.to_parquet(str(root / "d.parquet"))
        return root / "d.parquet"
    ds.save_to_disk(str(root / "d"))  # save_to_disk
    return root / "d"


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet", "folder of jsonl files", "save_to_disk"])
def test_hh_rlhf_text_loads_from_every_kind_of_local_file(kind, tmp_path):
    path = _write(kind, tmp_path, [_hh_row(i) for i in range(12)])
    task = HFPreferencesTask(HFPreferencesConfig(path=str(path), eval_fraction=0.0), seed=0)
    assert task.formats["train"].name == "hh_rlhf" and len(task.train) == 12
    first = task.train[0]
    assert first["prompt"] == ("\n\nHuman: hello\n\nAssistant: hi there\n\nHuman: how was the film number 0?"
                               "\n\nAssistant:")
    assert (first["chosen"], first["rejected"]) == (" it was great and fun.", " it was awful and dull.")


def test_explicit_text_and_messages_are_read_as_they_are(tmp_path):
    text = {"prompt": ["The sky is"] * 4, "chosen": [" blue."] * 4, "rejected": [" green."] * 4}
    datasets.Dataset.from_dict(text).save_to_disk(str(tmp_path / "text"))
    task = HFPreferencesTask(HFPreferencesConfig(path=str(tmp_path / "text"), eval_fraction=0.0), seed=0)
    assert task.formats["train"].name == "explicit" and task.train[0] == {"prompt": "The sky is", "chosen": " blue.",
                                                                         "rejected": " green."}
    chat = {"question": [[USER]] * 4, "good": [[BLUE]] * 4, "bad": [[GREEN]] * 4}  # renamed columns too
    datasets.Dataset.from_dict(chat).save_to_disk(str(tmp_path / "chat"))
    cfg = HFPreferencesConfig(path=str(tmp_path / "chat"), eval_fraction=0.0, prompt_column="question",
                              chosen_column="good", rejected_column="bad")
    task = HFPreferencesTask(cfg, seed=0)
    assert task.formats["train"].name == "explicit" and task.train[0] == {"prompt": [USER], "chosen": [BLUE],
                                                                         "rejected": [GREEN]}


def test_implicit_conversations_render_with_the_chat_template(tmp_path):
    path = _write("jsonl", tmp_path, [_chat_row(i) for i in range(6)])
    task = HFPreferencesTask(HFPreferencesConfig(path=str(path), eval_fraction=0.0), seed=0)
    assert task.formats["train"].name == "implicit_messages"
    policy = Policy(model=None, tokenizer=train_bpe_tokenizer(task.tokenizer_texts(), 300))
    pair = task.preference_data(policy)[0]
    assert pair == {"prompt": "<|user|>how was the film number 0?\n<|assistant|>", "chosen": "it was great and fun\n",
                    "rejected": "it was awful and dull\n"}


def test_a_test_split_is_the_evaluation_split_unless_eval_split_says_otherwise(tmp_path):
    rows = [_hh_row(i) for i in range(20)]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(_columns(rows[:16])),
                          "test": datasets.Dataset.from_dict(_columns(rows[16:]))}).save_to_disk(str(tmp_path / "d"))
    notes: list[str] = []
    task = HFPreferencesTask(HFPreferencesConfig(path=str(tmp_path / "d")), seed=0, note=notes.append)
    assert task.eval_split == "test" and len(task.train) == 16  # nothing held out of train
    assert [p.split("number ")[1][:2] for p in task.eval_prompts(None, 10)] == ["16", "17", "18", "19"]
    assert notes == [f"task=hf_preferences: {tmp_path / 'd'} read as HH-RLHF text turns (prompt: up to the last "
                     "shared '\\n\\nAssistant:'); training on split 'train' (16 rows), evaluating on split 'test' "
                     "(4 rows)"]
    own = HFPreferencesTask(HFPreferencesConfig(path=str(tmp_path / "d"), eval_split="train"), seed=0)
    assert own.eval_split == "train" and len(own.evals) == 16


# -- DPO runs on TRL-format data: training, held-out preference accuracy --------------------------------------------

def test_hh_rlhf_dataset_dict_trains_dpo_and_reports_held_out_preference_accuracy(tmp_path, stage_cache, caplog):
    rows = [_hh_row(i) for i in range(48)]
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(_columns(rows[:40])),
                          "test": datasets.Dataset.from_dict(_columns(rows[40:]))}).save_to_disk(str(tmp_path / "d"))
    with caplog.at_level(logging.INFO, logger="alignzoo"):
        rec = run_tiny(["task=hf_preferences", f"task.path={tmp_path / 'd'}", "algo=dpo", "train.steps=3",
                        "reward=vader", f"run.cache_dir={stage_cache}", "evaluator=[length,preference_accuracy]"],
                       tmp_path / "job")
    assert rec.status == "ok", rec.error
    assert any("read as HH-RLHF text turns" in n and "evaluating on split 'test' (8 rows)" in n for n in rec.notes)
    warning = ("model=tiny starts from random weights: the pipeline pretrains it on this dataset's own text (80 "
               "prompt+response texts of split 'train')")
    assert any(n.startswith(warning) and "model=hf model.path=" in n for n in rec.notes), rec.notes
    assert warning in caplog.text  # the job log has it too
    # the oracle at step 0: the policy is its reference, so every pair ties (counted half) and the margin is 0
    start = rec.history[0]
    assert start["step"] == 0 and start["eval/pref_pairs"] == 8.0  # the test split's 8 pairs
    assert (start["eval/pref_accuracy"], start["eval/pref_margin"], start["eval/pref_ties"]) == (0.5, 0.0, 1.0)
    # VADER prefers every chosen reply ("great", "lovely", "brilliant") to its rejected one
    assert start["eval/pref_rm_accuracy"] == 1.0
    final = read_record(tmp_path / "job").metrics
    assert math.isfinite(final["eval/pref_accuracy"]) and 0.0 <= final["eval/pref_accuracy"] <= 1.0
    assert math.isfinite(final["eval/pref_margin"]) and final["eval/pref_ties"] < 1.0  # training moved the policy


def test_trl_implicit_conversations_train_dpo(tmp_path, stage_cache):
    path = _write("jsonl", tmp_path, [_chat_row(i) for i in range(40)])
    rec = run_tiny(["task=hf_preferences", f"task.path={path}", "algo=dpo", "train.steps=2", "eval.at_start=false",
                    f"run.cache_dir={stage_cache}", "evaluator=[preference_accuracy]"], tmp_path / "job")
    assert rec.status == "ok", rec.error
    assert any("read as conversations with an implicit prompt" in n and "4 rows held out of split 'train'" in n
               for n in rec.notes), rec.notes
    assert rec.metrics["eval/pref_pairs"] == 4.0 and math.isfinite(rec.metrics["eval/pref_accuracy"])


def test_pairwise_accuracy_counts_ties_half():
    from alignzoo.evaluators.preference import pairwise_accuracy

    assert pairwise_accuracy(torch.tensor([1.0, 0.0, 2.0, 5.0]), torch.tensor([0.0, 0.0, 3.0, 4.0])) == (0.625, 0.25)

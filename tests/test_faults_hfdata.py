"""Fault catalogue rows for the preference formats of ``task=hf_preferences`` (alignzoo/tasks/hf_formats.py).

Rows of implicit-prompt data that share no prompt, HH-RLHF text without its turns, a dataset without chosen /
rejected columns, a missing eval split, and conversational data with a tokenizer that has no chat template (on the
training path and on the step-0 evaluation path). Each re-runs, on the bad data, a job folder that holds a finished
record: exit 2, one ``alignzoo: error:`` line naming the dataset, the split, the row and the fix, no traceback, the
finished record byte-identical (the failed one goes aside) and the data file not rewritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from faultkit import Fault, _failed_record_aside, _fresh_plugins, data, golden, run_fault  # noqa: F401

HH = "\n\nHuman: how was the film?\n\nAssistant:"
_originals: dict[Path, bytes] = {}  # data file -> its bytes before the run


def _finished_record(env: Any) -> None:
    env.job.mkdir(parents=True)
    env.before["record.json"] = (env.golden / "record.json").read_bytes()
    (env.job / "record.json").write_bytes(env.before["record.json"])


def _jsonl(rows: list[dict[str, Any]], name: str = "bad.jsonl") -> Callable[[Any], list[str]]:
    def setup(env: Any) -> list[str]:
        path = env.tmp / name
        content = "".join(json.dumps(r) + "\n" for r in rows).encode()
        path.write_bytes(content)
        _originals[path] = content
        _finished_record(env)
        return [f"task.path={path}"]
    return setup


def _kept(env: Any) -> None:
    _failed_record_aside(env)
    for path, content in _originals.items():
        if path.is_relative_to(env.tmp):
            assert path.read_bytes() == content, f"{path} changed"


def _implicit_text(n: int = 8, at: int = -1, bad: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows = [{"chosen": "the film was great", "rejected": "the film was awful"} for _ in range(n)]
    if bad:
        rows[at] = bad
    return rows


def _hh(n: int = 8, at: int = -1, bad: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rows = [{"chosen": HH + " it was great", "rejected": HH + " it was awful"} for _ in range(n)]
    if bad:
        rows[at] = bad
    return rows


def _conversation(reply: str, user: str = "how was the film?") -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def _chats(n: int = 24) -> list[dict[str, Any]]:
    return [{"chosen": _conversation("it was great"), "rejected": _conversation("it was dull")} for _ in range(n)]


def _no_chat_template(env: Any) -> list[str]:
    """Conversational data and a tokenizer directory whose tokenizer has no chat template."""
    from alignzoo.models.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer(["how was the film? it was great", "it was dull"] * 20, 300)
    tok.chat_template = None
    tok.save_pretrained(str(env.tmp / "tokenizer"))
    return [*_jsonl(_chats(), "chat.jsonl")(env), f"model.tokenizer={env.tmp / 'tokenizer'}"]


def _stopped_in(function: str) -> Callable[[Any], None]:
    """Kept intact, and the failed record's traceback shows which path met the messages first."""
    def check(env: Any) -> None:
        from alignzoo.record import read_record

        _kept(env)
        assert f"in {function}" in read_record(env.job / "record.failed.json").error["traceback"]
    return check


NO_TEMPLATE = ("chat.jsonl' is conversational (chat messages) but the model's tokenizer has no chat template",
               "use a chat model whose tokenizer has one (model=hf model.path=...)", "give the dataset as text")

FAULTS = [
    Fault("hfdata-implicit-text-shares-no-prompt", "data", [], 2,
          ("bad.jsonl' (split 'train') row 5 (0-based): chosen and rejected share no leading text (the prompt)",
           "expected two texts that start with the same prompt, or a prompt column"),
          setup=_jsonl(_implicit_text(at=5, bad={"chosen": "great film", "rejected": "awful film"})), check=_kept),
    Fault("hfdata-implicit-messages-share-no-prompt", "data", [], 2,
          ("(split 'train') row 3 (0-based): chosen and rejected share no leading message (the prompt)",
           "start with the same prompt messages", "(1 more row(s) do not fit either)"),
          setup=_jsonl([*_chats(3), *[{"chosen": _conversation("great", "a?"),
                                       "rejected": _conversation("dull", "b?")}] * 2]), check=_kept),
    Fault("hfdata-hh-turns-not-shared", "data", [], 2,
          ("row 1 (0-based): chosen and rejected share no '\\n\\nAssistant:' turn",
           "expected HH-RLHF text: the same conversation up to a last '\\n\\nAssistant:'"),
          setup=_jsonl(_hh(at=1, bad={"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                                      "rejected": "\n\nHuman: bye\n\nAssistant: hello"})), check=_kept),
    Fault("hfdata-hh-row-without-turns", "data", [], 2,
          ("row 6 (0-based): chosen or rejected lacks the '\\n\\nHuman:' / '\\n\\nAssistant:' turns",
           "expected HH-RLHF text in every row"),
          setup=_jsonl(_hh(at=6, bad={"chosen": "the film was great", "rejected": "the film was awful"})),
          check=_kept),
    Fault("hfdata-no-chosen-column", "data", [], 2,
          ("bad.jsonl' (split 'train') has no column 'chosen'", "its columns are ['prompt', 'answer', 'rejected']",
           "set task.chosen_column"),
          setup=_jsonl([{"prompt": "the film was", "answer": " great", "rejected": " awful"}] * 4), check=_kept),
    Fault("hfdata-eval-split-missing", "data", ["task.eval_split=validation"], 2,
          ("has no split 'validation'; it has ['train']", "set task.eval_split=... or null"),
          setup=_jsonl(_implicit_text()), check=_kept),
    # conversational data without a chat template: the same message on the training path (DPO's pairs come first
    # when there is no step-0 evaluation) and on the step-0 evaluation path (the evaluation prompts)
    Fault("hfdata-no-chat-template-training", "data", ["eval.at_start=false", "train.steps=2"], 2, NO_TEMPLATE,
          setup=_no_chat_template, check=_stopped_in("preference_data")),
    Fault("hfdata-no-chat-template-evaluation", "data", ["train.steps=2"], 2, NO_TEMPLATE,
          setup=_no_chat_template, check=_stopped_in("eval_prompts")),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

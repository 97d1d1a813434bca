"""Fault catalogue rows for bad preference data (``task=hf_preferences``): one clear message per bad cell.

Each row writes a small bad dataset (a .jsonl/.csv file or a saved dataset) and re-runs, on it, a job folder that
holds a finished record; through ``alignzoo run`` (tests/faultkit.py) it checks the exit code 2 and one message
naming the file, the split, the row (0-based, or the file's 1-based line), the column and the fix; that the finished
record is byte-identical (the failed one goes aside); and that the data file was not rewritten. The eval-split row
covers the step-0 evaluation path; the last row checks that empty responses are still skipped with a note.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from faultkit import Fault, _failed_record_aside, _fresh_plugins, _notes_say, data, golden, run_fault  # noqa: F401

GOOD = {"prompt": "the film was", "chosen": " great", "rejected": " awful"}
USER = [{"role": "user", "content": "how was the film?"}]
ASSISTANT = [{"role": "assistant", "content": "it was great"}]
_originals: dict[Path, bytes] = {}  # data file -> its bytes before the run, per row (tmp paths are unique)


def _rows(n: int = 8, at: int = 2, **bad: Any) -> list[dict[str, Any]]:
    """``n`` good text rows, with row ``at`` (0-based) changed by ``bad`` (``None``: a JSON null)."""
    rows = [dict(GOOD) for _ in range(n)]
    if bad:
        rows[at].update(bad)
    return rows


def _write(env: Any, name: str, content: bytes, *, resume: bool = True) -> list[str]:
    path = env.tmp / name
    path.write_bytes(content)
    _originals[path] = content
    if resume:
        _finished_record(env)
    return [f"task.path={path}"]


def _finished_record(env: Any) -> None:
    """The job folder holds the record of a finished run (the bad data is a re-run there): it must stay
    byte-identical, and the failed record goes aside. (Checkpoints would stop the re-run earlier, at the config
    check, which tests/test_faults.py covers.)"""
    env.job.mkdir(parents=True)
    env.before["record.json"] = (env.golden / "record.json").read_bytes()
    (env.job / "record.json").write_bytes(env.before["record.json"])


def _jsonl(rows: list[Any], name: str = "bad.jsonl") -> Callable[[Any], list[str]]:
    return lambda env: _write(env, name, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _raw(content: bytes, name: str) -> Callable[[Any], list[str]]:
    return lambda env: _write(env, name, content)


def _saved(columns: dict[str, list[Any]], name: str = "bad", **splits: dict[str, list[Any]]
           ) -> Callable[[Any], list[str]]:
    """A ``save_to_disk`` dataset (typed columns: ints, bytes), with more splits when given."""
    def setup(env: Any) -> list[str]:
        import datasets

        path = env.tmp / name
        parts = {"train": datasets.Dataset.from_dict(columns),
                 **{k: datasets.Dataset.from_dict(v) for k, v in splits.items()}}
        (datasets.DatasetDict(parts) if splits else parts["train"]).save_to_disk(str(path))
        _finished_record(env)
        return [f"task.path={path}"]
    return setup


def _kept(env: Any) -> None:
    """The finished job is byte-identical (failed record aside) and the data file was not rewritten."""
    _failed_record_aside(env)
    for path, content in _originals.items():
        if path.is_relative_to(env.tmp):
            assert path.read_bytes() == content, f"{path} changed"


def _columns(n: int = 8, **bad: tuple[int, Any]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {k: [v] * n for k, v in GOOD.items()}
    for col, (at, value) in bad.items():
        cols[col] = [value if i == at else cols[col][i] for i in range(n)]
    return cols


def _numbers() -> dict[str, list[Any]]:
    return {"prompt": ["the film was"] * 8, "chosen": [3] * 8, "rejected": [" awful"] * 8}


def _chat(n: int = 8) -> list[dict[str, Any]]:
    return [{"prompt": USER, "chosen": ASSISTANT, "rejected": [{"role": "assistant", "content": "it was dull"}]}
            for _ in range(n)]


def _chat_with(at: int, **bad: Any) -> list[dict[str, Any]]:
    rows = _chat()
    if bad:
        rows[at].update(bad)
    return rows


LATIN1_JSONL = b"".join([json.dumps(GOOD).encode() + b"\n"] * 2
                        + [b'{"prompt": "caf\xe9 was", "chosen": " great", "rejected": " awful"}\n'])
TEXT = "give text (a string) in every row, or chat messages in every row"

FAULTS = [
    Fault("data-null-response", "data", [], 2,
          ("bad.jsonl' (split 'train') row 2 (0-based), column 'chosen': is null", "fill it in or drop the row"),
          setup=_jsonl(_rows(chosen=None)), check=_kept),
    Fault("data-missing-key", "data", [], 2,
          ("bad.jsonl' (split 'train') row 5 (0-based), column 'rejected': is null", "fill it in or drop the row"),
          setup=_jsonl([*_rows(5), {"prompt": "p", "chosen": " c"}, *_rows(2)]), check=_kept),
    Fault("data-empty-prompt", "data", [], 2,
          ("row 4 (0-based), column 'prompt': is empty", "every pair needs a prompt; fill it in or drop the row",
           "(1 more row(s) have problems)"),
          setup=_jsonl([*_rows(4), {**GOOD, "prompt": "  "}, {**GOOD, "prompt": ""}]), check=_kept),
    Fault("data-number-response", "data", [], 2,
          ("(split 'train') row 0 (0-based), column 'chosen': is a number (3), not text", TEXT,
           "(7 more row(s) have problems)"),
          setup=_saved(_numbers()), check=_kept),
    Fault("data-bytes-response", "data", [], 2,
          ("row 0 (0-based), column 'rejected': is bytes, not text", "decode the column to UTF-8 text",
           "(7 more row(s) have problems)"),
          setup=_saved({**_columns(), "rejected": [b" awful"] * 8}), check=_kept),
    Fault("data-list-of-strings", "data", [], 2,
          ("row 2 (0-based), column 'chosen': is a list of strings, not text or chat messages",
           "join them into one text"),
          setup=_jsonl(_rows(chosen=[" great", " fun"])), check=_kept),
    Fault("data-object-not-a-message", "data", [], 2,
          ("row 2 (0-based), column 'rejected': is an object with keys ['text'], not text or chat messages", TEXT),
          setup=_jsonl(_rows(rejected={"text": " awful"})), check=_kept),
    Fault("data-single-message-not-a-list", "data", [], 2,
          ("row 2 (0-based), column 'chosen': is a single message, not a list of messages", "wrap it in a list"),
          setup=_jsonl(_chat_with(2, chosen=ASSISTANT[0])), check=_kept),
    Fault("data-message-without-role", "data", [], 2,
          ("row 3 (0-based), column 'prompt': message 0 has no 'role'",
           "give every message a role (system, user, assistant, tool)"),
          setup=_jsonl(_chat_with(3, prompt=[{"content": "hi"}])), check=_kept),
    Fault("data-message-without-content", "data", [], 2,
          ("row 6 (0-based), column 'chosen': message 1 (assistant) has no 'content'",
           "give every message its text as 'content'"),
          setup=_jsonl(_chat_with(6, chosen=[ASSISTANT[0], {"role": "assistant"}])), check=_kept),
    Fault("data-message-unknown-role", "data", [], 2,
          ("row 0 (0-based), column 'rejected': message 0 has role 'bot'",
           "use one of the roles system, user, assistant, tool"),
          setup=_jsonl(_chat_with(0, rejected=[{"role": "bot", "content": "meh"}])), check=_kept),
    Fault("data-rows-mix-text-and-messages", "data", [], 2,
          ("row 3 (0-based), column 'prompt': is a list of chat messages but row 0 is text",
           "use one format for every prompt, chosen and rejected cell of the dataset"),
          setup=_jsonl([*_rows(3), *_chat(2)]), check=_kept),
    Fault("data-row-mixes-text-and-messages", "data", [], 2,
          ("row 0 (0-based), column 'chosen': is text but column 'prompt' is a list of chat messages",
           "use one format"),
          setup=_jsonl(_chat_with(0, chosen=" great")), check=_kept),
    Fault("data-jsonl-not-utf8", "data", [], 2,
          ("latin.jsonl is not UTF-8 text: line 3 (1-based) has byte 0xe9 at column 16", "save the file as UTF-8",
           "iconv -f latin1 -t utf-8 latin.jsonl"),
          setup=_raw(LATIN1_JSONL, "latin.jsonl"), check=_kept),
    Fault("data-csv-not-utf8", "data", [], 2,
          ("could not load dataset", "latin.csv is not UTF-8 text: line 2 (1-based) has byte 0xe9 at column 4",
           "save the file as UTF-8"),
          setup=_raw(b"prompt,chosen,rejected\ncaf\xe9 was,great,awful\nit was,fine,bad\n", "latin.csv"), check=_kept),
    Fault("data-jsonl-bad-line", "data", [], 2,
          ("could not load dataset", "bad.jsonl: line 3 (1-based) is not valid JSON", "fix or delete that line"),
          setup=_raw(b"".join([json.dumps(GOOD).encode() + b"\n"] * 2 + [b'{"prompt": "x", "chosen": \n']),
                     "bad.jsonl"), check=_kept),
    # the evaluation path: only the eval split is bad; it is checked before step 0 evaluates on it
    Fault("data-bad-eval-split", "data", ["task.eval_split=test"], 2,
          ("(split 'test') row 1 (0-based), column 'prompt': is null", "fill it in or drop the row"),
          setup=_saved(_columns(), test=_columns(4, prompt=(1, None))), check=_kept),
    # unchanged behaviour: rows with an empty response ("" or no messages) are skipped with a note
    Fault("data-empty-message-responses-skipped", "data", ["train.steps=2", "task.eval_fraction=0"], 0, (),
          setup=lambda env: _write(env, "chat.jsonl", "".join(json.dumps(r) + "\n" for r in
                                                              [*_chat(30), *_chat_with(0, chosen=[])[:1] * 4])
                                   .encode(), resume=False),
          check=_notes_say("skipped 4 rows with an empty chosen or rejected response")),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)

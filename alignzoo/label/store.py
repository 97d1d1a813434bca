"""The labeling session on disk: ``items.jsonl`` (what to judge) and ``labels.jsonl`` (the judgments).

``labels.jsonl`` is append-only: one JSON line per judgment, written with a single ``write`` and flushed and
fsynced before the page moves on, so a killed server loses nothing it acknowledged. A torn last line (the process
died mid-write) is detected when the file is read again: the server drops it with a warning (and truncates the
file to its last complete line); readers skip it. Every line holds the whole comparison (prompt, completions,
gold when known) and ``chosen`` / ``rejected`` text, so ``datasets.load_dataset("json", data_files=...)`` and
``task=hf_preferences task.path=<labels.jsonl>`` read it directly (ties and both-bad have empty ``chosen`` and
``rejected``, which carry no preference and are skipped there).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from alignzoo.errors import DataError

log = logging.getLogger("alignzoo")
ITEMS = "items.jsonl"
LABELS = "labels.jsonl"
SESSION = "session.json"
#: what a person can say about one comparison
JUDGMENTS = ("pick", "rank", "tie", "both_bad")
#: judgments that carry no preference between the completions (excluded from pairs, counted in the stats)
NO_PREFERENCE = ("tie", "both_bad")
RATING_SCALE = 5  # ratings are 1..5 per completion; 0: not rated
MAX_DEMONSTRATION = 20000  # characters of an edited / written response
#: the keys of ``source`` (all strings), fixed so that every line has the same schema for ``datasets``
SOURCE_KEYS = ("kind", "path", "policy", "config", "config_hash")


def item_id(prompt: str, completions: list[str]) -> str:
    """A stable id from the comparison's content, so re-reading the same file in another order resumes well."""
    blob = json.dumps([prompt, completions], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def make_source(kind: str, **values: str) -> dict[str, str]:
    """The provenance of the completions (``kind``: policy | file), with every key of ``SOURCE_KEYS``."""
    unknown = set(values) - set(SOURCE_KEYS)
    if unknown:
        raise ValueError(f"unknown source keys {sorted(unknown)}")
    return {"kind": kind, **{k: str(values.get(k, "")) for k in SOURCE_KEYS if k != "kind"}}


# -- reading and writing JSON lines ---------------------------------------------------------------------------
@dataclass
class JsonLines:
    rows: list[dict[str, Any]]
    good_bytes: int  # length of the file up to the end of its last complete, valid line
    torn: Optional[str] = None  # a description of the dropped last line, if any


def read_jsonl(path: Path) -> JsonLines:
    """Rows of a JSON-lines file. A last line without its newline is torn (its write never finished, so it was
    never acknowledged): it is reported in ``torn``, not returned. A bad complete line is an error (the file was
    edited by hand, or is not a labels file)."""
    data = Path(path).read_bytes()
    rows: list[dict[str, Any]] = []
    start, n = 0, 0
    while start < len(data):
        n += 1
        end = data.find(b"\n", start)
        if end == -1:
            return JsonLines(rows, start, f"line {n} ({len(data) - start} bytes) has no end")
        raw = data[start:end]
        start = end + 1
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError as exc:
            raise DataError(f"{path}: line {n} is not valid JSON ({exc}); fix or delete that line") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {n} is not a JSON object; fix or delete that line")
        rows.append(row)
    return JsonLines(rows, start)


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def labels_file(path: str | Path) -> Path:
    """The labels file of a session folder (``DIR/labels.jsonl``), or ``path`` itself when it is a file."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p / LABELS
    return p


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """Every complete judgment in a session folder or labels file (a torn last line is skipped with a warning)."""
    f = labels_file(path)
    if not f.is_file():
        where = f"{path!s} has no {LABELS}" if Path(path).expanduser().is_dir() else f"{path!s} does not exist"
        raise DataError(f"{where}; give the folder written by `alignzoo label --out DIR` (or its {LABELS})")
    got = read_jsonl(f)
    if got.torn:
        log.warning("%s: %s; it is ignored (the judgment was not saved)", f, got.torn)
    for n, row in enumerate(got.rows, start=1):
        missing = [k for k in ("item", "annotator", "judgment", "prompt", "completions", "ranking") if k not in row]
        if missing:
            raise DataError(f"{f}: judgment {n} has no {', '.join(missing)}; is this a file written by "
                            "`alignzoo label`?")
    return got.rows


def latest_judgments(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One judgment per (item, annotator): the last one (two browser tabs may judge the same item twice)."""
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        last.pop((row["item"], row["annotator"]), None)
        last[(row["item"], row["annotator"])] = row
    return list(last.values())


# -- the session ------------------------------------------------------------------------------------------------
@dataclass
class LabelSession:
    """The items of a session folder and its append-only judgment log (thread-safe)."""

    folder: Path
    items: list[dict[str, Any]]
    source: dict[str, str]
    judgments: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def labels_path(self) -> Path:
        return self.folder / LABELS

    @property
    def k(self) -> int:
        return len(self.items[0]["completions"]) if self.items else 2

    def item(self, iid: str) -> Optional[dict[str, Any]]:
        return self._by_id.get(iid)

    def __post_init__(self) -> None:
        self._by_id = {it["id"]: it for it in self.items}

    # -- opening ------------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path, items: Optional[list[dict[str, Any]]] = None,
             source: Optional[dict[str, str]] = None) -> "LabelSession":
        """Open (resume) the session in ``folder``, or create it with ``items`` and ``source``. A torn last line of
        ``labels.jsonl`` is dropped with a warning and the file is truncated to its last complete judgment."""
        folder = Path(folder).expanduser()
        items_path, session_path = folder / ITEMS, folder / SESSION
        if items_path.is_file():
            stored = read_jsonl(items_path).rows
            if items is not None and [i["id"] for i in items] != [i["id"] for i in stored]:
                raise DataError(f"{folder} already holds a labeling session with other comparisons; resume it "
                                "without --from / overrides, or label into a new folder (--out DIR)")
            items = stored
            source = json.loads(session_path.read_text())["source"] if session_path.is_file() else source
        elif items is None:
            raise DataError(f"{folder} holds no labeling session ({ITEMS} is missing); start one with "
                            "`alignzoo label --from FILE` or from a policy (hydra overrides)")
        else:
            if not items:
                raise DataError("no comparisons to label: the source gave zero items")
            folder.mkdir(parents=True, exist_ok=True)
            write_jsonl_atomic(items_path, items)
            tmp = session_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"source": source or {}, "items": len(items), "k": len(items[0]["completions"]),
                                       "created": _now()}, indent=2))
            os.replace(tmp, session_path)
        session = cls(folder, items, dict(source or make_source("file")))
        labels = session.labels_path
        if labels.is_file():
            got = read_jsonl(labels)
            if got.torn:
                log.warning("%s: the last judgment was cut off mid-write (%s); dropping it (it was never "
                            "acknowledged, so the page showed that comparison again)", labels, got.torn)
                with open(labels, "r+b") as f:
                    f.truncate(got.good_bytes)
                    f.flush()
                    os.fsync(f.fileno())
            session.judgments = got.rows
        return session

    # -- state ----------------------------------------------------------------------------------------------
    def judged_by(self, annotator: str) -> set[str]:
        return {j["item"] for j in self.judgments if j["annotator"] == annotator}

    def next_item(self, annotator: str) -> Optional[dict[str, Any]]:
        """The first comparison this annotator has not judged (resume skips the judged ones)."""
        done = self.judged_by(annotator)
        return next((it for it in self.items if it["id"] not in done), None)

    def record(self, annotator: str, iid: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Append one judgment durably (write + flush + fsync) and return the saved row."""
        it = self.item(iid)
        if it is None:
            raise KeyError(iid)
        ranking = fields["ranking"]
        comps = it["completions"]
        row = {"item": iid, "annotator": annotator, "judgment": fields["judgment"], "ranking": ranking,
               "prompt": it["prompt"], "completions": comps,
               "chosen": comps[ranking[0]] if ranking else "", "rejected": comps[ranking[-1]] if ranking else "",
               "gold": it.get("gold"), "ended": it.get("ended"), "ratings": fields["ratings"],
               "demonstration": fields["demonstration"], "seconds": fields["seconds"], "timestamp": _now(),
               "source": self.source}
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        with self._lock:
            fd = os.open(self.labels_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                written = os.write(fd, line)
                while written < len(line):  # a short write (rare): finish the line
                    written += os.write(fd, line[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            self.judgments.append(row)
        return row


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")

"""Is a ``record.json`` fit for the board? ``read_record_file`` reads one and returns its normalized dict, or raises
``BadRecord`` whose message names the key (or the file) and what is wrong with it.

The board reads files that anyone may have written, edited or half-copied, so every field is checked against the
types ``RunRecord`` declares before a record reaches the aggregation: one bad record is skipped with a warning
and never aborts the build. Limits that keep a hostile file from costing the build (each says why it is safe):

- a file over ``MAX_RECORD_BYTES`` is not read (a real record, history included, is well under 1 MiB);
- numbers must lie within ``MAX_ABS``, below 2**53 ~ 9e15 where float64 still holds every integer, so sums over
  seeds and bootstrap means can neither overflow nor silently round; no metric or cost of a real run comes near;
- the resolved config may nest ``MAX_DEPTH`` levels (real configs nest 3 or 4), so flattening and YAML never
  recurse without bound.

Non-finite numbers are refused where they would be a lie (cost, seed), but allowed in ``metrics`` and ``history``:
a run whose final metric is NaN is shown on the board as not counted, with the reason (see ``aggregate``).
"""

from __future__ import annotations

import json
import math
import stat
from dataclasses import MISSING
from pathlib import Path
from typing import Any, Callable, Optional

from alignzoo.record import SCHEMA_VERSION, RunRecord

MAX_RECORD_BYTES = 32 * 2**20
MAX_ABS = 1e15
MAX_DEPTH = 64
FIX = "fix the file or move it out of the run directories, then build again"


class BadRecord(ValueError):
    """A record the board cannot use; the message says why (and, for file-level problems, the fix)."""


# -- checks of one value: each returns the problem ("is ... , expected ...") or None -------------------------------

def _shown(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _number(v: Any, *, finite: bool) -> Optional[str]:
    if not _is_number(v):
        return f"is {_shown(v)}, expected a number"
    if isinstance(v, float) and not math.isfinite(v):
        return None if not finite else f"is {v}, expected a finite number"
    if abs(v) > MAX_ABS:
        return f"is {_shown(v)}, beyond the ±{MAX_ABS:g} any real run stays within"
    return None


def _kind(types: tuple[type, ...], expected: str) -> Callable[[Any], Optional[str]]:
    def check(v: Any) -> Optional[str]:
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        return None if ok else f"is {_shown(v)}, expected {expected}"
    return check


def _optional(check: Callable[[Any], Optional[str]]) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v is None else check(v)


_text = _kind((str,), "a string")
_object = _kind((dict,), "an object")
_list = _kind((list,), "a list")
_cost = _optional(lambda v: _number(v, finite=True))


def _id_text(v: Any) -> Optional[str]:
    return _text(v) or (None if v.strip() else "is empty, expected a non-empty string")


def _integer(v: Any) -> Optional[str]:
    return _kind((int,), "an integer")(v) or _number(v, finite=True)


def _seed(v: Any) -> Optional[str]:
    """Any integer a seed can be (it is never summed, so only kept printable: 64 bits)."""
    return _kind((int,), "an integer")(v) or (None if abs(v) < 2**64 else f"is {_shown(v)}, beyond 64 bits")


def _tokens(v: Any) -> Optional[str]:
    return _integer(v) or (None if v >= 0 else f"is {v}, expected a count (>= 0)")


#: field -> the check of its value (RunRecord's declared types; null where the dataclass allows None)
FIELDS: dict[str, Callable[[Any], Optional[str]]] = {
    "run_id": _id_text, "status": _id_text, "algo": _optional(_text), "task": _optional(_text),
    "model": _optional(_text), "reward": _optional(_text), "budget": _optional(_text), "seed": _optional(_seed),
    "config": _object, "overrides": _list, "metrics": _object, "history": _list, "notes": _list,
    "error": _optional(_object), "versions": _object, "git_sha": _optional(_text), "started_at": _optional(_text),
    "wall_time_s": _cost, "tokens": _optional(_tokens),
    "peak_memory_mb": _cost, "job_dir": _optional(_text),
}


def _depth(node: Any) -> int:
    """How deeply ``node`` nests (iteratively, so a deep one cannot exhaust the stack here)."""
    deepest, stack = 0, [(node, 0)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def problems(data: dict[str, Any]) -> list[str]:
    """Every problem of a parsed record, each naming its key (``metrics['eval/kl'] is 'x', expected a number``)."""
    found = [f"{name} {p}" for name, check in FIELDS.items() if name in data and (p := check(data[name]))]
    if found:  # the containers below are only walked once their own types are right
        return found
    found += [f"overrides[{i}] {p}" for i, o in enumerate(data.get("overrides") or []) if (p := _text(o))]
    found += [f"notes[{i}] {p}" for i, o in enumerate(data.get("notes") or []) if (p := _text(o))]
    found += [f"metrics[{k!r}] {p}" for k, v in (data.get("metrics") or {}).items()
              if v is not None and (p := _number(v, finite=False))]
    for i, point in enumerate(data.get("history") or []):
        if not isinstance(point, dict):
            found.append(f"history[{i}] is {_shown(point)}, expected an object")
            continue
        found += [f"history[{i}][{k!r}] {p}" for k, v in point.items()
                  if _is_number(v) and (p := _number(v, finite=False))]
    error = data.get("error") or {}
    found += [f"error[{k!r}] {p}" for k in ("type", "message") if (p := _optional(_text)(error.get(k)))]
    if _depth(data.get("config")) > MAX_DEPTH:
        found.append(f"config nests deeper than {MAX_DEPTH} levels")
    return found


_FIELDS = RunRecord.__dataclass_fields__


def _default(f: Any) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def normalize(data: Any) -> dict[str, Any]:
    """A checked record dict with every RunRecord field (defaults filled in, unknown keys dropped), as
    ``RunRecord.from_dict`` would accept it, without its deep copies (1,000 records are read in a fraction of a
    second). Raises ``BadRecord`` naming every problem."""
    if not isinstance(data, dict):
        raise BadRecord(f"is {_shown(data)}, not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise BadRecord(f"record schema version {data.get('schema_version')!r} is not supported "
                        f"(expected {SCHEMA_VERSION})")
    missing = [k for k in ("run_id", "status") if data.get(k) is None]
    if missing:
        raise BadRecord(f"has no {' or '.join(missing)}")
    found = problems(data)
    if found:
        raise BadRecord("; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else ""))
    return {name: data[name] if name in data else _default(f) for name, f in _FIELDS.items()}


def read_record_file(path: Path) -> dict[str, Any]:
    """The normalized record in ``path``; ``BadRecord`` says what is wrong and how to fix it."""
    try:
        info = path.stat()
    except OSError as exc:
        raise BadRecord(f"cannot be read ({exc.strerror or exc}); check the file and its permissions") from None
    if stat.S_ISDIR(info.st_mode):
        raise BadRecord("is a directory, not a file; rename it (the board reads files named record.json)")
    if not stat.S_ISREG(info.st_mode):
        raise BadRecord("is not a regular file (a device, pipe or socket); replace it with the job's record")
    if info.st_size > MAX_RECORD_BYTES:
        raise BadRecord(f"is {info.st_size / 2**20:.1f} MiB, over the {MAX_RECORD_BYTES // 2**20} MiB a record may "
                        f"have; {FIX}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadRecord(f"cannot be read ({exc.strerror or exc}); check the file and its permissions") from None
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRecord(f"nests too deeply to parse; {FIX}") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, an integer over Python's 4300-digit limit
        why = str(exc).split(";")[0]  # the digit limit's message goes on with advice for programmers
        raise BadRecord(f"is not valid JSON ({why}); {FIX}") from None
    try:
        return normalize(data)
    except BadRecord as exc:
        raise BadRecord(f"{exc}; {FIX}") from None

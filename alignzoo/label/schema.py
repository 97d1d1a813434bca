"""What a write to the label server (``POST /api/judge``) may hold: every field, its type and its limits.

``check_fields`` checks the JSON object against ``JUDGE_FIELDS`` (unknown fields, missing required ones, types,
string lengths, valid Unicode); ``validate_judgment`` then checks the ranges that depend on the comparison's K
completions. Both raise ``RequestError``, which names the field, so a bad request is a 400 that says which field and
why, never a 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

from alignzoo.label.limits import MAX_ANNOTATOR
from alignzoo.label.store import JUDGMENTS, MAX_DEMONSTRATION, NO_PREFERENCE, RATING_SCALE

MAX_SECONDS = 86400.0  # a longer time from display to judgment is stored as one day


class RequestError(ValueError):
    """A bad write request; ``field`` is the JSON field at fault (``None``: the body as a whole)."""

    def __init__(self, field: Optional[str], message: str):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


@dataclass(frozen=True)
class Field:
    kind: str  # a key of KINDS
    doc: str  # what it is (shown in docs/labeling.md)
    required: bool = False
    max_chars: int = 0  # text: the most characters accepted


JUDGE_FIELDS = {
    "item": Field("text", "the comparison's id, from /api/state", required=True, max_chars=64),
    "judgment": Field("text", f"one of {', '.join(JUDGMENTS)}", required=True, max_chars=16),
    "annotator": Field("text", "who judged (default: the server's --annotator)", max_chars=MAX_ANNOTATOR),
    "ranking": Field("integers", "completion indices, best first (all K; [] for tie / both_bad)"),
    "ratings": Field("integers", f"K ratings 0..{RATING_SCALE} (0: not rated)"),
    "demonstration": Field("text", "a written or edited better response", max_chars=MAX_DEMONSTRATION),
    "seconds": Field("number", "time from display to judgment, >= 0"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: the JSON types of the fields: (test, what the message calls it)
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "text (a JSON string)"),
    "integers": (lambda v: isinstance(v, list) and all(_is_int(i) for i in v), "a list of integers"),
    "number": (lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v), "a finite number"),
}


def _shown(value: Any) -> str:
    """The value as the message quotes it: short, so that a large bad field is not echoed back."""
    text = "null" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_fields(payload: Any) -> dict[str, Any]:
    """``payload`` (the parsed body) checked against ``JUDGE_FIELDS``; raises ``RequestError``."""
    if not isinstance(payload, dict):
        raise RequestError(None, f"the body must be a JSON object with the fields {', '.join(JUDGE_FIELDS)}")
    unknown = sorted(k for k in payload if k not in JUDGE_FIELDS)
    if unknown:
        raise RequestError(str(unknown[0])[:40], f"unknown field; a judgment has only {', '.join(JUDGE_FIELDS)}")
    for name, spec in JUDGE_FIELDS.items():
        if name not in payload:
            if spec.required:
                raise RequestError(name, f"is required ({spec.doc})")
            continue
        value = payload[name]
        test, what = KINDS[spec.kind]
        if not test(value):
            raise RequestError(name, f"must be {what} (got {_shown(value)})")
        if spec.kind == "text":
            if spec.max_chars and len(value) > spec.max_chars:
                raise RequestError(name, f"is {len(value)} characters long; at most {spec.max_chars} are accepted")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise RequestError(name, "holds an unpaired UTF-16 surrogate (not valid Unicode); send valid "
                                   "UTF-8 text") from None
    return payload


def validate_judgment(payload: dict[str, Any], k: int) -> dict[str, Any]:
    """The judgment fields of a request for a comparison of ``k`` completions, checked (after ``check_fields``
    for a request; tests call it directly) and normalized; raises ``RequestError``."""
    judgment = payload.get("judgment")
    if judgment not in JUDGMENTS:
        raise RequestError("judgment", f"must be one of {', '.join(JUDGMENTS)} (got {_shown(judgment)})")
    ranking = payload.get("ranking", [])
    if judgment in NO_PREFERENCE:
        ranking = []
    elif not KINDS["integers"][0](ranking) or sorted(ranking) != list(range(k)):
        raise RequestError("ranking", f"must order all {k} completions (a permutation of 0..{k - 1}), got "
                           f"{_shown(ranking)}")
    if judgment == "pick" and k != 2:
        judgment = "rank"
    ratings = payload.get("ratings", [0] * k)
    if not KINDS["integers"][0](ratings) or len(ratings) != k or not all(0 <= r <= RATING_SCALE for r in ratings):
        raise RequestError("ratings", f"must be {k} integers in 0..{RATING_SCALE} (0: not rated), got "
                           f"{_shown(ratings)}")
    demo = payload.get("demonstration", "")
    if not isinstance(demo, str) or len(demo) > MAX_DEMONSTRATION:
        raise RequestError("demonstration", f"must be text of at most {MAX_DEMONSTRATION} characters")
    seconds = payload.get("seconds", 0.0)
    if not KINDS["number"][0](seconds) or seconds < 0:
        raise RequestError("seconds", f"must be a number >= 0 (got {_shown(seconds)})")
    return {"judgment": judgment, "ranking": ranking, "ratings": ratings, "demonstration": demo,
            "seconds": round(float(min(seconds, MAX_SECONDS)), 3)}

"""The arithmetic task's verifier: pure functions that read a completion's final answer and check it.

The answer format is GSM8K's: a completion ends with ``#### <integer>``, e.g. ``47+85=132 #### 132``. The rules
(docs/tasks.md has the table of cases):

- **one marker**: the answer follows the first ``####``; a completion with a second ``####`` anywhere after it has
  no answer (a policy could otherwise hedge with several marked answers, or an injected marker could override it);
- **the answer**: ASCII spaces or tabs, then an optional sign (``-`` or ``+``) directly before ASCII digits
  ``0-9``. Nothing else is a number: no unicode digits (``٣``, full-width ``３``; ``str.isdigit`` accepts those),
  no ``1e3``, ``5.0``, ``1,000``, no space between the sign and the digits (``- 5``);
- **after the answer** only whitespace (and a literal EOS string) may follow: any other text means no answer, so
  ``#### 5 apples`` and ``#### 5.0`` are not the answer 5; text *before* the marker (the worked solution) is free;
- **equality** is of integer values, compared as canonical digit strings (never ``int()`` or ``float()``: no
  precision loss, no digit limit on huge numbers): ``007`` equals ``7``, ``-0`` and ``+0`` equal ``0``, ``+5``
  equals ``5``;
- a gold answer that is not an integer in this syntax raises ``InvalidGoldError``: a broken gold must never score;
- everything runs in linear time with ``str.find`` and one pass over characters (no regular expressions, so no
  backtracking on adversarial input).

Symbolic answers (``1/2``, ``\\sqrt{2}``; the ``math-verify`` package) are out of scope: the task's answers are
integers, and math-verify is not installed.
"""

from __future__ import annotations

from typing import Optional, Union

from alignzoo.errors import AlignzooError

MARKER = "####"
EOS_TEXT = "<|endoftext|>"
_DIGITS = frozenset("0123456789")
_SPACES = frozenset(" \t")
_TRAILING = " \t\r\n"


class InvalidGoldError(AlignzooError, ValueError):
    """A gold answer that is not an integer: the data is broken, so nothing may be scored against it."""


def render(answer: Union[int, str]) -> str:
    """The answer line of a worked solution: ``#### <integer>``."""
    return f"{MARKER} {answer}"


def canonical(number: str) -> Optional[str]:
    """``[+-]?[0-9]+`` (ASCII only) as its canonical form (no ``+``, no leading zeros, ``0`` unsigned), else None."""
    sign, digits = "", number
    if digits[:1] in ("-", "+"):
        sign, digits = digits[0], digits[1:]
    if not digits or any(c not in _DIGITS for c in digits):
        return None
    digits = digits.lstrip("0") or "0"
    return "-" + digits if sign == "-" and digits != "0" else digits


def extract_answer(text: str) -> Optional[str]:
    """The completion's final answer as a canonical integer string, or None when it has none in the format."""
    start = text.find(MARKER)
    if start < 0:
        return None
    rest = text[start + len(MARKER):]
    if MARKER in rest:  # several marked answers (or an injected marker): no answer
        return None
    i = 0
    while i < len(rest) and rest[i] in _SPACES:
        i += 1
    body = rest[i:].rstrip(_TRAILING)
    while body.endswith(EOS_TEXT):
        body = body[:-len(EOS_TEXT)].rstrip(_TRAILING)
    return canonical(body) if body else None


def parse_gold(gold: Union[int, str]) -> str:
    """The gold answer's canonical form; raises ``InvalidGoldError`` when it is not an integer."""
    if isinstance(gold, bool) or not isinstance(gold, (int, str)):
        raise InvalidGoldError(f"gold answer {gold!r} is not an integer (int or str of digits)")
    value = canonical(gold.strip() if isinstance(gold, str) else str(gold))
    if value is None:
        raise InvalidGoldError(f"gold answer {gold!r} is not an integer ([+-]?[0-9]+ in ASCII digits)")
    return value


def format_score(text: str) -> float:
    """1.0 when the completion ends with one answer in the documented format (right or wrong), else 0.0."""
    return 0.0 if extract_answer(text) is None else 1.0


def verify(completion: str, gold: Union[int, str]) -> float:
    """1.0 when the completion's answer equals ``gold`` exactly (as integers), else 0.0."""
    expected = parse_gold(gold)
    return 1.0 if extract_answer(completion) == expected else 0.0

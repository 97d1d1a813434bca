"""The preference-data formats ``task=hf_preferences`` reads, and how each becomes prompt / chosen / rejected.

TRL documents preference data as standard (text) or conversational (lists of ``{"role", "content"}`` messages),
each with an explicit prompt (a ``prompt`` column) or an implicit one (only ``chosen`` and ``rejected``, both
whole conversations that share the prompt). Anthropic's HH-RLHF is the implicit case written as raw text turns
(``"\\n\\nHuman: ...\\n\\nAssistant: ..."``). ``FORMATS`` is the table of detectors and converters; each converter is
a pure function of one row's chosen and rejected cells that returns ``(prompt, chosen, rejected)`` or raises
``RowMismatch`` (what the row lacks, and what was expected), which the task reports with the row's index.

- ``explicit``: a prompt column; the row is used as it is;
- ``hh_rlhf``: text with ``\\n\\nHuman:`` and ``\\n\\nAssistant:`` turns; the prompt is everything up to and including
  the last ``\\n\\nAssistant:`` that chosen and rejected share, so each response is the final assistant turn;
- ``implicit_messages``: conversations; the prompt is their common leading messages (as TRL's ``extract_prompt``);
- ``implicit_text``: text; the prompt is the common prefix cut at its last whitespace, so that a response starts
  at a word (``"The sky is blue."`` / ``"The sky is green."`` -> ``"The sky is"``, ``" blue."``, ``" green."``);
  a common prefix without whitespace is cut where the texts differ.

A row with an empty chosen or rejected response carries no preference: it gets an empty prompt and is skipped
later, with the other empty rows, whatever the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

HH_HUMAN = "\n\nHuman:"
HH_ASSISTANT = "\n\nAssistant:"


class RowMismatch(ValueError):
    """One row does not fit the dataset's format: ``problem`` (what the row has) and ``expected``."""

    def __init__(self, problem: str, expected: str):
        super().__init__(f"{problem}; {expected}")
        self.problem, self.expected = problem, expected


def common_prefix_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """How many leading items (characters, messages) ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _split_at(chosen: Any, rejected: Any, cut: int) -> tuple[Any, Any, Any]:
    return chosen[:cut], chosen[cut:], rejected[cut:]


def hh_rlhf_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """HH-RLHF raw turns: the prompt ends with the last ``\\n\\nAssistant:`` both texts share."""
    shared = common_prefix_length(chosen, rejected)
    last = chosen.rfind(HH_ASSISTANT, 0, shared)
    if last < 0:
        raise RowMismatch(f"chosen and rejected share no {HH_ASSISTANT!r} turn",
                          f"expected HH-RLHF text: the same conversation up to a last {HH_ASSISTANT!r}, then a "
                          "different assistant reply in each")
    return _split_at(chosen, rejected, last + len(HH_ASSISTANT))


def implicit_messages_prompt(chosen: list, rejected: list) -> tuple[list, list, list]:
    """Conversations: the prompt is the leading messages chosen and rejected share."""
    shared = common_prefix_length(chosen, rejected)
    if shared == 0:
        raise RowMismatch("chosen and rejected share no leading message (the prompt)",
                          "expected two conversations that start with the same prompt messages and end with "
                          "different assistant replies, or a prompt column")
    return _split_at(chosen, rejected, shared)


def implicit_text_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Text: the prompt is the common prefix cut at its last whitespace (else where the texts differ)."""
    shared = common_prefix_length(chosen, rejected)
    if not chosen[:shared].strip():
        raise RowMismatch("chosen and rejected share no leading text (the prompt)",
                          "expected two texts that start with the same prompt, or a prompt column")
    space = max(chosen.rfind(ws, 0, shared) for ws in (" ", "\n", "\t"))
    cut = space if space > 0 and chosen[:space].strip() else shared  # a prompt is never only whitespace
    return _split_at(chosen, rejected, cut)


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_hh(value: Any) -> bool:
    return isinstance(value, str) and HH_HUMAN in value and HH_ASSISTANT in value


@dataclass(frozen=True)
class Format:
    name: str
    description: str  # what a note says the dataset was read as
    detects: Callable[[Optional[Any], Any], bool]  # (prompt cell or None, chosen cell) -> fits this format
    convert: Optional[Callable[[Any, Any], tuple[Any, Any, Any]]]  # (chosen, rejected) -> pair; None: as it is


#: format detectors -> converters, checked in this order on the dataset's first non-empty row
FORMATS: tuple[Format, ...] = (
    Format("explicit", "an explicit prompt column", lambda prompt, chosen: prompt is not None, None),
    Format("hh_rlhf", "HH-RLHF text turns (prompt: up to the last shared '\\n\\nAssistant:')",
           lambda prompt, chosen: _is_hh(chosen), hh_rlhf_prompt),
    Format("implicit_messages", "conversations with an implicit prompt (prompt: the shared leading messages)",
           lambda prompt, chosen: isinstance(chosen, list), implicit_messages_prompt),
    Format("implicit_text", "text with an implicit prompt (prompt: the shared prefix, cut at a word)",
           lambda prompt, chosen: _is_text(chosen), implicit_text_prompt),
)
BY_NAME = {f.name: f for f in FORMATS}


def detect_format(prompt: Optional[Any], chosen: Any) -> Format:
    """The format of a dataset from one non-empty row (``prompt`` is None when there is no prompt column)."""
    return next(f for f in FORMATS if f.detects(prompt, chosen))


def _empty(value: Any) -> bool:
    return not value or (isinstance(value, str) and not value.strip())


def extract_prompt(fmt: Format, chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """One row of an implicit-prompt format as (prompt, chosen, rejected); an empty response gives an empty
    prompt (the row is skipped later); raises ``RowMismatch`` for a row that does not fit ``fmt``."""
    if _empty(chosen) or _empty(rejected):
        return ([] if isinstance(chosen, list) or isinstance(rejected, list) else ""), chosen, rejected
    if fmt.name == "hh_rlhf" and not (_is_hh(chosen) and _is_hh(rejected)):
        raise RowMismatch(f"chosen or rejected lacks the {HH_HUMAN!r} / {HH_ASSISTANT!r} turns",
                          "expected HH-RLHF text in every row (the format of the dataset's first row)")
    return fmt.convert(chosen, rejected)

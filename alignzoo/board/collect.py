"""Find and read every ``record.json`` under the run directories (recursively): the board's only input.

Each file is checked first (``validate``): a bad one is skipped with a warning that names it and says why, so one
damaged record never costs the board of all the others. No usable record at all is an error that lists them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from alignzoo.board.validate import BadRecord, read_record_file
from alignzoo.errors import AlignzooError
from alignzoo.record import RECORD_FILE

LISTED = 10  # skipped files named in the error when none is usable (the rest are counted)


@dataclass
class Collected:
    records: list[dict[str, Any]] = field(default_factory=list)  # RunRecord dicts plus "source" (the job dir)
    warnings: list[str] = field(default_factory=list)  # records that could not be read, and why


def _display_path(path: Path) -> str:
    """The path relative to the working directory when it is below it (stable across machines), else absolute."""
    path = path.resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _check_dirs(dirs: list[Path]) -> None:
    if not dirs:
        raise AlignzooError("no run directory given; pass the sweep or output directories, e.g. outputs/")
    missing = [str(d) for d in dirs if not d.exists()]
    if missing:
        raise AlignzooError(f"run director{'y' if len(missing) == 1 else 'ies'} not found: {', '.join(missing)}")
    files = [str(d) for d in dirs if not d.is_dir()]
    if files:
        raise AlignzooError(f"not a directory: {', '.join(files)}; pass the run directories (the folders that hold "
                            f"the jobs' {RECORD_FILE} files), not files")


def collect(run_dirs: Iterable[str | Path]) -> Collected:
    """Read the records under ``run_dirs``; a missing directory or no usable record is an error that says so."""
    out = Collected()
    dirs = [Path(d) for d in run_dirs]
    _check_dirs(dirs)
    seen: set[Path] = set()
    for d in dirs:
        for path in sorted(d.rglob(RECORD_FILE)):
            real = path.resolve()
            if real in seen:
                continue
            seen.add(real)
            try:
                record = read_record_file(path)
            except BadRecord as exc:
                out.warnings.append(f"skipped {_display_path(path)}: {exc}")
                continue
            record["source"] = _display_path(path.parent)
            out.records.append(record)
    if not out.records:
        where = ", ".join(str(d) for d in dirs)
        if out.warnings:
            listed = "\n".join(f"  - {w}" for w in out.warnings[:LISTED])
            more = f"\n  - and {len(out.warnings) - LISTED} more" if len(out.warnings) > LISTED else ""
            raise AlignzooError(f"no usable {RECORD_FILE} under {where}: all {len(out.warnings)} were skipped; fix "
                                f"or remove them, or rerun their jobs:\n{listed}{more}")
        raise AlignzooError(f"no {RECORD_FILE} found under {where}; run jobs first "
                            "(`alignzoo run -m ...`) or pass the directory that holds their job folders")
    return out

"""File manifests: the size and SHA-256 of every file of a folder that is written once and read many times
(a checkpoint, a pipeline stage), so that a reader can tell a whole folder from a truncated, altered or partly
deleted one before it loads anything from it. Also: which write failures are the disk's (full, read-only).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path
from typing import Iterable, Optional

#: errno values that mean "this disk cannot take the write" (the fix is space or another directory, not the code)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
# safetensors (Rust) reports I/O failures as SafetensorError("... I/O error: ... (os error 28)"), not OSError
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe(folder: Path, names: Iterable[str]) -> dict[str, dict[str, object]]:
    """``{name: {"bytes", "sha256"}}`` for the files ``names`` (relative to ``folder``, ``/``-separated)."""
    return {name: {"bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)} for name in names}


def files_under(folder: Path, *, skip: Iterable[str] = ()) -> list[str]:
    """Every file below ``folder`` (recursively) as a sorted ``/``-separated relative path, except ``skip``."""
    skipped = set(skip)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.relative_to(folder).as_posix() not in skipped)


def _listing_problem(files: object, label: str) -> Optional[str]:
    if not isinstance(files, dict) or not files or not all(
            isinstance(i, dict) and {"bytes", "sha256"} <= set(i) for i in files.values()):
        return f"{label} lists no files with their sizes and checksums"
    # a manifest is data read from disk: it must not make the reader open files outside the folder
    outside = [n for n in files if not isinstance(n, str) or n.startswith("/") or ".." in n.split("/")]
    if outside:
        return f"{label} names a file outside its folder ({outside[0]!r})"
    return None


def check_files(folder: Path, files: object, *, label: str = "manifest.json", hashes: bool = True) -> Optional[str]:
    """Why the files listed in a manifest (``describe``'s output; ``label`` names the manifest in messages) do
    not match ``folder``, or None when every one is there with its size and (``hashes``) its SHA-256. Names the
    first file that differs."""
    problem = _listing_problem(files, label)
    if problem:
        return problem
    assert isinstance(files, dict)
    for name, info in files.items():
        f = folder / name
        if not f.is_file():
            return f"{name} is missing"
        size = f.stat().st_size
        if size != info["bytes"]:
            return f"{name} has {size} bytes instead of {info['bytes']} (truncated or overwritten)"
    if hashes:
        for name, info in files.items():
            if sha256(folder / name) != info["sha256"]:
                return f"{name} does not match its SHA-256 checksum (corrupted)"
    return None


def signature(folder: Path, files: dict[str, dict[str, object]]) -> tuple:
    """What changes when any listed file is rewritten (inode, size, mtime): the key of a verification memo."""
    out = []
    for name in sorted(files):
        st = (folder / name).stat()
        out.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
    return (str(Path(folder).resolve()), tuple(out))


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def os_errno(exc: BaseException) -> Optional[int]:
    """The errno behind a write failure: an ``OSError``'s, or the one a safetensors error quotes; else None."""
    if isinstance(exc, OSError):
        return exc.errno
    if type(exc).__name__ == "SafetensorError":
        m = _RUST_OS_ERROR.search(str(exc))
        return int(m.group(1)) if m else None
    return None


def is_disk_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a write failure of the disk itself (full, quota, read-only, permission)."""
    return os_errno(exc) in (*DISK_FULL, *NOT_WRITABLE)

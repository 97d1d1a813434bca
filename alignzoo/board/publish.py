"""Put a built board into ``--out`` without ever leaving half a board or deleting a file the board did not write.

``publish(out, files)`` writes every file (fsynced) into a staging folder first, so a full disk, a permission
problem or Ctrl-C while writing leaves the previous board as it was. Then:

- ``out`` does not exist: the staging folder is renamed to ``out``, one atomic step;
- ``out`` exists (an earlier board, perhaps with a user's README, a ``.git`` folder or a screenshot beside it): the
  staging folder is made inside it (the same filesystem even when ``out`` is a mount point, so renames stay atomic
  and its parent need not be writable) and each file replaces its namesake with ``os.replace``; the pages last, so a
  reader following their links always finds the files they name. Files the previous build wrote and this one does
  not (a group that is gone) are removed only if ``MANIFEST`` lists them and they are unchanged since; nothing
  else in ``out`` is touched. SIGINT, SIGTERM and SIGHUP wait until the renames are done.

Problems come back as ``BoardWriteError``: one message that names ``out``, the cause and the fix, and says whether
the previous board is unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from alignzoo.errors import AlignzooError

MANIFEST = ".alignzoo-board-manifest.json"  # what the last build wrote: {"files": {relative path: sha256}}
STAGING_PREFIX = ".alignzoo-board-tmp-"
PAGES = ("LEADERBOARD.md", "runs.csv", "leaderboard.json", "index.html")  # replaced last, in this order
FIGURES = ("frontier", "compute", "curves")
#: the only paths a board writes, so a damaged or hand-edited manifest can never name anything else for removal
BOARD_FILE = re.compile(r"(configs/[A-Za-z0-9_.-]{1,32}-[0-9a-f]{8}\.yaml|(" + "|".join(FIGURES) + r")\.(png|svg)|"
                        + "|".join(re.escape(p) for p in PAGES) + ")")
#: the fix for a failed write, by errno
FIXES = {errno.ENOSPC: "free some disk space or choose another --out", errno.EDQUOT: "free some quota or choose "
         "another --out", errno.EACCES: "choose a writable --out", errno.EPERM: "choose a writable --out",
         errno.EROFS: "choose a --out on a writable filesystem"}
HELD_SIGNALS = tuple(getattr(signal, s) for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s))


class BoardWriteError(AlignzooError):
    """The board could not be written into ``--out``."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_out(out: Path) -> None:
    """Fail early (before any work) when ``out`` cannot hold a board: a file, or below a file or unwritable folder."""
    if out.exists() and not out.is_dir():
        raise BoardWriteError(f"--out {out} is a file, not a directory; give a directory (it is created if missing)")
    existing = out.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise BoardWriteError(f"cannot create --out {out}: {existing} is a file; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BoardWriteError(f"cannot write the board into {out}: {existing} is not writable; choose a writable "
                              "--out")


def _conflicts(out: Path, names: list[str]) -> list[str]:
    """Board paths that exist in ``out`` as something a file cannot replace (a folder named runs.csv)."""
    found = []
    for name in names:
        target = out / name
        if target.parent != out and target.parent.exists() and not target.parent.is_dir():
            found.append(f"{target.parent} is a file, where the board keeps its configs/ folder")
        elif target.is_dir() and not target.is_symlink():
            found.append(f"{target} is a folder, where the board writes a file")
    return sorted(set(found))


def _legacy(out: Path) -> dict[str, Optional[str]]:
    """A board from before manifests: the files its leaderboard.json names."""
    old = json.loads((out / "leaderboard.json").read_text())
    configs = [g.get("config_file") for g in old.get("groups") or []]
    figures = [f.get(ext) for f in (old.get("figures") or {}).values() for ext in ("png", "svg")]
    return dict.fromkeys([*PAGES, *configs, *figures])


def _previous(out: Path) -> dict[str, Optional[str]]:
    """What the last build wrote ({path: sha256}): its manifest, or for a board from before manifests, the files its
    leaderboard.json names (no hash: those are replaced as the old builds did). Only board paths are kept, so a
    damaged or hand-edited manifest can name nothing else for removal."""
    unreadable = (OSError, ValueError, KeyError, TypeError, AttributeError)
    try:
        files = {k: str(v) for k, v in json.loads((out / MANIFEST).read_text())["files"].items()}
    except unreadable:
        try:
            files = _legacy(out)
        except unreadable:
            files = {}
    return {k: v for k, v in files.items() if isinstance(k, str) and BOARD_FILE.fullmatch(k)}


def _unchanged(path: Path, sha: Optional[str]) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and (sha is None or _sha256(path.read_bytes()) == sha)
    except OSError:
        return False


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(mode=0o755, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, 0o644)


def _order(name: str) -> tuple[int, str]:
    return (PAGES.index(name) + 1 if name in PAGES else 0, name)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block is done, then deliver them to the handlers they were meant for
    (Ctrl-C lands after the last rename, never between two). Python runs signal handlers in the main thread only,
    so this defers them whichever thread the signal arrives on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in HELD_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


def _manifest(files: dict[str, Optional[str]]) -> bytes:
    return (json.dumps({"written_by": "alignzoo board build", "files": dict(sorted(files.items()))}, indent=1)
            + "\n").encode()


def _commit(out: Path, staging: Path, files: dict[str, bytes]) -> list[str]:
    """Move the staged files into an existing ``out``; returns warnings (stale files kept because they changed)."""
    old = _previous(out)
    new = {name: _sha256(data) for name, data in files.items()}
    (staging / MANIFEST).write_bytes(_manifest({**old, **new}))  # lists this build's files before any is in place
    os.replace(staging / MANIFEST, out / MANIFEST)
    for name in sorted(files, key=_order):
        (out / name).parent.mkdir(mode=0o755, exist_ok=True)
        os.replace(staging / name, out / name)
    kept = []
    for name, sha in sorted(old.items()):
        if name in new or not (out / name).exists():
            continue
        if _unchanged(out / name, sha):
            (out / name).unlink()
        else:
            kept.append(f"kept {out / name}: an earlier board wrote it, but it has changed since (delete it if it is "
                        "not yours)")
    (staging / MANIFEST).write_bytes(_manifest(new))
    os.replace(staging / MANIFEST, out / MANIFEST)
    return kept


def _failure(out: Path, exc: OSError, committing: bool) -> BoardWriteError:
    why = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    fix = FIXES.get(exc.errno or 0, "check --out and build again")
    state = ("the board there is partly replaced; build again once that is fixed" if committing
             else "the previous board there is unchanged")
    return BoardWriteError(f"cannot write the board into {out}: {why}{where}; {fix}; {state}")


def publish(out: Path, files: dict[str, str | bytes]) -> list[str]:
    """Write ``files`` ({path relative to out: content}) into ``out`` as described above; returns warnings."""
    data = {name: v.encode() if isinstance(v, str) else v for name, v in files.items()}
    conflicts = _conflicts(out, list(data)) if out.is_dir() else []
    if conflicts:
        raise BoardWriteError(f"cannot write the board into {out}: {'; '.join(conflicts)}; move it away or choose "
                              "another --out; the previous board there is unchanged")
    fresh = not out.exists()
    staging: Optional[Path] = None
    committing = False
    try:
        if fresh:
            out.absolute().parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX if not fresh else f".{out.absolute().name}.tmp-",
                                        dir=out.absolute().parent if fresh else out))
        _write_tree(staging, data)
        if fresh:
            (staging / MANIFEST).write_bytes(_manifest({n: _sha256(d) for n, d in data.items()}))
            os.chmod(staging, 0o755)
        with _signals_deferred():
            committing = not fresh  # renaming a whole new folder into place either happens or does not
            if fresh:
                os.rename(staging, out)
                staging = None
                return []
            return _commit(out, staging, data)
    except OSError as exc:
        raise _failure(out, exc, committing) from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)

"""Pipeline-stage cache: each stage's output lives in ``<cache_dir>/<stage>/<hash>/`` keyed by a hash of its own
config and the hashes of its inputs, is built under a file lock (two jobs of a sweep never build it twice), in a
temporary directory renamed into place when complete (a crash never leaves half a stage), and reused by every
later run.

An entry is reused only when it is whole: its ``manifest.json`` (written last, before the rename) lists the size and
SHA-256 of every file, meta.json included, and names the entry's stage and key. An entry that does not verify (a
truncated or altered file, a deleted one, garbage meta.json, a manifest of another entry, or none: entries written
before manifests existed) is moved aside to ``<hash>.damaged-<time>`` under the lock and built again; the run's
notes say so. Sizes are checked on every reuse; checksums once per process for unchanged files (a sweep in one
process reuses its stages without hashing them again).
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from filelock import FileLock

from alignzoo import manifest as manifests
from alignzoo.errors import AlignzooError
from alignzoo.record import write_json_atomic

log = logging.getLogger("alignzoo")
META = "meta.json"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1  # bump when the manifest's layout changes
#: bump when a stage's output format or algorithm changes, so old cache entries are not reused
STAGE_FORMAT = 1
#: entries this process verified whole: path -> signature (inode, size, mtime of each file) when it did
_VERIFIED: dict[str, tuple] = {}


class StageCacheError(AlignzooError):
    """The stage cache cannot be written (read-only, full): the message names the directory and the fix."""


@dataclass(frozen=True)
class StageResult:
    name: str
    key: str
    path: Path
    meta: dict[str, Any]
    reused: bool


def stage_key(name: str, config: dict[str, Any]) -> str:
    blob = json.dumps({"stage": name, "format": STAGE_FORMAT, **config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# -- verifying an entry ----------------------------------------------------------------------------------------

def _read_json(path: Path) -> tuple[Any, Optional[str]]:
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name} is unreadable ({type(exc).__name__}: {str(exc)[:120]})"


def damage(path: Path, name: str, key: str) -> Optional[str]:
    """Why the entry at ``path`` is not a whole output of stage ``name`` with ``key``, or None when it is."""
    if not (path / MANIFEST).is_file():
        if (path / META).is_file():
            return f"it has no {MANIFEST} (written by an alignzoo that did not checksum stages)"
        return f"{MANIFEST} is missing"
    manifest, problem = _read_json(path / MANIFEST)
    if problem:
        return problem
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        return f"{MANIFEST} has format {found!r}; this alignzoo reads format {MANIFEST_FORMAT}"
    if (manifest.get("stage"), manifest.get("key")) != (name, key):
        return (f"{MANIFEST} belongs to {manifest.get('stage')}/{manifest.get('key')}, not {name}/{key} (copied "
                "from another entry)")
    files = manifest.get("files")
    if not isinstance(files, dict) or META not in files:
        return f"{MANIFEST} does not list {META}"
    problem = manifests.check_files(path, files, label=MANIFEST, hashes=False)
    if problem:
        return problem
    signature = manifests.signature(path, files)
    if _VERIFIED.get(str(path)) != signature:  # checksums once per process while the files stay unchanged
        problem = manifests.check_files(path, files, label=MANIFEST)
        if problem:
            return problem
        _VERIFIED[str(path)] = signature
    meta, problem = _read_json(path / META)
    if problem or not isinstance(meta, dict):
        return problem or f"{META} holds no JSON object"
    return None


def _open(path: Path, name: str, key: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(meta, None) for a whole entry, (None, why) for a damaged one, (None, None) when there is none."""
    if not path.is_dir():
        return None, ("it is not a directory" if path.exists() else None)
    why = damage(path, name, key)
    return (None, why) if why else (json.loads((path / META).read_text()), None)


def _write_manifest(folder: Path, name: str, key: str) -> dict[str, dict[str, object]]:
    """List every file of a built entry (meta.json included) with its size and checksum, fsync them all, and
    write the manifest last: an entry renamed into place with it is whole, also after a power cut."""
    files = manifests.files_under(folder, skip=[MANIFEST])
    for rel in files:
        manifests.fsync_path(folder / rel)
    listed = manifests.describe(folder, files)
    write_json_atomic(folder / MANIFEST, {"format": MANIFEST_FORMAT, "stage": name, "key": key, "files": listed})
    manifests.fsync_path(folder)
    return listed


# -- the cache directory's own failures ------------------------------------------------------------------------

def _cache_error(cache_dir: Any, exc: BaseException, doing: str) -> StageCacheError:
    code = manifests.os_errno(exc)
    why = os.strerror(code) if code else str(exc)
    if code in manifests.DISK_FULL:
        return StageCacheError(
            f"the stage cache {cache_dir} is full ({why}) while {doing}; nothing half-built was left there. Free "
            "space on that disk, or set run.cache_dir=<dir> (or ALIGNZOO_CACHE) to a directory with room")
    return StageCacheError(f"cannot write the stage cache {cache_dir} ({why}) while {doing}; set "
                           "run.cache_dir=<dir> (or ALIGNZOO_CACHE) to a writable directory")


def _writes_to_cache(exc: BaseException, root: Path) -> bool:
    """Whether a failure while building is the cache disk's (full, read-only) rather than the build's own."""
    if not manifests.is_disk_error(exc):
        return False
    filename = getattr(exc, "filename", None)
    return filename is None or str(Path(filename).absolute()).startswith(str(root.absolute()))


def _ensure_writable(cache_dir: Any, root: Path, doing: str) -> None:
    """Fail before building when the cache cannot take a write (read-only, full, a file in the way)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR):  # a file stands where the cache should be
            raise StageCacheError(f"cannot write the stage cache {cache_dir} ({exc.strerror}: a file is in the way); "
                                  "set run.cache_dir=<dir> (or ALIGNZOO_CACHE) to a writable directory") from None
        raise _cache_error(cache_dir, exc, doing) from None


def _move_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.damaged-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.replace(path, aside)
    _VERIFIED.pop(str(path), None)
    return aside


# -- the stage ----------------------------------------------------------------------------------------------

def run_stage(cache_dir: str | Path, name: str, config: dict[str, Any],
              build: Callable[[Path], dict[str, Any]], *, note: Callable[[str], None] = log.info) -> StageResult:
    """Return the cached output of stage ``name`` for ``config``, building it with ``build(tmp_dir) -> meta`` if
    no job has yet, or if the cached entry is damaged (it is moved aside first). ``note`` receives one line saying
    whether it was reused or built, and one more when an entry was damaged."""
    key = stage_key(name, config)
    root = Path(cache_dir) / name
    final = root / key
    meta, why = _open(final, name, key)
    if meta is not None:  # a whole entry needs no lock: entries are renamed into place complete
        note(f"stage {name}: reused from cache ({final})")
        return StageResult(name, key, final, meta, True)
    _ensure_writable(cache_dir, root, f"replacing the damaged entry {final} ({why})" if why else
                     f"building stage {name} ({final})")
    try:
        lock = FileLock(str(root / f"{key}.lock"))
        lock.acquire()
    except OSError as exc:
        raise _cache_error(cache_dir, exc, f"locking {final}") from None
    try:
        meta, why = _open(final, name, key)  # another job may have built (or rebuilt) it while this one waited
        if meta is not None:
            note(f"stage {name}: reused from cache, built by another job meanwhile ({final})")
            return StageResult(name, key, final, meta, True)
        if why is not None:  # whole-looking but damaged; under the lock, so no other job is moving it too
            try:
                aside = _move_aside(final)
            except OSError as exc:
                raise _cache_error(cache_dir, exc, f"moving the damaged entry {final} aside ({why})") from None
            note(f"stage {name}: the cached entry {final} is damaged ({why}); moved it to {aside} (remove it when "
                 "done) and building the stage again")
        meta = _build(cache_dir, root, final, name, key, config, build)
    finally:
        lock.release()
    note(f"stage {name}: built in {meta['build_seconds']:.1f}s ({final})")
    return StageResult(name, key, final, meta, False)


def _build(cache_dir: Any, root: Path, final: Path, name: str, key: str, config: dict[str, Any],
           build: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Build into a temporary directory and rename it into place; a failure leaves nothing behind."""
    tmp = root / f".{key}.tmp-{os.getpid()}"
    t0 = time.time()
    log.info("stage %s: building (%s)", name, final)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        meta = dict(build(tmp) or {})
        meta.update({"stage": name, "key": key, "config": config, "build_seconds": round(time.time() - t0, 2),
                     "built_by_pid": os.getpid()})
        write_json_atomic(tmp / META, meta)
        files = _write_manifest(tmp, name, key)
        os.replace(tmp, final)
        _VERIFIED[str(final)] = manifests.signature(final, files)  # just hashed: reuse in this process is free
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, Exception) and _writes_to_cache(exc, root):
            raise _cache_error(cache_dir, exc, f"building stage {name} ({final})") from None
        raise
    return meta

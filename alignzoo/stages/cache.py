"""Pipeline-stage cache: each stage's output lives in ``<cache_dir>/<stage>/<hash>/`` keyed by a hash of its own
config and the hashes of its inputs, is built under a file lock (two jobs of a sweep never build it twice), in a
temporary directory renamed into place when complete (a crash never leaves half a stage), and reused by every
later run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from filelock import FileLock

from alignzoo.errors import AlignzooError
from alignzoo.record import write_json_atomic

log = logging.getLogger("alignzoo")
META = "meta.json"
#: bump when a stage's output format or algorithm changes, so old cache entries are not reused
STAGE_FORMAT = 1


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


def run_stage(cache_dir: str | Path, name: str, config: dict[str, Any],
              build: Callable[[Path], dict[str, Any]], *, note: Callable[[str], None] = log.info) -> StageResult:
    """Return the cached output of stage ``name`` for ``config``, building it with ``build(tmp_dir) -> meta`` if
    no job has yet. ``note`` receives one line saying whether it was reused or built."""
    key = stage_key(name, config)
    root = Path(cache_dir) / name
    final = root / key
    if (final / META).exists():
        meta = json.loads((final / META).read_text())
        note(f"stage {name}: reused from cache ({final})")
        return StageResult(name, key, final, meta, True)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlignzooError(f"cannot write the stage cache {cache_dir} ({exc.strerror or exc}); set "
                            "run.cache_dir=<dir> (or ALIGNZOO_CACHE) to a writable directory") from None
    with FileLock(str(root / f"{key}.lock")):
        if (final / META).exists():  # another job built it while this one waited for the lock
            meta = json.loads((final / META).read_text())
            note(f"stage {name}: reused from cache, built by another job meanwhile ({final})")
            return StageResult(name, key, final, meta, True)
        tmp = root / f".{key}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.time()
        log.info("stage %s: building (%s)", name, final)
        try:
            meta = dict(build(tmp) or {})
            meta.update({"stage": name, "key": key, "config": config, "build_seconds": round(time.time() - t0, 2),
                         "built_by_pid": os.getpid()})
            write_json_atomic(tmp / META, meta)
            if final.exists():  # a stale, incomplete entry (no meta.json) from an older crash
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    note(f"stage {name}: built in {meta['build_seconds']:.1f}s ({final})")
    return StageResult(name, key, final, meta, False)

"""RunRecord: the versioned JSON record every job writes (``record.json``), the leaderboard's source of truth.

Written atomically (temp file in the same directory, fsync, rename), so a reader never sees half a record and a
crash never destroys the previous one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"


@dataclass
class RunRecord:
    run_id: str
    status: str  # "ok" | "failed" | "running"
    algo: str | None = None
    task: str | None = None
    model: str | None = None
    reward: str | None = None
    seed: int | None = None
    budget: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved config
    overrides: list[str] = field(default_factory=list)  # the command-line overrides that made it
    metrics: dict[str, float] = field(default_factory=dict)  # final values: train/* and eval/*
    history: list[dict[str, Any]] = field(default_factory=list)  # per-eval-step: {"step": n, "eval/...": x}
    notes: list[str] = field(default_factory=list)  # things a reader must know (stage reuse, skipped evaluators)
    error: dict[str, str] | None = None  # {"type", "message", "traceback"} when failed
    versions: dict[str, str] = field(default_factory=dict)
    git_sha: str | None = None
    started_at: str | None = None
    wall_time_s: float | None = None
    tokens: int = 0  # tokens processed by training forwards (prompt + completion, all models)
    peak_memory_mb: float | None = None
    job_dir: str | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunRecord":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"record schema version {version!r} is not supported (expected {SCHEMA_VERSION})")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON to ``path`` atomically: a reader sees the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_record(record: RunRecord, job_dir: str | Path, *, name: str = RECORD_FILE) -> Path:
    return write_json_atomic(Path(job_dir) / name, record.to_dict())


def read_record(path: str | Path) -> RunRecord:
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    return RunRecord.from_dict(json.loads(path.read_text()))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)

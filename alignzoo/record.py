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
    # the final evaluation's headline scores per prompt: {"eval/gold_reward": {"<prompt id>": mean score}}, the
    # prompt id being evaluators.gold.prompt_id (what the board's paired bootstrap pairs rows on); {} in older runs
    per_prompt: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # things a reader must know (stage reuse, skipped evaluators)
    error: dict[str, str] | None = None  # {"type", "message", "traceback"} when failed
    versions: dict[str, str] = field(default_factory=dict)
    git_sha: str | None = None
    started_at: str | None = None
    wall_time_s: float | None = None
    tokens: int = 0  # tokens processed by training forwards (prompt + completion, all models)
    peak_memory_mb: float | None = None
    # optimizer throughput (alignzoo.training.StepClock): steps, train_s, tokens, s_per_step, tokens_per_s; the
    # wall time of the training steps alone (no evaluation, checkpoints or pipeline stages); {} when none ran
    perf: dict[str, float] = field(default_factory=dict)
    # who provides each component: {"algo": {"name": "kto", "package": "alignzoo-kto", "version": "0.1.0"}, ...}
    # (built-ins: alignzoo and its version; evaluators and loggers as {"evaluator/<key>": ...})
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
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


def component_provenance(built: dict[str, Any], registries: Any, plugins: list[Any]) -> dict[str, dict[str, Any]]:
    """The name, providing package and version of every component a run built (``record.components``), so a
    record says which code made it: ``{"algo": {"name": "kto", "package": "alignzoo-kto", "version": "0.1.0"}}``.
    Components selected as a list are keyed ``<kind>/<key>`` (``evaluator/gold_reward``). ``plugins`` is the
    plugin state's ``PluginInfo`` list; a component registered outside an installed distribution (a test's extra
    plugin) has package and version None."""
    packages = {p.name: _package_of(p) for p in plugins}
    out: dict[str, dict[str, Any]] = {}
    for kind in registries:
        chosen = built.get(kind)
        items = chosen.items() if isinstance(chosen, dict) else [(None, chosen)]
        for key, conf in items:
            name = getattr(conf, "name", None)
            if name is None or name not in registries[kind]:
                continue
            package, version = packages.get(registries[kind].get(name).provider, (None, None))
            out[kind if key is None else f"{kind}/{key}"] = {"name": name, "package": package, "version": version}
    return out


def _package_of(plugin: Any) -> tuple[str | None, str | None]:
    """(distribution name, version) of a loaded plugin: alignzoo for the built-ins, the distribution that declares
    the plugin's entry point for the others."""
    import importlib.metadata as md

    if plugin.builtin:
        return "alignzoo", plugin.version
    for ep in md.entry_points(group="alignzoo"):
        if ep.name == plugin.name and ep.dist is not None:
            return ep.dist.name, ep.dist.version
    return None, plugin.version

"""Loggers: ``console`` (progress bar and eval lines), ``jsonl`` (metrics.jsonl in the job dir) and ``wandb``.

A logger has ``log(metrics, step)`` and ``finish(record)``; the run calls ``finish`` in ``finally`` so a W&B run is
closed even when the job fails. Only rank 0 builds real loggers (``alignzoo.distributed.is_main_process``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from alignzoo.hookspecs import hookimpl


# -- console ---------------------------------------------------------------------------------------------------

@dataclass
class ConsoleConfig:
    name: str = "console"
    progress: bool = True  # draw a progress bar on long loops (only on a terminal)
    every: int = 0  # also print train metrics every N steps (0: only evaluations)


class ConsoleLogger:
    """Prints evaluation metrics (and optionally training metrics) as compact lines on stderr."""

    def __init__(self, cfg: ConsoleConfig, ctx: Any):
        self.cfg = cfg

    def log(self, metrics: dict[str, float], step: int) -> None:
        is_eval = any(k.startswith("eval/") for k in metrics)
        if is_eval or (self.cfg.every and step % self.cfg.every == 0):
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if not k.endswith("_std"))
            print(f"[step {step}] {shown}", file=sys.stderr, flush=True)

    def finish(self, record: Any) -> None:
        pass


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# -- jsonl -----------------------------------------------------------------------------------------------------

@dataclass
class JsonlConfig:
    name: str = "jsonl"
    file: str = "metrics.jsonl"  # relative to the job directory


class JsonlLogger:
    """One JSON object per log call ({"step": n, metric: value, ...}), flushed at once."""

    def __init__(self, cfg: JsonlConfig, ctx: Any):
        self.path = Path(ctx.job_dir) / cfg.file
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._f.write(json.dumps({"step": step, **metrics}) + "\n")
        self._f.flush()

    def finish(self, record: Any) -> None:
        self._f.close()


# -- wandb -----------------------------------------------------------------------------------------------------

@dataclass
class WandbConfig:
    name: str = "wandb"
    project: str = "alignzoo"
    entity: Optional[str] = None
    group: Optional[str] = None  # None: the sweep directory's name for multiruns, else "<algo>-<task>"
    tags: list[str] = field(default_factory=list)  # added to [algo, task, model, seed<N>]
    mode: Optional[str] = None  # online | offline | disabled; None: $WANDB_MODE, else offline (no account needed)


class WandbLogger:
    """Mirrors metrics to Weights & Biases; the run directory lives inside the job directory."""

    def __init__(self, cfg: WandbConfig, ctx: Any):
        import wandb

        mode = cfg.mode or os.environ.get("WANDB_MODE") or "offline"
        c = ctx.cfg
        tags = [c.algo.name, c.task.name, c.model.name, f"seed{c.seed}", *cfg.tags]
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group or ctx.group or f"{c.algo.name}-{c.task.name}",
            job_type=c.algo.name, tags=tags, name=ctx.record.run_id, dir=str(ctx.job_dir), mode=mode,
            config=ctx.resolved_config, reinit="finish_previous",
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def finish(self, record: Any) -> None:
        try:
            self.run.summary.update({**record.metrics, "status": record.status})
        finally:
            self.run.finish(exit_code=0 if record.status == "ok" else 1)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_loggers(register):
    register("console", ConsoleLogger, ConsoleConfig)
    register("jsonl", JsonlLogger, JsonlConfig)
    register("wandb", WandbLogger, WandbConfig)

"""Checkpoints and exact resume: ``run.checkpoint_every=N`` saves a training loop's whole state every N optimizer
steps (and at the last one) into ``<job dir>/checkpoints/step-<N>/``; re-running the same command in the same
``hydra.run.dir`` (or a SLURM requeue) continues from the last complete checkpoint and finishes with the metrics
an uninterrupted run would have had.

A checkpoint holds, in safetensors plus JSON (nothing is pickled):
- ``<module>.safetensors``: every module the loop trains (policy, value head, separate critic, ...);
- ``tensors.safetensors``: optimizer tensors (flattened: ``optimizer.<param index>.<name>``), the torch RNG state
  and the state of every ``torch.Generator`` the loop samples or shuffles with;
- ``state.json``: step, optimizer hyperparameters and scalars, LR schedule, Python and NumPy RNG states, the
  loop's small objects (KL controller, data position: how many batches each iterator gave out), the run's eval
  history, last train metrics and token count, and the config it belongs to;
- ``manifest.json``, written last: format version, step, and the size and SHA-256 of every file.

Atomic: written into a temporary directory, every file fsynced, then renamed into place; a crash mid-save leaves
only a ``.tmp-*`` directory that is ignored and cleaned up. Only the last ``run.checkpoint_keep`` complete
checkpoints are kept. A damaged checkpoint (a file missing, truncated or altered) or one written by a different
config is never loaded: the run stops with a message that names it and the fix.

A loop takes part in three lines (``training.loop`` does it for every algorithm)::

    state = checkpoint.TrainingState(modules={"policy": model}, stepper=stepper, objects={"batches": batches})
    start = checkpoint.resume(ctx, state)          # 0, or the step the checkpoint was written at
    for step in range(start + 1, steps + 1): ...; checkpoint.save_if_due(ctx, state, step)
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from alignzoo import manifest as manifests
from alignzoo.errors import AlignzooError
from alignzoo.manifest import fsync_path as _fsync

log = logging.getLogger("alignzoo")

FORMAT = 1  # bump when the layout changes; other versions are refused with a message
DIR_NAME = "checkpoints"
MANIFEST = "manifest.json"
STATE = "state.json"
TENSORS = "tensors.safetensors"
#: config sections that may change between attempts without changing the training (threads, cache, loggers)
IGNORED_SECTIONS = ("run", "logger", "hydra")
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(AlignzooError):
    """A checkpoint that cannot be resumed from (damaged, another config, another format)."""


class Replay:
    """An endless iterator that is a deterministic function of its seed (``make()`` builds it afresh), with its
    data position as checkpoint state: the number of items it has given out. Resuming replays that many items
    from a fresh iterator, so the next batch is the one the uninterrupted run would have drawn."""

    def __init__(self, make: Callable[[], Iterator[Any]]):
        self._make = make
        self._it = make()
        self.drawn = 0

    def __iter__(self) -> "Replay":
        return self

    def __next__(self) -> Any:
        item = next(self._it)
        self.drawn += 1
        return item

    def state_dict(self) -> dict[str, int]:
        return {"drawn": self.drawn}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._it = self._make()
        for _ in range(int(state["drawn"])):
            next(self._it)
        self.drawn = int(state["drawn"])


@dataclass
class TrainingState:
    """What one training loop must save to continue exactly where it stopped (the run's own state, RNGs and eval
    history are added by this module)."""

    modules: dict[str, Any]  # name -> torch.nn.Module trained by the loop (None values are skipped)
    stepper: Any = None  # training.Stepper: its optimizer and LR schedule
    generators: dict[str, Any] = field(default_factory=dict)  # name -> torch.Generator the loop draws from
    objects: dict[str, Any] = field(default_factory=dict)  # name -> object with JSON state_dict() / load_state_dict()


# -- the run's checkpoint folder -----------------------------------------------------------------------------------

class Checkpoints:
    """The checkpoints of one job: ``<job dir>/checkpoints``; ``resume_from`` is the verified checkpoint this
    attempt continues from (None: a fresh start)."""

    def __init__(self, root: Path, *, every: int, keep: int, config: dict[str, Any]):
        self.root, self.every, self.keep, self.config = Path(root), int(every), int(keep), config
        self.resume_from: Optional[Path] = None
        self.resumed_step: Optional[int] = None

    def complete(self) -> list[tuple[int, Path]]:
        """(step, path) of every renamed-into-place checkpoint, newest first (verified or not)."""
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
        return sorted(found, reverse=True)


def training_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides the training (what a checkpoint must match to be resumed)."""
    return {k: v for k, v in config.items() if k not in IGNORED_SECTIONS}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): d}


def config_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in sorted(set(a) | set(b))
            if a.get(k, "<unset>") != b.get(k, "<unset>")]


def verify(path: Path) -> Optional[str]:
    """Why the checkpoint at ``path`` cannot be loaded (damaged or of another format), or None when it is whole."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return f"{MANIFEST} is missing"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} is unreadable ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return (f"it has format {manifest.get('format') if isinstance(manifest, dict) else None!r}; this alignzoo "
                f"reads format {FORMAT}")
    return manifests.check_files(path, manifest.get("files"), label=MANIFEST)


def prepare(ctx: Any) -> Checkpoints:
    """Find the checkpoint this job continues from (called by ``run_job`` before training); raises
    ``CheckpointError`` when the newest one is damaged with no whole one to fall back to, or belongs to another
    config. Leftovers of an interrupted save are removed; with ``run.resume=false`` old checkpoints are moved
    aside (kept, never deleted)."""
    from alignzoo.distributed import is_main_process

    settings = ctx.built["run"]
    manager = Checkpoints(Path(ctx.job_dir) / DIR_NAME, every=settings.checkpoint_every,
                          keep=settings.checkpoint_keep, config=training_config(ctx.record.config))
    root = manager.root
    main = is_main_process()  # under a launcher, rank 0 alone moves or removes anything
    if root.is_dir() and main:
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    found = manager.complete()
    if not found:
        return manager
    if not settings.resume:
        if not main:
            return manager
        aside = root.with_name(f"{DIR_NAME}.old-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
        os.replace(root, aside)
        ctx.note(f"run.resume=false: the earlier checkpoints were moved to {aside}; this run starts from step 0")
        return manager
    damaged: list[tuple[Path, str]] = []
    for step, path in found:
        reason = verify(path)
        if reason is None:
            break
        damaged.append((path, reason))
    else:
        path, reason = damaged[0]
        raise CheckpointError(
            f"checkpoint {path} is damaged: {reason}. Remove it (rm -r {path}) to start this job over, or re-run "
            f"with run.resume=false (the damaged checkpoint is then moved aside)")
    for bad, reason in damaged:  # a whole, older checkpoint exists: keep the damaged ones aside for inspection
        aside = bad.with_name(f"damaged-{bad.name}-{int(time.time())}")
        if main:
            os.replace(bad, aside)
        ctx.note(f"checkpoint {bad} is damaged ({reason}); moved to {aside} and resuming from the one before it")
    saved = json.loads((path / STATE).read_text())
    diff = config_diff(saved["config"], manager.config)
    if diff:
        shown = "; ".join(diff[:5]) + (f"; and {len(diff) - 5} more" if len(diff) > 5 else "")
        raise CheckpointError(
            f"checkpoint {path} was written by a different config ({shown}); re-run with the same overrides, give "
            f"this run its own hydra.run.dir, or set run.resume=false to start over (old checkpoints are moved aside)")
    manager.resume_from, manager.resumed_step = path, int(saved["step"])
    return manager


# -- save ----------------------------------------------------------------------------------------------------------

def _unwrap(module: Any) -> Any:
    import torch

    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def _optimizer_state(optimizer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(JSON part, tensors) of an optimizer's state_dict: tensors flattened to ``optimizer.<index>.<name>``."""
    import torch

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, entry in sd["state"].items():
        scalars[str(index)] = {}
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[str(index)][name] = value
    return {"param_groups": sd["param_groups"], "state": scalars}, tensors


def _rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}, tensors


def _parameters_covered(state: TrainingState) -> None:
    if state.stepper is None:
        return
    owned = {id(p) for m in state.modules.values() if m is not None for p in _unwrap(m).parameters()}
    stray = [p for p in state.stepper.params if id(p) not in owned]
    if stray:
        raise RuntimeError(f"checkpoint: {len(stray)} optimized parameters belong to no module in "
                           "TrainingState.modules; add their module so that resuming restores them")


def write(ctx: Any, state: TrainingState, step: int, path: Path) -> None:
    """Write the checkpoint of ``step`` into the (new, empty) directory ``path`` and fsync it."""
    from safetensors.torch import save_file, save_model

    from alignzoo.record import _json_default

    path.mkdir(parents=True)
    files = []
    for name, module in state.modules.items():
        if module is not None:
            save_model(_unwrap(module), str(path / f"{name}.safetensors"))
            files.append(f"{name}.safetensors")
    tensors: dict[str, Any] = {}
    payload: dict[str, Any] = {"format": FORMAT, "step": step, "config": training_config(ctx.record.config)}
    if state.stepper is not None:
        payload["optimizer"], opt_tensors = _optimizer_state(state.stepper.optimizer)
        tensors.update(opt_tensors)
        payload["scheduler"] = state.stepper.scheduler.state_dict()
        scaler = getattr(state.stepper, "scaler", None)  # fp16's loss scale
        if scaler is not None:
            payload["grad_scaler"] = scaler.state_dict()
    payload["rng"], rng_tensors = _rng_state()
    tensors.update(rng_tensors)
    for name, gen in state.generators.items():
        if gen is not None:
            tensors[f"generator.{name}"] = gen.get_state()
    payload["objects"] = {name: obj.state_dict() for name, obj in state.objects.items() if obj is not None}
    payload["run"] = {**ctx.progress_state(), "saved_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    save_file(tensors, str(path / TENSORS))
    files.append(TENSORS)
    (path / STATE).write_text(json.dumps(payload, default=_json_default))
    files.append(STATE)
    manifest = {"format": FORMAT, "step": step, "files": manifests.describe(path, files)}
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    for f in [*files, MANIFEST]:
        _fsync(path / f)
    _fsync(path)


def save(ctx: Any, state: TrainingState, step: int) -> Optional[Path]:
    """Save the checkpoint of ``step`` atomically and prune old ones; a failed write (e.g. a full disk) is noted
    in the record and training goes on, with the previous checkpoint kept."""
    from alignzoo.distributed import is_main_process

    manager: Checkpoints = ctx.checkpoints
    if not is_main_process():
        return None
    _parameters_covered(state)
    final = manager.root / f"step-{step:08d}"
    tmp = manager.root / f".tmp-step-{step:08d}-{os.getpid()}"
    old = manager.root / f".tmp-old-{final.name}-{os.getpid()}"
    try:
        manager.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        write(ctx, state, step, tmp)
        if final.exists():  # a checkpoint of the same step from an earlier attempt: replace it
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        _fsync(manager.root)
    except Exception as exc:  # noqa: BLE001 - only the disk's failures are survivable; the rest is re-raised
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():  # the rename failed after the earlier one was moved: put it back
            os.replace(old, final)
        if not (isinstance(exc, OSError) or manifests.is_disk_error(exc)):
            raise
        kept = next((str(p) for s, p in manager.complete() if s != step), None)
        ctx.note(f"warning: the checkpoint of step {step} could not be written ({type(exc).__name__}: {exc}); "
                 f"{'kept ' + kept if kept else 'no earlier checkpoint exists'}; training goes on. Free space in "
                 f"{manager.root} or lower run.checkpoint_every")
        return None
    for _, old_path in manager.complete()[manager.keep:]:
        shutil.rmtree(old_path, ignore_errors=True)
    log.debug("checkpoint: step %d saved to %s", step, final)
    return final


def save_if_due(ctx: Any, state: TrainingState, step: int) -> Optional[Path]:
    """Save after ``step`` when ``run.checkpoint_every`` divides it, and after the last step."""
    manager = getattr(ctx, "checkpoints", None)
    if manager is None or manager.every <= 0:
        return None
    if step % manager.every == 0 or step == ctx.train.steps:
        return save(ctx, state, step)
    return None


# -- load ----------------------------------------------------------------------------------------------------------

def _load_optimizer(optimizer: Any, saved: dict[str, Any], tensors: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in saved["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in saved["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _restore_rng(saved: dict[str, Any], tensors: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


def load(ctx: Any, state: TrainingState, path: Path) -> int:
    """Restore ``state`` and the run's own state from the checkpoint at ``path``; returns its step. A whole
    checkpoint that does not fit this job's modules (another model shape, another loop) stops it with a message."""
    try:
        return _load(ctx, state, path)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint {path} does not fit this job ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); it "
            "was written by other code or another model. Re-run with run.resume=false to start over (old "
            "checkpoints are moved aside) or give this run its own hydra.run.dir") from None


def _load(ctx: Any, state: TrainingState, path: Path) -> int:
    from safetensors.torch import load_file, load_model

    saved = json.loads((path / STATE).read_text())
    for name, module in state.modules.items():
        if module is None:
            continue
        file = path / f"{name}.safetensors"
        if not file.is_file():
            raise CheckpointError(f"checkpoint {path} has no {file.name}: it was written by a loop without a "
                                  f"{name!r} module; re-run with the same config or run.resume=false")
        target = _unwrap(module)
        device = next(target.parameters()).device if any(True for _ in target.parameters()) else "cpu"
        load_model(target, str(file), strict=True, device=str(device))
    tensors = load_file(str(path / TENSORS))
    if state.stepper is not None:
        _load_optimizer(state.stepper.optimizer, saved["optimizer"], tensors)
        state.stepper.scheduler.load_state_dict(saved["scheduler"])
        scaler = getattr(state.stepper, "scaler", None)
        if scaler is not None and "grad_scaler" in saved:
            scaler.load_state_dict(saved["grad_scaler"])
    for name, gen in state.generators.items():
        if gen is not None:
            gen.set_state(tensors[f"generator.{name}"])
    for name, obj in state.objects.items():
        if obj is not None and name in saved["objects"]:
            obj.load_state_dict(saved["objects"][name])
    ctx.restore_progress(saved["run"])
    _restore_rng(saved["rng"], tensors)
    return int(saved["step"])


def resume(ctx: Any, state: TrainingState) -> int:
    """Continue from the job's last complete checkpoint when there is one: returns the step it was written at
    (the loop goes on from the next), or 0 for a fresh start. The record notes the resume."""
    manager = getattr(ctx, "checkpoints", None)
    if manager is None or manager.resume_from is None:
        return 0
    path = manager.resume_from
    step = load(ctx, state, path)
    manager.resume_from = None  # a second loop in the same job starts fresh
    ctx.note(f"resumed from checkpoint {path} at step {step} of {ctx.train.steps}")
    return step

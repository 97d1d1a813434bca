"""``run_job(cfg, job_dir) -> RunRecord``: the one pipeline every job follows.

1. seed everything and set torch threads (a multirun shares one process, so every job resets them);
2. validate the whole config at once (every problem, with its key and fix);
3. build task, model, reward, evaluators and loggers from the registries by name; let the pipeline's stages
   (``alignzoo.pipeline``) turn the initial model into the starting (SFT) policy; freeze a copy as the reference;
4. evaluate the starting policy, ``algo.train(...)``, evaluate the result;
5. write ``record.json`` atomically, finish the loggers, fire ``alignzoo_run_end``.

A job never raises out of ``run_job`` (unless ``run.fail_fast``): a failure becomes a ``failed`` record with the
error and traceback, and keeps everything measured before it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
import random
import resource
import subprocess
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from alignzoo import checkpoint, distributed, plugins
from alignzoo.config import validate
from alignzoo.context import RunContext, build_context, is_main_process, job_device
from alignzoo.errors import AlignzooError, ConfigError
from alignzoo.record import RECORD_FILE, RunRecord, read_record, write_record

__all__ = ["RunContext", "is_main_process", "needs_reward", "run_job"]  # RunContext: re-exported for plugins

log = logging.getLogger("alignzoo")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("alignzoo", "torch", "transformers", "datasets", "hydra-core", "wandb"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _git_sha() -> Optional[str]:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _peak_memory_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mb = kb / 1024
    try:
        import torch

        if torch.cuda.is_available():
            mb = max(mb, torch.cuda.max_memory_allocated() / 2**20)
    except Exception:  # noqa: BLE001
        pass
    return round(mb, 1)


def _quiet_libraries() -> None:
    # per-file progress bars of transformers / datasets drown the run's own progress and logs
    import datasets
    import transformers

    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def _seed_everything(seed: int, threads: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)


_device = job_device  # the labeling app and older plugins import it from here


def needs_reward(algo_entry: Any) -> bool:
    """Whether an algorithm optimizes against a reward model: its config class declares ``ONLINE = True``
    (online RL) or ``NEEDS_REWARD = True`` (e.g. offline RL on reward-scored data)."""
    cls = algo_entry.config_class
    return bool(getattr(cls, "ONLINE", False) or getattr(cls, "NEEDS_REWARD", False))


def _check_context(ctx: RunContext) -> None:
    """Lengths that do not fit the model's context (they would fail deep in a forward pass): every one at once."""
    limit = ctx.policy.max_length
    algo = ctx.built["algo"]
    problems = []
    for key, value in (("eval.max_new_tokens", ctx.eval_cfg.max_new_tokens),
                       ("algo.max_new_tokens", getattr(algo, "max_new_tokens", None))):
        if isinstance(value, int) and value >= limit:
            problems.append(f"{key}={value} leaves no room for a prompt in the model's {limit}-token context; set "
                            f"it below {limit} (or use a model with a longer context)")
    max_length = getattr(algo, "max_length", None)
    if isinstance(max_length, int) and max_length > limit:
        problems.append(f"algo.max_length={max_length} is longer than the model's {limit}-token context; set it "
                        f"to at most {limit}, or null for the model's context")
    if problems:
        raise ConfigError(problems)


def _build_components(ctx: RunContext) -> None:
    from alignzoo.pipeline import build_policy

    regs, c, built = ctx.registries, ctx.cfg, ctx.built
    build_policy(ctx)  # the task, the model, and the pipeline's starting policy (pretrain, SFT)
    lora = getattr(built["model"], "lora", None)
    lora = lora if lora is not None and lora.r > 0 else None
    if lora is None:
        ctx.reference = ctx.policy.frozen_copy("reference")
    if built.get("reward") is not None:
        from alignzoo.rewards.checked import checked

        ctx.reward = checked(regs["reward"].get(c.reward.name).factory(built["reward"], ctx), c.reward.name)
    elif needs_reward(regs["algo"].get(c.algo.name)) and "learned" in regs["reward"]:
        # online optimizers (and offline ones scored by a reward model) need a reward: by default, a reward model
        # learned from the task's feedback
        ctx.note("no reward configured: using a learned reward model trained on the task's feedback (reward=learned)")
        ctx.reward = ctx.build_reward("learned")
    for key, conf in built["evaluator"].items():
        evaluator = regs["evaluator"].get(conf.name).factory(conf, ctx)
        reason = evaluator.skip_reason(ctx) if hasattr(evaluator, "skip_reason") else None
        if reason:
            ctx.note(reason, quiet=True)
        else:
            ctx.evaluators[key] = evaluator
    if lora is not None:  # last: a reward model may copy the policy's backbone, which must not carry adapters
        from alignzoo.models.lora import add_adapters

        ctx.reference = add_adapters(ctx.policy, lora, seed=ctx.seed)  # the policy, adapters off: no second copy
        ctx.note(f"LoRA r={lora.r}: {ctx.policy.info['lora']['trainable']} trainable parameters in the policy; "
                 "the reference is the policy with its adapters off", quiet=True)


def run_job(cfg: DictConfig, job_dir: str | Path, *, overrides: Optional[list[str]] = None,
            group: Optional[str] = None) -> RunRecord:
    """Run one job and return its record (written to ``job_dir/record.json``); never raises unless fail_fast."""
    t0 = time.time()
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    state = plugins.load()
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - an unresolvable interpolation is reported by validation
        resolved = OmegaConf.to_container(cfg, resolve=False)
    name = lambda k: (cfg.get(k) or {}).get("name") if cfg.get(k) is not None else None  # noqa: E731
    record = RunRecord(
        run_id=f"{name('algo')}-s{cfg.get('seed')}-{uuid.uuid4().hex[:8]}", status="running",
        algo=name("algo"), task=name("task"), model=name("model"), reward=name("reward"), seed=cfg.get("seed"),
        budget=(cfg.get("budget") or {}).get("name"), config=resolved, overrides=list(overrides or []),
        versions=_versions(), git_sha=_git_sha(), started_at=dt.datetime.now(dt.timezone.utc).isoformat(),
        job_dir=str(job_dir),
    )
    ctx: Optional[RunContext] = None
    fail_fast = bool(OmegaConf.select(cfg, "run.fail_fast", default=False))
    try:
        built, problems = validate(cfg, state.registries)
        if problems:
            raise ConfigError(problems)
        record.config["labeler"] = dataclasses.asdict(built["labeler"])  # as applied (an algorithm may fix it)
        _seed_everything(cfg.seed, built["run"].threads)
        _quiet_libraries()
        engine = distributed.setup(device=built["run"].device, precision=built["run"].precision)
        ctx = build_context(cfg, built, state.registries, job_dir=job_dir, record=record, group=group)
        ctx.checkpoints = checkpoint.prepare(ctx)  # a damaged or foreign checkpoint stops the job here
        if is_main_process():
            for key, conf in built["logger"].items():
                ctx.loggers.append(state.registries["logger"].get(conf.name).factory(conf, ctx))
        if engine.distributed or engine.precision != "fp32":
            ctx.note(f"{engine.world_size} process(es), {engine.precision} on {ctx.device}")
        with engine.main_first():  # under a launcher, rank 0 builds the pipeline stages; the others then reuse them
            _build_components(ctx)
        _seed_everything(cfg.seed, built["run"].threads)  # the same RNG state whether stages were built or reused
        _check_context(ctx)
        with engine.autocast():
            if ctx.eval_cfg.at_start and ctx.checkpoints.resume_from is None:  # resuming: the history is saved
                ctx.evaluate(ctx.policy, 0)
            algo_entry = state.registries["algo"].get(cfg.algo.name)
            if ctx.reward is not None:
                from alignzoo.rewards.learned import quality_gate

                quality_gate(ctx.reward, ctx, online=needs_reward(algo_entry))
            trained = algo_entry.factory(built["algo"], ctx)
            record.tokens = int(engine.sum(record.tokens))  # every rank's share
            if not (record.history and record.history[-1]["step"] == ctx.last_step):  # nothing trained since
                ctx.evaluate(trained if trained is not None else ctx.policy, ctx.last_step)
        record.status = "ok"
    except BaseException as exc:  # noqa: BLE001 - a job records its failure and returns (sweeps go on)
        record.status = "failed"
        record.error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc(),
                        "user_error": isinstance(exc, AlignzooError)}
        if isinstance(exc, (KeyboardInterrupt, SystemExit)) or fail_fast:
            _finish(record, ctx, t0, job_dir)
            raise
    _finish(record, ctx, t0, job_dir)
    return record


def _write(record: RunRecord, job_dir: Path) -> None:
    """Write ``record.json``. A failed attempt never replaces the ``ok`` record of an earlier one (it goes to
    ``record.failed.json``); a record that cannot be written (full disk, read-only directory) fails the job with a
    message that says so, and its metrics go to the log so that they are not lost."""
    name = RECORD_FILE
    if record.status == "failed" and (job_dir / RECORD_FILE).is_file():
        try:
            earlier_ok = read_record(job_dir).status == "ok"
        except (OSError, ValueError):
            earlier_ok = False
        if earlier_ok:
            name = "record.failed.json"
            record.notes.append(f"an earlier attempt's ok record is kept in {job_dir / RECORD_FILE}; this failed "
                                f"attempt's record is {job_dir / name}")
    try:
        record.written_to = write_record(record, job_dir, name=name)
    except OSError as exc:
        message = (f"could not write {job_dir / name}: {exc.strerror or exc}; free space on that disk or choose a "
                   f"writable output directory (hydra.run.dir=...). The run's metrics: {record.metrics}")
        log.error(message)
        record.notes.append(message)
        record.written_to = None
        if record.status == "ok":
            record.status = "failed"
            record.error = {"type": type(exc).__name__, "message": message, "traceback": "", "user_error": True}


def _finish(record: RunRecord, ctx: Optional[RunContext], t0: float, job_dir: Path) -> None:
    if ctx is not None:
        record.metrics = {**ctx._train_metrics, **ctx.extra_metrics,
                          **(record.history[-1] if record.history else {})}
        record.metrics.pop("step", None)
        from alignzoo.evaluators.overopt import describe, overoptimization

        flag = overoptimization(record.history)
        if flag is not None:
            record.metrics["eval/overoptimized"] = flag["overoptimized"]
            record.notes.append(describe(flag))
    record.wall_time_s = round(time.time() - t0, 3)
    record.peak_memory_mb = _peak_memory_mb()
    if is_main_process():
        _write(record, job_dir)
    for logger in (ctx.loggers if ctx is not None else []):
        try:
            logger.finish(record)
        except Exception as exc:  # noqa: BLE001 - a logger must not fail a finished job
            log.warning("logger %s failed to finish: %s", type(logger).__name__, exc)
    distributed.reset()
    if not is_main_process():
        return
    for err in plugins.call_run_end(record):
        log.warning("alignzoo_run_end hook failed: %s", err)

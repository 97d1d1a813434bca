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

import contextlib
import dataclasses
import datetime as dt
import logging
import math
import os
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
from alignzoo.context import RunContext, build_context, job_device  # noqa: F401 - RunContext re-exported
from alignzoo.distributed import is_main_process
from alignzoo.errors import AlignzooError, ConfigError, TrainingDivergedError
from alignzoo.models.pretrained import pretrained_lr
from alignzoo.record import RECORD_FILE, RunRecord, component_provenance, read_record, write_record

# RunContext: re-exported for plugins
__all__ = ["RunContext", "is_main_process", "needs_reference", "needs_reward", "run_job"]

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


def needs_reference(algo_entry: Any) -> bool:
    """Whether an algorithm uses a reference policy: True unless its config class declares
    ``needs_reference = False`` (e.g. SimPO, ORPO, plain SFT). Without one the run builds no frozen copy of the
    policy (half the weights' memory for a full fine-tune), ``ctx.reference`` is None and evaluators that compare with
    the reference (``NEEDS_REFERENCE = True`` on their class: kl, win_rate, judge_win_rate, preference_accuracy) are
    skipped with a note."""
    return bool(getattr(algo_entry.config_class, "needs_reference", True))


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
    with_reference = needs_reference(regs["algo"].get(c.algo.name))
    if lora is None and with_reference:
        ctx.reference = ctx.policy.frozen_copy("reference")
    elif not with_reference:
        ctx.note(f"algo={c.algo.name} declares needs_reference = False: no reference policy was built", quiet=True)
    if built.get("reward") is not None:
        from alignzoo.rewards.checked import checked

        ctx.reward = checked(regs["reward"].build(built["reward"], ctx), c.reward.name)
    elif needs_reward(regs["algo"].get(c.algo.name)) and getattr(ctx.task, "default_reward", None) in regs["reward"]:
        # a task with a checker (verifiable rewards) names its reward: optimize that, not a model learned from it
        name = ctx.task.default_reward
        ctx.note(f"no reward configured: task={ctx.task.name} checks its answers, so reward={name} scores them")
        ctx.reward = ctx.build_reward(name)
    elif needs_reward(regs["algo"].get(c.algo.name)) and "learned" in regs["reward"]:
        # online optimizers (and offline ones scored by a reward model) need a reward: by default, a reward model
        # learned from the task's feedback
        ctx.note("no reward configured: using a learned reward model trained on the task's feedback (reward=learned)")
        ctx.reward = ctx.build_reward("learned")
    for key, conf in built["evaluator"].items():
        evaluator = regs["evaluator"].build(conf, ctx)
        reason = evaluator.skip_reason(ctx) if hasattr(evaluator, "skip_reason") else None
        if not reason and not with_reference and getattr(evaluator, "NEEDS_REFERENCE", False):
            reason = (f"evaluator {key} skipped: it compares with the reference policy, and algo={c.algo.name} "
                      "builds none (needs_reference = False)")
        if reason:
            ctx.note(reason, quiet=True)
        else:
            ctx.evaluators[key] = evaluator
    if lora is not None:  # last: a reward model may copy the policy's backbone, which must not carry adapters
        from alignzoo.models.lora import add_adapters

        reference = add_adapters(ctx.policy, lora, seed=ctx.seed)  # the policy, adapters off: no second copy
        ctx.reference = reference if with_reference else None
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
        record.components = component_provenance(built, state.registries, state.plugins)
        for message in pretrained_lr(built, record.overrides, record.config):  # before checkpoints compare configs
            record.notes.append(message)
            (log.warning if message.startswith("warning:") else log.info)(message)
        _seed_everything(cfg.seed, built["run"].threads)
        _quiet_libraries()
        engine = distributed.setup(device=built["run"].device, precision=built["run"].precision)
        ctx = build_context(cfg, built, state.registries, job_dir=job_dir, record=record, group=group)
        ctx.checkpoints = checkpoint.prepare(ctx)  # a damaged or foreign checkpoint stops the job here
        if is_main_process():
            for key, conf in built["logger"].items():
                ctx.loggers.append(state.registries["logger"].build(conf, ctx))
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
            started = time.perf_counter()
            trained = state.registries["algo"].build(built["algo"], ctx)
            if not record.perf:  # no optimizer steps through the shared loop (sft, best-of-N)
                record.perf = {"steps": 0, "train_s": round(time.perf_counter() - started, 4), "tokens": 0,
                               "s_per_step": None, "tokens_per_s": None}
            record.tokens = int(engine.sum(record.tokens))  # every rank's share
            if not (record.history and record.history[-1]["step"] == ctx.last_step):  # nothing trained since
                ctx.evaluate(trained if trained is not None else ctx.policy, ctx.last_step)
        _check_finite(_final_metrics(ctx), ctx.last_step)
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


def _final_metrics(ctx: RunContext) -> dict[str, Any]:
    """The record's final metrics: the last train/* values, final-only extras and the last evaluation."""
    metrics = {**ctx._train_metrics, **ctx.extra_metrics, **(ctx.record.history[-1] if ctx.record.history else {})}
    metrics.pop("step", None)
    return metrics


def _check_finite(metrics: dict[str, Any], step: int) -> None:
    """A run whose final train/* or eval/* metric is NaN or inf diverged: it is ``failed``, not ``ok``."""
    bad = {k: v for k, v in metrics.items() if k.startswith(("train/", "eval/")) and isinstance(v, float)
           and not math.isfinite(v)}
    if bad:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(bad.items()))
        raise TrainingDivergedError(
            f"the run diverged: {shown} at step {step}; lower the learning rate (algo.lr), clip gradients "
            "(train.max_grad_norm=1.0), or check the reward and the data for NaN/inf values")


def _earlier_ok(job_dir: Path) -> Optional[RunRecord]:
    try:
        earlier = read_record(job_dir)
    except (OSError, ValueError, TypeError):
        return None
    return earlier if earlier.status == "ok" else None


def _why_started_over(earlier: RunRecord, record: RunRecord, settings: Any) -> str:
    diff = checkpoint.config_diff(checkpoint.training_config(earlier.config),
                                  checkpoint.training_config(record.config))
    if diff:
        return "this attempt has another config: " + "; ".join(diff[:3]) + ("; ..." if len(diff) > 3 else "")
    if settings is not None and not settings.resume:
        return "run.resume=false"
    return "this attempt started over: it had no checkpoint of that run to continue from"


def _unused_name(job_dir: Path) -> str:
    """``record.<time>.json``, not yet taken: a name ``alignzoo board build`` does not read."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    name, n = f"record.{stamp}.json", 1
    while (job_dir / name).exists():
        name, n = f"record.{stamp}-{n}.json", n + 1
    return name


def _write(record: RunRecord, job_dir: Path, *, continued: bool = False, settings: Any = None) -> None:
    """Write ``record.json``. An earlier attempt's ``ok`` record is never overwritten silently: a failed attempt
    goes to ``record.failed.json``, and an ok attempt that did not continue that run (``continued``: it resumed from
    its checkpoint) moves it to ``record.<time>.json`` first and names it in the notes. A record that cannot be
    written (full disk, read-only directory) fails the job with a message that says so, and its metrics go to the
    log so that they are not lost."""
    name, aside = RECORD_FILE, None
    earlier = _earlier_ok(job_dir) if (job_dir / RECORD_FILE).is_file() else None
    if earlier is not None and record.status == "failed":
        name = "record.failed.json"
        record.notes.append(f"an earlier attempt's ok record is kept in {job_dir / RECORD_FILE}; this failed "
                            f"attempt's record is {job_dir / name}")
    elif earlier is not None and not continued:
        why, kept = _why_started_over(earlier, record, settings), job_dir / _unused_name(job_dir)
        try:
            os.replace(job_dir / RECORD_FILE, kept)
        except OSError:  # the earlier record cannot move: it stays where it is and this one takes the other name
            name = kept.name
            record.notes.append(f"the earlier attempt's ok record stays in {job_dir / RECORD_FILE} ({why}); this "
                                f"attempt's record is {kept}")
        else:
            aside = kept
            record.notes.append(f"the earlier attempt's ok record was kept as {kept} ({why}); this attempt's "
                                f"record is {job_dir / RECORD_FILE}")
    try:
        record.written_to = write_record(record, job_dir, name=name)
    except OSError as exc:
        if aside is not None:  # put the earlier record back rather than leave no record.json
            with contextlib.suppress(OSError):
                os.replace(aside, job_dir / RECORD_FILE)
                record.notes.pop()
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
        record.metrics = _final_metrics(ctx)
        from alignzoo.evaluators.overopt import describe, overoptimization

        flag = overoptimization(record.history)
        if flag is not None:
            record.metrics["eval/overoptimized"] = flag["overoptimized"]
            record.notes.append(describe(flag))
    record.wall_time_s = round(time.time() - t0, 3)
    record.peak_memory_mb = _peak_memory_mb()
    if is_main_process():
        manager = ctx.checkpoints if ctx is not None else None
        continued = manager is not None and manager.resumed_step is not None and manager.resume_from is None
        _write(record, job_dir, continued=continued, settings=ctx.built.get("run") if ctx is not None else None)
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

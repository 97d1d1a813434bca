"""alignzoo's own step code under the benchmark's clock: ``dpo.train`` and ``ppo.train`` / ``a2c.train`` (PPO, A2C,
on ``training.loop``) exactly as a run calls them, on a real ``RunContext`` whose config is composed by Hydra like
``alignzoo run`` does; and the rollout engine (``rollout.generate``). The only addition is a timestamp each time the
loop logs a step."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import SHAPES, Shapes, StepClock, build_model, build_tokenizer, preference_rows, prompt_texts


class BenchTask:
    """The benchmark's data behind the task interface the algorithms use."""

    name = "bench"

    def __init__(self, shapes: Shapes, response_len: int | None = None, pairs: int | None = None):
        self.shapes, self.response_len, self.pairs = shapes, response_len, pairs

    def preference_data(self, policy: Any) -> Any:
        import datasets

        rows = preference_rows(self.shapes, n=self.pairs, response_len=self.response_len)
        return datasets.Dataset.from_dict(rows)

    def train_prompts(self, policy: Any) -> list[str]:
        return prompt_texts(self.shapes)


def make_context(algo: str, overrides: list[str], clock: StepClock, *, task: Any, seed: int = 0,
                 device: str = "cpu", precision: str = "fp32") -> Any:
    """A ``RunContext`` like ``run_job`` builds (composed + validated config, the job's engine with its device and
    precision), with the bench policy and task, no loggers and no evaluation; ``ctx.log`` also marks the clock.
    Run the algorithm inside ``ctx.engine.autocast()``, as ``run_job`` does."""
    import torch

    from alignzoo import distributed, plugins
    from alignzoo.config import validate
    from alignzoo.models.base import Policy
    from alignzoo.record import RunRecord
    from alignzoo.run import RunContext
    from alignzoo.testing import compose_config

    cfg = compose_config(["task=sentiment", "model=tiny", f"algo={algo}", "budget=smoke", "train.eval_every=0",
                          "eval.at_start=false", f"seed={seed}", f"run.device={device}", *overrides])
    state = plugins.load()
    built, problems = validate(cfg, state.registries)
    if problems:
        raise ValueError(f"benchmark config does not validate: {problems}")

    class TimedContext(RunContext):
        def log(self, metrics: dict[str, float], step: int) -> None:
            super().log(metrics, step)
            self.logged.append(dict(metrics))
            clock.mark()

    engine = distributed.setup(device=device, precision=precision)
    job_dir = Path(tempfile.mkdtemp(prefix="alignzoo-bench-"))
    ctx = TimedContext(cfg=cfg, job_dir=job_dir, seed=seed, device=torch.device(device), train=built["train"],
                       eval_cfg=built["eval"], budget=built["budget"], record=RunRecord("bench", "running"),
                       registries=state.registries, built=built)
    ctx.logged, ctx.engine = [], engine
    tokenizer = build_tokenizer(task.shapes.vocab)
    ctx.task = task
    ctx.policy = Policy(build_model(seed, task.shapes, tokenizer).to(device), tokenizer, name="bench")
    ctx.reference = ctx.policy.frozen_copy("reference")
    return ctx


def dpo(steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, batch: int | None = None,
        response_len: int | None = None, device: str = "cpu", precision: str = "fp32") -> dict[str, Any]:
    """``steps`` steps of alignzoo's DPO (``algos.dpo.train``: collate, one concatenated policy forward, one
    reference forward, sigmoid loss, AdamW, clipping at 1.0, metrics)."""
    from alignzoo.algos import dpo as algo

    batch = batch or shapes.dpo_pairs
    task = BenchTask(shapes, response_len, pairs=max(shapes.dataset_pairs, 8 * batch))
    ctx = make_context("dpo", [f"train.steps={steps}", f"train.batch_size={batch}", f"algo.beta={shapes.beta_dpo}",
                               f"algo.lr={shapes.lr}", "train.max_grad_norm=1.0"], clock, task=task,
                       device=device, precision=precision)
    with ctx.engine.autocast():
        algo.train(ctx.built["algo"], ctx)
    return {"final_loss": ctx.logged[-1]["train/loss"]}


def online(algo_name: str, steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, epochs: int | None = None,
           device: str = "cpu", precision: str = "fp32") -> dict[str, Any]:
    """``steps`` iterations of alignzoo's PPO or A2C (``ppo.train`` / ``a2c.train``): sample 16 x 64 tokens with the
    rollout engine, VADER score, policy/value and reference forwards, KL-shaped rewards, GAE, then the update."""
    from alignzoo.algos import a2c, ppo
    from alignzoo.rewards.rule import VaderConfig, VaderReward

    overrides = [f"train.steps={steps}", f"train.batch_size={shapes.completions}",
                 f"algo.max_new_tokens={shapes.new_tokens}", f"algo.kl_coef={shapes.beta_online}",
                 f"algo.lr={shapes.lr}", "train.max_grad_norm=1.0"]
    if epochs is not None:
        overrides.append(f"algo.epochs={epochs}")
    ctx = make_context(algo_name, overrides, clock, task=BenchTask(shapes), device=device, precision=precision)
    ctx.reward = VaderReward(VaderConfig())
    with ctx.engine.autocast():
        (ppo if algo_name == "ppo" else a2c).train(ctx.built["algo"], ctx)
    lengths = [m["train/length"] for m in ctx.logged[clock.warmup + 1:]]
    return {"completion_tokens_per_step": shapes.completions * sum(lengths) / max(1, len(lengths)),
            "final_reward": ctx.logged[-1]["train/reward"]}


def rollout_engine(steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, batch: int | None = None,
                   device: str = "cpu", precision: str = "fp32") -> dict:
    """``steps`` batches of sampling with ``alignzoo.rollout.generate`` (KV cache, temperature 1, EOS stop)."""
    import torch

    from alignzoo import distributed
    from alignzoo import rollout as ro

    engine = distributed.setup(device=device, precision=precision)
    tokenizer = build_tokenizer(shapes.vocab)
    model = build_model(0, shapes, tokenizer).to(device)
    batch = batch or shapes.completions
    prompts = [list(ids) for ids in tokenizer(prompt_texts(shapes, n=batch))["input_ids"]]
    gen = torch.Generator(device=device).manual_seed(0)
    tokens = 0
    clock.mark()
    for _ in range(steps - 1):
        with engine.autocast():
            r = ro.generate(model, prompts, eos_id=tokenizer.eos_token_id, pad_id=tokenizer.pad_token_id,
                            max_new_tokens=shapes.new_tokens, temperature=1.0, generator=gen)
        tokens += int(r.completion_mask.sum())
        clock.mark()
    return {"completion_tokens_per_step": tokens / max(1, steps - 1)}

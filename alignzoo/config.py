"""The top-level config schema and the one validation pass that reports every problem at once.

Component configs (``algo``, ``task``, ``labeler``, ...) are the registered dataclasses; this module holds what
every run shares: ``seed``, ``train`` (the loop), ``eval`` (sampling for evaluators), ``budget`` (compute),
``pipeline`` (the sizes of the pipeline's stages) and ``run`` settings.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import II, MISSING, DictConfig, OmegaConf

from alignzoo.distributed import PRECISIONS, device_problem
from alignzoo.registry import KINDS, MULTI_KINDS, Registries, to_dataclass, unknown_message
from alignzoo.training import OPTIMIZERS, SCHEDULES


@dataclass
class BudgetConfig:
    """How much compute a run spends on its optimizer and evaluations; `budget=smoke|quick|standard` picks a
    preset (which also sizes the pipeline's stages, ``pipeline.*``). Defaults are the smoke preset's."""

    name: str = "smoke"
    steps: int = 10  # optimizer steps of the algorithm
    batch_size: int = 16  # examples (pairs or prompts) per optimizer step
    eval_prompts: int = 64  # held-out prompts sampled at each evaluation
    eval_max_new_tokens: int = 16  # tokens sampled per completion at evaluation
    eval_every: int = 0  # evaluate every N steps (0: only at the start and the end)
    rm_min_accuracy: float = 0.0  # reward-model quality gate before online RL: held-out pairwise accuracy
    rm_min_gold_spearman: float = -1.0  # ... and Spearman correlation with the gold reward (tasks that have one)

    def problems(self) -> list[str]:
        return [f"{k} must be >= 1 (got {getattr(self, k)})"
                for k in ("steps", "batch_size", "eval_prompts", "eval_max_new_tokens") if getattr(self, k) < 1]


@dataclass
class PipelineConfig:
    """The stages that make the starting policy and the feedback (``alignzoo.pipeline``): pretraining on the
    task's corpus, SFT on its demonstrations, K completions per feedback prompt for the labeler. Budget presets
    set the sizes; defaults are the smoke preset's."""

    corpus_size: int = 20000  # sentences a generated corpus holds (task=sentiment)
    pretrain_steps: int = 120  # base-model pretraining steps (32 rows x 64 tokens each); random-init models only
    pretrain_lr: float = 2e-3
    sft_steps: int = 20  # supervised fine-tuning steps on the task's demonstrations (batch 32)
    sft_lr: float = 5e-4
    feedback_prompts: int = 128  # prompts whose completions the labeler judges (tasks that draw them)
    completions_per_prompt: int = 2  # K completions ranked per feedback prompt (K = 2: pairs)
    max_new_tokens: int = II("budget.eval_max_new_tokens")  # tokens per feedback completion
    stage_seed: int = 0  # seed of every stage (shared by the run seeds of a sweep, so stages are reused)
    model_width: int = 64  # hidden width of model=tiny, which the pipeline pretrains
    model_layers: int = 2  # layers of that model
    vocab_size: int = 1024  # BPE vocabulary of its tokenizer

    def problems(self) -> list[str]:
        out = [f"{k} must be >= 1 (got {getattr(self, k)})"
               for k in ("corpus_size", "feedback_prompts", "model_width", "model_layers", "vocab_size")
               if getattr(self, k) < 1]
        out += [f"{k} must be >= 0 (got {getattr(self, k)})"
                for k in ("pretrain_steps", "sft_steps", "max_new_tokens") if getattr(self, k) < 0]
        if self.completions_per_prompt < 2:
            out.append(f"completions_per_prompt must be >= 2 (got {self.completions_per_prompt})")
        if self.pretrain_lr <= 0 or self.sft_lr <= 0:
            out.append("pretrain_lr and sft_lr must be > 0")
        return out


@dataclass
class TrainConfig:
    """The training loop every algorithm shares (learning rates live in each algorithm's config)."""

    steps: int = II("budget.steps")  # optimizer steps
    batch_size: int = II("budget.batch_size")  # examples per optimizer step (before accumulation)
    grad_accum: int = 1  # micro-batches per step; batch_size must be divisible by it
    max_grad_norm: float = 1.0  # clip the global gradient norm (0: no clipping)
    optimizer: str = "adamw"  # adamw | adam | rmsprop | sgd
    weight_decay: float = 0.0
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # Adam betas
    eps: float = 1e-8  # Adam / RMSprop epsilon
    scheduler: str = "constant"  # constant | linear | cosine (after warmup)
    warmup_steps: int = 0
    eval_every: int = II("budget.eval_every")  # evaluate every N steps (0: start and end only)

    def problems(self) -> list[str]:
        out = []
        for k in ("steps", "batch_size", "grad_accum"):
            if getattr(self, k) < 1:
                out.append(f"{k} must be >= 1 (got {getattr(self, k)})")
        if self.grad_accum >= 1 and self.batch_size % self.grad_accum:
            out.append(f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}")
        if self.optimizer not in OPTIMIZERS:
            out.append(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.scheduler not in SCHEDULES:
            out.append(f"scheduler must be one of {', '.join(SCHEDULES)} (got {self.scheduler!r})")
        if self.max_grad_norm < 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.eval_every < 0:
            out.append("max_grad_norm, weight_decay, warmup_steps and eval_every must be >= 0")
        return out


@dataclass
class EvalConfig:
    """How evaluators' samples are drawn."""

    num_prompts: int = II("budget.eval_prompts")
    max_new_tokens: int = II("budget.eval_max_new_tokens")
    temperature: float = 1.0  # T = 1 so that the sampled KL is the KL of the policy itself
    batch_size: int = 64  # prompts sampled at once
    seed: Optional[int] = None  # sampling seed; None: the run's seed (policy and reference share it: paired)
    at_start: bool = True  # also evaluate the starting policy (step 0), the reference point of every curve

    def problems(self) -> list[str]:
        out = [f"{k} must be >= 1" for k in ("num_prompts", "max_new_tokens", "batch_size") if getattr(self, k) < 1]
        if self.temperature < 0:
            out.append(f"temperature must be >= 0 (got {self.temperature})")
        return out


@dataclass
class RunSettings:
    threads: int = 1  # torch threads; 1 is fastest on a shared 2-core machine
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto under a launcher: each rank's own GPU, else the CPU)
    precision: str = "auto"  # auto (bf16 autocast on a GPU that has it, fp32 on the CPU) | fp32 | bf16 | fp16 (GPU)
    cache_dir: str = "${oc.env:ALIGNZOO_CACHE,.alignzoo_cache}"  # pipeline-stage cache, shared by runs
    fail_fast: bool = False  # re-raise a failed job's error (stops a sweep) instead of recording it
    checkpoint_every: int = 0  # save the training state every N optimizer steps and at the last (0: never)
    checkpoint_keep: int = 1  # complete checkpoints kept in <job dir>/checkpoints (older ones are deleted)
    resume: bool = True  # continue from the last complete checkpoint in the job directory when there is one

    def problems(self) -> list[str]:
        out = [] if self.threads >= 1 else [f"threads must be >= 1 (got {self.threads})"]
        if self.checkpoint_every < 0:
            out.append(f"checkpoint_every must be >= 0 (got {self.checkpoint_every}); 0 turns checkpoints off")
        if self.checkpoint_keep < 1:
            out.append(f"checkpoint_keep must be >= 1 (got {self.checkpoint_keep})")
        device = device_problem(self.device)  # a device this machine lacks fails here, not deep in torch
        if device:
            out.append(device)
        if self.precision not in PRECISIONS:
            out.append(f"precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r}); e.g. "
                       "run.precision=auto")
        return out


@dataclass
class AlignzooConfig:
    seed: int = 0
    algo: Any = MISSING
    task: Any = MISSING
    model: Any = MISSING
    reward: Any = None
    critic: Any = None
    labeler: Any = None  # a registered labeler (labeler=<name>); conf/config.yaml picks simulated
    evaluator: Dict[str, Any] = field(default_factory=dict)
    logger: Dict[str, Any] = field(default_factory=dict)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunSettings = field(default_factory=RunSettings)


# What a config may make Hydra import (an exact allowlist of objects, checked on the resolved config): see
# alignzoo/safety.py; re-exported here, where it used to live.
from alignzoo.safety import untrusted_targets  # noqa: E402,F401


def store_schema() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="alignzoo_schema", node=AlignzooConfig, provider="alignzoo")


def _node_problems(prefix: str, node: Any, registries: Registries, kind: str) -> tuple[Any, list[str]]:
    if node is None:
        return None, []
    name = node.get("name") if hasattr(node, "get") else None
    if name is None:
        return None, [f"{prefix}: has no `name`; select a registered {kind} ({kind}=<name>)"]
    if name not in registries[kind]:
        return None, [f"{prefix}: " + unknown_message(kind, name, registries[kind].names())]
    entry = registries[kind].get(name)
    try:
        obj = to_dataclass(node, entry)
    except Exception as exc:  # noqa: BLE001 - missing mandatory values, type errors
        msg = str(exc).splitlines()[0]
        if "issing mandatory value" in msg:
            key = getattr(exc, "full_key", None) or msg.rsplit(":", 1)[-1].strip()
            key = key.split(".")[-1]
            return None, [f"{prefix}.{key} is required; set it on the command line ({prefix}.{key}=...)"]
        return None, [f"{prefix}: {msg}"]
    probs = obj.problems() if hasattr(obj, "problems") else []
    return obj, [f"{prefix}.{p}" for p in probs]


def validate(cfg: DictConfig, registries: Registries) -> tuple[dict[str, Any], list[str]]:
    """Every problem in the composed config, each with its full key and a fix; and the built dataclasses."""
    problems: list[str] = []
    built: dict[str, Any] = {}
    for kind in KINDS:
        if kind in MULTI_KINDS:
            entries = cfg.get(kind) or {}
            built[kind] = {}
            for key in entries:
                obj, p = _node_problems(f"{kind}.{key}", entries[key], registries, kind)
                problems += p
                built[kind][key] = obj
        else:
            obj, p = _node_problems(kind, cfg.get(kind), registries, kind)
            problems += p
            built[kind] = obj
    for key, cls in (("train", TrainConfig), ("eval", EvalConfig), ("budget", BudgetConfig), ("run", RunSettings),
                     ("pipeline", PipelineConfig)):
        try:
            obj = OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else cls(**cfg[key])
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{key}: {str(exc).splitlines()[0]}")
            continue
        built[key] = obj
        problems += [f"{key}.{p}" for p in obj.problems()]
    for kind in ("algo", "task", "model"):
        if cfg.get(kind) is None:
            problems.append(f"{kind} is not set; choose one with {kind}=<name>")
    problems += _apply_algo_labeler(built, registries, chosen=cfg.get("labeler") is not None)
    problems += [p for kind, obj in built.items() for p in _nonfinite_floats(kind, obj)]
    return built, problems


def _nonfinite_floats(key: str, value: Any, default: Any = MISSING) -> list[str]:
    """Every float in a built config (nested dataclasses, dicts and lists too) that is NaN or inf, with its full
    key: no learning rate, clip norm or coefficient means anything there, and comparisons like ``lr > 0`` let NaN
    through to a diverged run. A dataclass may allow it for named fields with ``NONFINITE_OK = ("field", ...)``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        allowed = getattr(type(value), "NONFINITE_OK", ())
        return [p for f in dataclasses.fields(value) if f.name not in allowed
                for p in _nonfinite_floats(f"{key}.{f.name}", getattr(value, f.name), f.default)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nonfinite_floats(f"{key}.{k}", v)]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _nonfinite_floats(f"{key}[{i}]", v)]
    if isinstance(value, float) and not math.isfinite(value):
        hint = (f"e.g. {key}={default} (the default)" if isinstance(default, (int, float)) and math.isfinite(default)
                else "set a finite value")
        return [f"{key}={value} must be a finite number; {hint}"]
    return []


def _apply_algo_labeler(built: dict[str, Any], registries: Registries, *, chosen: bool = True) -> list[str]:
    """An algorithm whose config class declares ``LABELER`` (rlaif: ``"critic"``) fixes who labels its feedback:
    it replaces the default labeler before anything reads the feedback; an explicit other labeler is a problem."""
    algo, labeler = built.get("algo"), built.get("labeler")
    if labeler is None:  # an invalid labeler node is reported already; `labeler=null` is not
        return [] if chosen else ["labeler is not set; choose one with labeler=<name> (labeler=dataset: the task's "
                                  "own pairs)"]
    wanted = getattr(type(algo), "LABELER", None)
    if wanted is None or labeler is None or labeler.name == wanted:
        return []
    if labeler.name != "simulated":
        what = {"critic": "AI feedback", "human": "human labels"}.get(wanted, f"labeler={wanted}")
        return [f"labeler={labeler.name}: algo={algo.name} learns from {what} (labeler={wanted}); drop "
                f"labeler={labeler.name} (or use algo=dpo to learn from those labels)"]
    built["labeler"] = registries["labeler"].get(wanted).config_class(name=wanted)
    return []

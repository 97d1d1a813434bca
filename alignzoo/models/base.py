"""Policy: a causal LM and its tokenizer, plus the encoding conventions every algorithm shares.

Conventions (the N+ implementation details): the pad token is distinct from EOS, so a trailing EOS is never
mistaken for padding; prompts are encoded with the tokenizer's special tokens (BOS where it has one),
completions without them and end with EOS when they ended (a completion cut at a length limit gets none, so
training never teaches the model to stop where it was only cut off).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch


@dataclass
class Policy:
    model: Any  # a transformers causal LM
    tokenizer: Any  # a transformers tokenizer (pad != eos)
    name: str = "policy"
    info: dict[str, Any] = field(default_factory=dict)  # provenance: stage hashes, source path
    #: a decoding-time perturbation of next-token logits, ``f(logits [B, V], hidden [B, d]) -> logits`` (e.g.
    #: ILQL's beta * (Q - V)); the rollout engine applies it, so evaluators see the same decoding
    adjust_logits: Optional[Callable[[Any, Any], Any]] = None
    #: replaces sampling altogether (best-of-N): ``f(prompts, *, max_new_tokens, temperature, batch_size, seed)
    #: -> list[Rollout]``; evaluators sample through it
    sampler: Optional[Callable[..., Any]] = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def max_length(self) -> int:
        cfg = self.model.config
        return int(getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 2048))

    def frozen_copy(self, name: str = "reference") -> "Policy":
        """A deep copy in eval mode with gradients off: the reference policy. A policy with LoRA adapters gives its
        own model with the adapters off instead (one copy of the base weights)."""
        from alignzoo.models.lora import has_adapters, reference_of

        if has_adapters(self.model):
            return reference_of(self, name)
        model = copy.deepcopy(self.model).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return Policy(model, self.tokenizer, name=name, info=dict(self.info))  # plain decoding: no adjust_logits

    def encode_prompts(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]

    def encode_completions(self, texts: list[str], ended: Optional[Sequence[bool]] = None) -> list[list[int]]:
        """Completion token ids; a completion that ended (``ended[i]``; default, and where a flag is None: ended)
        ends with exactly one EOS, one cut at a length limit (``ended[i]`` False) with none."""
        ended = [True] * len(texts) if ended is None else [e is None or bool(e) for e in ended]
        if len(ended) != len(texts):
            raise ValueError(f"encode_completions: {len(texts)} texts but {len(ended)} ended flags")
        out = []
        for ids, stop in zip(self.tokenizer(list(texts), add_special_tokens=False)["input_ids"], ended):
            ids = list(ids)
            if stop and (not ids or ids[-1] != self.eos_id):
                ids.append(self.eos_id)
            out.append(ids)
        return out

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)
        return directory


def load_policy(directory: str | Path, *, name: str = "policy", device: str | torch.device = "cpu",
                dtype: torch.dtype | None = None) -> Policy:
    """Load a causal LM directory saved by ``Policy.save`` (or any HF causal LM directory)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    ensure_pad_token(tokenizer)
    kwargs = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(directory, **kwargs).to(device).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    return Policy(model, tokenizer, name=name, info={"source": str(directory)})


def ensure_pad_token(tokenizer: Any) -> None:
    """Give the tokenizer a pad token distinct from EOS when it lacks one (adds ``<|pad|>`` if needed)."""
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if tokenizer.unk_token_id is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})


def resize_for_tokenizer(model: Any, tokenizer: Any) -> None:
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))

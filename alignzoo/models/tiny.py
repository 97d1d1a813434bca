"""``model=tiny``: a small GPT-2 built from a config (random init), with a BPE tokenizer trained on the task's text.

Used by tests and by the embedded task, whose pipeline stages pretrain it; about 0.2-5 M parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import II

from alignzoo.hookspecs import hookimpl
from alignzoo.models.base import Policy, ensure_pad_token, resize_for_tokenizer
from alignzoo.models.lora import LoraConfig


@dataclass
class TinyModelConfig:
    name: str = "tiny"
    n_layer: int = II("pipeline.model_layers")  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = II("pipeline.model_width")  # hidden width
    n_positions: int = 128  # context length in tokens
    vocab_size: int = II("pipeline.vocab_size")  # size of the BPE vocabulary trained on the task's text
    dropout: float = 0.0  # off by default: dropout breaks the DPO log-2 invariant and PPO's ratio = 1
    tokenizer: Optional[str] = None  # a tokenizer directory; None: the task's tokenizer or one trained on its text
    lora: LoraConfig = field(default_factory=LoraConfig)  # LoRA adapters for training (model.lora.r=8); r=0: off

    def problems(self) -> list[str]:
        out = []
        if self.n_embd % self.n_head:
            out.append(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        for key in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size"):
            if getattr(self, key) < 1:
                out.append(f"{key} must be >= 1 (got {getattr(self, key)})")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1) (got {self.dropout})")
        return out + [f"lora.{p}" for p in self.lora.problems()]


def build_tokenizer(cfg: TinyModelConfig, task: Any):
    from transformers import AutoTokenizer

    from alignzoo.models.tokenizer import train_bpe_tokenizer

    if cfg.tokenizer:
        tok = AutoTokenizer.from_pretrained(cfg.tokenizer)
        ensure_pad_token(tok)
        return tok
    own = getattr(task, "tokenizer", None)
    if callable(own):
        tok = own(cfg.vocab_size)
        if tok is not None:
            return tok
    texts = task.tokenizer_texts() if hasattr(task, "tokenizer_texts") else (task.corpus() or {}).get("train", [])
    return train_bpe_tokenizer(texts, cfg.vocab_size)  # a data-only task: its pretraining corpus


def build_tiny(cfg: TinyModelConfig, ctx: Any) -> Policy:
    """A randomly initialised GPT-2 of the configured size with a tokenizer for the task."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = build_tokenizer(cfg, ctx.task)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd, n_layer=cfg.n_layer,
        n_head=cfg.n_head, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(ctx.seed)
    model = GPT2LMHeadModel(config)
    resize_for_tokenizer(model, tokenizer)
    model.to(ctx.device).eval()
    return Policy(model, tokenizer, name="tiny", info={"init": "random", "params": count_params(model)})


def count_params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_models(register):
    register("tiny", build_tiny, TinyModelConfig, description="a small GPT-2 built from a config")

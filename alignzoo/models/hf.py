"""``model=hf``: any Hugging Face causal LM, from a local directory or (when online) a Hub name.

Both go through ``from_pretrained``; tests use a local directory. The tokenizer gets a pad token distinct from
EOS when it has none. ``trust_remote_code`` is the only way a model's own Python runs; the CLI lets it through from
a config file only when the user confirms it (alignzoo/safety.py), and the record notes what ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.models.base import Policy, ensure_pad_token, resize_for_tokenizer
from alignzoo.models.lora import LoraConfig

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


@dataclass
class HFModelConfig:
    PRETRAINED = True  # algorithms' from-scratch default lr gets a warning here (alignzoo/models/pretrained.py)

    name: str = "hf"
    path: str = "???"  # a local model directory, or a Hub name (needs network)
    dtype: str = "float32"  # float32 | bfloat16 | float16 | auto
    # run code shipped with the model (only for models you trust); from a config file it also needs the command line
    # (model.trust_remote_code=true) or ALIGNZOO_TRUST_REMOTE_CODE=1, and the record notes whether code ran
    trust_remote_code: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)  # LoRA adapters for training (model.lora.r=8); r=0: off

    def problems(self) -> list[str]:
        out = []
        if self.dtype not in DTYPES:
            out.append(f"dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        path = Path(self.path).expanduser()
        local = self.path.startswith((".", "/", "~")) or path.exists()  # anything else is taken as a Hub name
        if local and not path.is_dir():
            out.append(f"path {self.path!r} is not a directory; give a saved model directory or a Hub name")
        elif local and not (path / "config.json").exists():
            out.append(f"path {self.path!r} has no config.json: it is not a Hugging Face model directory")
        return out + [f"lora.{p}" for p in self.lora.problems()]


def build_hf(cfg: HFModelConfig, ctx: Any) -> Policy:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(Path(cfg.path).expanduser()) if cfg.path.startswith("~") else cfg.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code, padding_side="left")
        dtype = cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=cfg.trust_remote_code)
    except OSError as exc:
        raise AlignzooError(
            f"model.path={cfg.path!r}: could not load a causal LM ({exc.__class__.__name__}: {str(exc)[:300]}). "
            "Give a local model directory, or a Hub name on a machine with network access.") from None
    ensure_pad_token(tokenizer)
    resize_for_tokenizer(model, tokenizer)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.to(ctx.device).eval()
    if cfg.trust_remote_code:
        ctx.note(remote_code_note(cfg.path, model, tokenizer))
    return Policy(model, tokenizer, name=Path(path).name, info={"source": path})


def remote_code_note(path: str, *loaded: Any) -> str:
    """What the record says after ``trust_remote_code``: whether code shipped with the model ran, and which. The
    classes transformers builds from a model's own files live in its ``transformers_modules`` package."""
    modules = sorted({type(o).__module__ for o in loaded if type(o).__module__.startswith("transformers_modules")})
    if modules:
        return f"model.trust_remote_code=true: code shipped with {path} ran ({', '.join(modules)})"
    return f"model.trust_remote_code=true: {path} ships no code of its own; transformers' own classes were used"


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_models(register):
    register("hf", build_hf, HFModelConfig, description="any Hugging Face causal LM directory or Hub name")

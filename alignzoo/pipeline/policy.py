"""The starting-policy stages: ``pretrain`` a randomly initialised model on the task's corpus, then ``sft`` on the
task's demonstrations (prompt, completion). Both are cached by ``alignzoo.stages.cache.run_stage``, keyed by their
settings and the identity of their inputs (the tokenizer, the task's data, the base model), so every seed of a
sweep reuses them; both seed from ``pipeline.stage_seed``, never from the run's seed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from alignzoo.stages.cache import StageResult

#: tokens per packed pretraining row (cut to the model's context when that is shorter)
ROW_TOKENS = 64


def tokenizer_id(tokenizer: Any) -> str:
    """What identifies a tokenizer in a stage key: the hash of its full serialization (vocabulary and merges)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pretrain(pipe: Any, policy: Any, corpus: dict[str, list[str]]) -> StageResult:
    """Next-token pretraining of a fresh copy of ``policy``'s architecture on ``corpus["train"]`` (rows packed from
    whole texts); the held-out perplexity on ``corpus["val"]`` goes into the stage's metadata."""
    from alignzoo.stages.lm import LMTrainSettings, pack_rows, perplexity, train_lm

    s, tok, ctx = pipe.settings, policy.tokenizer, pipe.ctx
    arch = {k: getattr(policy.model.config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions",
                                                           "vocab_size", "resid_pdrop")}
    row_len = min(ROW_TOKENS, policy.max_length)
    config = {"tokenizer": tokenizer_id(tok), **pipe.data_key, "arch": arch, "steps": s.pretrain_steps,
              "lr": s.pretrain_lr, "seed": s.stage_seed, "rows": row_len}

    def build(out: Path) -> dict[str, Any]:
        from alignzoo.models.base import Policy

        torch.manual_seed(s.stage_seed)  # a fresh init from the stage seed, whatever the run's seed
        model = type(policy.model)(policy.model.config).to(policy.device)
        seqs = tok(list(corpus["train"]), add_special_tokens=True)["input_ids"]
        rows = pack_rows(seqs, row_len, tok.pad_token_id)
        attn = (rows != tok.pad_token_id).long()
        # held-out texts longer than the model's context are cut to it (a dataset's long prompts would not fit)
        val = [(q + [tok.eos_token_id])[:policy.max_length]
               for q in tok(list(corpus.get("val") or []), add_special_tokens=True)["input_ids"]]
        with ctx.progress(total=s.pretrain_steps, desc="pretrain") as bar:
            settings = LMTrainSettings(s.pretrain_steps, s.pretrain_lr, seed=s.stage_seed,
                                       warmup_steps=min(50, s.pretrain_steps // 5))
            losses = train_lm(model, rows, attn, attn, settings,
                              progress=lambda step, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}")))
        ppl = perplexity(model, val, tok.pad_token_id) if val else float("nan")
        Policy(model, tok).save(out)
        return {"val_perplexity": round(ppl, 3), "uniform_perplexity": len(tok), "final_loss": losses[-1]
                if losses else None, "train_rows": int(rows.size(0)), "val_sentences": len(val)}

    return pipe.stage("pretrain", config, build)


def finetune(pipe: Any, base: Any, base_key: dict[str, Any], demonstrations: tuple[list[str], list[str]]
             ) -> StageResult:
    """Supervised fine-tuning of ``base`` on (prompts, completions), the loss on completion tokens only."""
    from alignzoo.stages.lm import LMTrainSettings, sft_batch, train_lm

    s, ctx = pipe.settings, pipe.ctx
    prompts, completions = demonstrations
    config = {**base_key, **pipe.data_key, "steps": s.sft_steps, "lr": s.sft_lr, "seed": s.stage_seed}

    def build(out: Path) -> dict[str, Any]:
        ids, loss_mask, attn = sft_batch(base.encode_prompts(prompts), base.encode_completions(completions),
                                         base.pad_id, base.max_length)
        with ctx.progress(total=s.sft_steps, desc="sft") as bar:
            losses = train_lm(base.model, ids, loss_mask, attn,
                              LMTrainSettings(s.sft_steps, s.sft_lr, warmup_steps=0, seed=s.stage_seed),
                              progress=lambda step, loss: bar.update(1))
        base.save(out)
        return {"demonstrations": len(prompts), "final_loss": losses[-1] if losses else None}

    return pipe.stage("sft", config, build)


def describe_base(meta: dict[str, Any]) -> str:
    """The record's note on a pretrained base model."""
    return (f"base model: held-out perplexity {meta['val_perplexity']:.1f} (uniform over the vocabulary: "
            f"{meta['uniform_perplexity']})")

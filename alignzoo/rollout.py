"""The one sampling engine every online algorithm and evaluator uses.

Batched sampling with a KV cache from left-padded prompts (explicit position ids, so padding never shifts
positions), temperature / top-k / top-p, and a per-sequence stop at EOS: a finished row emits padding and no
longer counts. Returns the token ids, masks, and per-token log-probs of the sampling policy.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from alignzoo.ops import left_pad, token_logprobs


@dataclass
class Rollout:
    prompt_ids: Tensor  # [B, P] left-padded
    prompt_mask: Tensor  # [B, P] 1 on real prompt tokens
    completion_ids: Tensor  # [B, N] right-padded; EOS kept, padding after it
    completion_mask: Tensor  # [B, N] 1 on generated tokens up to and including EOS
    logprobs: Tensor  # [B, N] log p(token) under softmax(adjusted logits / temperature), before top-k/p; 0 on padding
    ended: Tensor  # [B] bool: the sequence produced EOS before max_new_tokens

    @property
    def input_ids(self) -> Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    def select(self, idx: Tensor) -> "Rollout":
        """The rows ``idx`` (in that order)."""
        return Rollout(self.prompt_ids[idx], self.prompt_mask[idx], self.completion_ids[idx],
                       self.completion_mask[idx], self.logprobs[idx], self.ended[idx])

    @property
    def attention_mask(self) -> Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)

    @property
    def lengths(self) -> Tensor:
        """Completion lengths in tokens, EOS included."""
        return self.completion_mask.sum(-1)

    def texts(self, tokenizer: Any) -> list[str]:
        """Completion texts up to (not including) EOS, without special tokens."""
        out = []
        for ids, mask in zip(self.completion_ids.tolist(), self.completion_mask.tolist()):
            out.append(tokenizer.decode([i for i, m in zip(ids, mask) if m], skip_special_tokens=True))
        return out


def position_ids(mask: Tensor) -> Tensor:
    """Positions that skip left padding: the first real token is position 0."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


@lru_cache(maxsize=None)
def _cache_kwarg(model_cls: type) -> str:
    # transformers 5.x renamed `past_key_values` to `cache` (the old name warns and goes away in 5.40)
    params = inspect.signature(model_cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


@lru_cache(maxsize=None)
def _keeps_logits(model_cls: type) -> bool:
    # transformers causal LMs can run the LM head on the last `logits_to_keep` positions only (wrappers may not)
    return "logits_to_keep" in inspect.signature(model_cls.forward).parameters


def forward(model: Any, input_ids: Tensor, attention_mask: Tensor, *, cache: Any = None, pos: Tensor | None = None,
            hidden: bool = False, keep: int = 0):
    """One forward with padding-aware position ids -> (logits, cache) or, with ``hidden``, (logits, cache,
    last hidden states ``[B, T, d]``). ``cache=False`` turns the KV cache off (training forwards). ``keep > 0``
    returns the logits of the last ``keep`` positions only, ``[B, keep, V]`` (the LM head and its vocabulary-wide
    work skip the others where the model supports it: the same values, less compute)."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": cache is not False}
    kwargs["position_ids"] = pos if pos is not None else position_ids(attention_mask)
    if cache not in (None, False):
        kwargs[_cache_kwarg(type(model))] = cache
    if hidden:
        kwargs["output_hidden_states"] = True
    if keep and _keeps_logits(type(model)):
        kwargs["logits_to_keep"] = keep
    out = model(**kwargs)
    new_cache = None if cache is False else (out["cache"] if "cache" in out else out.get("past_key_values"))
    logits = out.logits[:, -keep:] if keep and out.logits.size(1) > keep else out.logits
    if hidden:
        return logits, new_cache, out.hidden_states[-1]
    return logits, new_cache


def filter_logits(logits: Tensor, *, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Set logits outside the top-k and outside the top-p nucleus to -inf (top_k=0, top_p=1: no filtering)."""
    if top_k and 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # drop a token when the tokens before it already cover top_p; the most likely token always stays
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


#: the sampling method's version; stages that sample put it in their cache key, so a change of sampler (the same
#: distribution, other tokens for a given seed) rebuilds them instead of reusing samples drawn the old way
SAMPLER = "inverse-cdf-1"


def draw(probs: Tensor, uniform: Tensor) -> Tensor:
    """One token per row of ``probs`` ``[B, V]`` by inverse-CDF sampling with ``uniform`` ``[B]`` in [0, 1): the
    first token whose cumulative probability exceeds ``uniform * total``. The same distribution as
    ``torch.multinomial(probs, 1)``, at a fraction of its cost on a CPU (which draws an exponential variate for every
    vocabulary entry: a quarter of a tiny model's decoding time); tokens of probability 0 are never drawn."""
    cdf = probs.double().cumsum(-1)
    target = uniform.to(cdf.dtype).unsqueeze(-1) * cdf[:, -1:]
    return torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=probs.size(-1) - 1)


def uniforms(rows: int, generator: Optional[torch.Generator], device: Any) -> Tensor:
    """The ``[rows]`` uniforms ``draw`` consumes for one decoding step (float64, from ``generator``)."""
    return torch.rand(rows, dtype=torch.float64, device=device, generator=generator)


@torch.no_grad()
def generate(model: Any, prompts: list[list[int]], *, eos_id: int, pad_id: int, max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             generator: Optional[torch.Generator] = None,
             adjust_logits: Optional[Callable[[Tensor, Any], Tensor]] = None, shard: Any = None) -> Rollout:
    """Sample completions for token-id prompts. ``temperature=0`` is greedy.

    ``adjust_logits(logits, hidden)`` may perturb the next-token logits ``[B, V]`` before temperature and
    filtering, given the last layer's hidden state ``[B, d]`` of the position being decoded (ILQL's
    advantage-weighted decoding uses it). The returned log-probs are those of the adjusted distribution.
    ``shard`` (a ``distributed.RowShard``): the prompts are this rank's rows of a global batch; it samples them
    exactly as one process sampling the whole batch would, and stops when every rank's rows have ended.
    """
    device = next(model.parameters()).device
    ids, mask = left_pad(prompts, pad_id, device=device)
    prompt_mask = mask
    batch = ids.size(0)
    want_hidden = adjust_logits is not None
    out = forward(model, ids, mask, hidden=want_hidden, keep=1)
    logits, cache = out[0][:, -1].float(), out[1]
    state = out[2][:, -1] if want_hidden else None
    pos = position_ids(mask)[:, -1]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    tokens, masks, logps = [], [], []
    for t in range(max_new_tokens):
        if adjust_logits is not None:
            logits = adjust_logits(logits, state)
        scaled = logits / temperature if temperature > 0 and temperature != 1.0 else logits
        if temperature > 0:
            filtered = filter_logits(scaled, top_k=top_k, top_p=top_p)
            probs = torch.softmax(filtered, dim=-1)
            if shard is not None:
                nxt = shard.sample(probs, generator)
            else:
                nxt = draw(probs, uniforms(batch, generator, device))
        else:
            nxt = scaled.argmax(-1)
        lp = token_logprobs(scaled, nxt)
        live = ~done
        nxt = torch.where(live, nxt, torch.full_like(nxt, pad_id))
        tokens.append(nxt)
        masks.append(live.long())
        logps.append(torch.where(live, lp, torch.zeros_like(lp)))
        done = done | (nxt == eos_id)
        if (shard.all_done(done) if shard is not None else bool(done.all())) or t == max_new_tokens - 1:
            break  # every row ended, or the last token is sampled: no forward for a token never drawn
        mask = torch.cat([mask, live.long().unsqueeze(-1)], dim=1)
        pos = pos + 1
        out = forward(model, nxt.unsqueeze(-1), mask, cache=cache, pos=pos.unsqueeze(-1), hidden=want_hidden)
        logits, cache = out[0][:, -1].float(), out[1]
        state = out[2][:, -1] if want_hidden else None
    if tokens:
        comp = torch.stack(tokens, 1)
        comp_mask = torch.stack(masks, 1)
        comp_lp = torch.stack(logps, 1)
    else:
        comp = torch.empty((batch, 0), dtype=torch.long, device=device)
        comp_mask = torch.empty((batch, 0), dtype=torch.long, device=device)
        comp_lp = torch.empty((batch, 0), device=device)
    return Rollout(ids, prompt_mask, comp, comp_mask, comp_lp, done)


def completion_logprobs(model: Any, rollout: Rollout, *, temperature: float = 1.0) -> Tensor:
    """Per-token log-probs of the rollout's completion tokens under ``model`` (one full forward): ``[B, N]``,
    0 on padding. Used for reference log-probs and to rescore under the training graph."""
    ids, mask = rollout.input_ids, rollout.attention_mask
    n = rollout.completion_ids.size(1)
    logits, _ = forward(model, ids, mask, cache=False, keep=n + 1)  # the positions that predict completion tokens
    logits = logits[:, :n].float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    lp = token_logprobs(logits, rollout.completion_ids)
    return torch.where(rollout.completion_mask.bool(), lp, torch.zeros_like(lp))


def sample(policy: Any, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 1.0, batch_size: int = 64, seed: int = 0,
           progress: Optional[Callable[[int], None]] = None) -> list[Rollout]:
    """Sample from a ``Policy`` for text prompts in batches, from a seeded generator (same seed, same samples).
    A policy with its own ``sampler`` (best-of-N) samples through it. ``progress`` gets the number of prompts done
    after each batch."""
    if getattr(policy, "sampler", None) is not None:
        return policy.sampler(prompts, max_new_tokens=max_new_tokens, temperature=temperature, batch_size=batch_size,
                              seed=seed, top_k=top_k, top_p=top_p)
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    encoded = policy.encode_prompts(prompts)
    max_prompt = max(1, policy.max_length - max_new_tokens)
    encoded = [ids[-max_prompt:] for ids in encoded]
    out = []
    for i in range(0, len(encoded), batch_size):
        out.append(generate(policy.model, encoded[i:i + batch_size], eos_id=policy.eos_id, pad_id=policy.pad_id,
                            max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            generator=gen, adjust_logits=getattr(policy, "adjust_logits", None)))
        if progress is not None:
            progress(min(i + batch_size, len(encoded)))
    return out

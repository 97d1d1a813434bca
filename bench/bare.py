"""The bare-PyTorch limits: what a careful hand-written loop costs, with no library around it.

- ``dpo``: pre-tokenized pairs in tensors, per step one concatenated policy forward ``[chosen; rejected]`` and
  one reference forward under ``no_grad``, log_softmax + gather over the completion tokens, the sigmoid DPO loss,
  backward, gradient clipping at 1.0 and AdamW (the same optimizer settings every implementation uses);
- ``kv_loop``: a plain KV-cache sampling loop (multinomial from softmax, no per-row EOS bookkeeping);
- ``hf_generate``: ``model.generate(do_sample=True)`` with the same sampling settings (temperature 1, no top-k /
  top-p): the "bare generation" the online ratios are taken against.
"""

from __future__ import annotations

from typing import Any

from bench.common import SHAPES, Shapes, StepClock, build_model, build_tokenizer, preference_rows, prompt_texts


def _pair_tensors(tokenizer: Any, rows: dict[str, list[str]]) -> tuple[Any, Any, Any]:
    import torch

    eos = tokenizer.eos_token
    p = tokenizer(rows["prompt"])["input_ids"]
    c = tokenizer([x + eos for x in rows["chosen"]])["input_ids"]
    r = tokenizer([x + eos for x in rows["rejected"]])["input_ids"]
    chosen = torch.tensor([a + b for a, b in zip(p, c)])
    rejected = torch.tensor([a + b for a, b in zip(p, r)])
    mask = torch.zeros_like(chosen)
    mask[:, len(p[0]):] = 1  # every prompt has the same length here
    return chosen, rejected, mask


def dpo(steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, batch: int | None = None,
        response_len: int | None = None, device: str = "cpu") -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    batch = batch or shapes.dpo_pairs
    tokenizer = build_tokenizer(shapes.vocab)
    policy = build_model(0, shapes, tokenizer).to(device).train()
    reference = build_model(0, shapes, tokenizer).to(device).eval().requires_grad_(False)
    rows = preference_rows(shapes, n=max(shapes.dataset_pairs, 8 * batch), response_len=response_len)
    chosen, rejected, comp = (t.to(device) for t in _pair_tensors(tokenizer, rows))
    labels_mask = torch.cat([comp[:batch], comp[:batch]])[:, 1:].bool()
    opt = torch.optim.AdamW(policy.parameters(), lr=shapes.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(0)
    order: list[int] = []

    def seq_logps(model: Any, ids: Any, attn: Any) -> Any:
        logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[:, :-1].float()
        per_token = torch.gather(logits.log_softmax(-1), -1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (per_token * labels_mask).sum(-1)

    loss = None
    for _ in range(steps):
        if len(order) < batch:
            order = torch.randperm(chosen.size(0), generator=gen).tolist()
        idx, order = order[:batch], order[batch:]
        ids = torch.cat([chosen[idx], rejected[idx]])
        attn = torch.ones_like(ids)
        with torch.no_grad():
            ref = seq_logps(reference, ids, attn)
        pol = seq_logps(policy, ids, attn)
        h = (pol[:batch] - ref[:batch]) - (pol[batch:] - ref[batch:])
        loss = -F.logsigmoid(shapes.beta_dpo * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        clock.mark()
    return {"final_loss": float(loss.detach())}


def _prompts(shapes: Shapes, batch: int | None, device: str = "cpu") -> tuple[Any, Any, Any]:
    import torch

    tokenizer = build_tokenizer(shapes.vocab)
    model = build_model(0, shapes, tokenizer).to(device)
    ids = torch.tensor(tokenizer(prompt_texts(shapes, n=batch or shapes.completions))["input_ids"], device=device)
    return tokenizer, model, ids


def kv_loop(steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, batch: int | None = None) -> dict[str, Any]:
    import torch

    tokenizer, model, prompt = _prompts(shapes, batch)
    gen = torch.Generator().manual_seed(0)
    clock.mark()
    with torch.no_grad():
        for _ in range(steps - 1):
            attn = torch.ones_like(prompt)
            out = model(input_ids=prompt, attention_mask=attn, use_cache=True)
            tokens, logps = [], []
            for _ in range(shapes.new_tokens):
                logp = out.logits[:, -1].log_softmax(-1)
                nxt = torch.multinomial(logp.exp(), 1, generator=gen)
                tokens.append(nxt)
                logps.append(logp.gather(-1, nxt))
                attn = torch.cat([attn, torch.ones_like(nxt)], 1)
                out = model(input_ids=nxt, attention_mask=attn, past_key_values=out.past_key_values, use_cache=True)
            clock.mark()
    return {"completion_tokens_per_step": prompt.size(0) * shapes.new_tokens}


def hf_generate(steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, batch: int | None = None,
                device: str = "cpu") -> dict:
    import torch

    tokenizer, model, prompt = _prompts(shapes, batch, device)
    torch.manual_seed(0)
    tokens = 0
    clock.mark()
    for _ in range(steps - 1):
        out = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                             max_new_tokens=shapes.new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        completion = out[:, prompt.size(1):]
        # tokens up to and including each row's first EOS (generate pads the rest)
        ended = (completion == tokenizer.eos_token_id).int().cumsum(-1)
        tokens += int(((ended == 0) | ((ended == 1) & (completion == tokenizer.eos_token_id))).sum())
        clock.mark()
    return {"completion_tokens_per_step": tokens / max(1, steps - 1)}

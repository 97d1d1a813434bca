"""The validation pass of every evaluation: the headline scored again on the task's validation prompts.

The board picks each seed's checkpoints on these numbers (``alignzoo.board.frontier``) and reports the picks'
scores on the eval (test) prompts, so the choice of checkpoint never peeks at what it reports. Only what an
evaluator lists in its ``validation_metrics`` (a tuple of metric names, e.g. ``("gold_reward",)``) is scored, on as
many prompts as the eval pass, from the same sampling seed: one more sampling pass per evaluation, no reference
log-probs, no judge. A task without ``validation_prompts(policy, n)`` gets no validation pass.
"""

from __future__ import annotations

from typing import Any

VAL_PREFIX = "val/"  # history keys of the validation pass: val/<metric>, beside eval/<metric>


def validation_metrics(ctx: Any, policy: Any, seed: int) -> dict[str, float]:
    """``{"val/<metric>": value}`` of every evaluator's ``validation_metrics`` on the task's validation prompts;
    ``{}`` when the task offers none or no evaluator asks for them."""
    from alignzoo.evaluators.samples import EvalSamples

    wanted = {name: keys for name, e in ctx.evaluators.items() if (keys := tuple(getattr(e, "validation_metrics", ())))}
    offer = getattr(ctx.task, "validation_prompts", None)
    if not wanted or offer is None:
        return {}
    prompts = list(offer(policy, ctx.eval_cfg.num_prompts))
    if not prompts:
        return {}
    samples = EvalSamples.draw(policy, ctx.reference, prompts, max_new_tokens=ctx.eval_cfg.max_new_tokens,
                               temperature=ctx.eval_cfg.temperature, seed=seed, batch_size=ctx.eval_cfg.batch_size)
    out: dict[str, float] = {}
    for name, keys in wanted.items():
        scored = ctx.evaluators[name].evaluate(samples)
        out.update({f"{VAL_PREFIX}{k}": float(scored[k]) for k in keys if k in scored})
    return out

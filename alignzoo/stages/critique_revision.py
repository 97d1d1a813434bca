"""The ``critique_revision`` stage (SL-CAI, Bai et al. 2022b; docs/algorithms.md#sl-cai): revise the SFT policy's own
responses with a critic, then fine-tune the SFT policy on the revisions.

For each prompt the policy samples a response. An LM critic (one with ``critique_and_revise``) writes a critique
of it under a principle drawn from the constitution and then a revision, from the principle's critique and
revision requests. A rule critic cannot write, so it revises by choosing: the policy samples ``rewrites`` more
responses and the critic's best of the original and the rewrites (ranked by summed order-averaged preference)
becomes the revision: that is best-of-(1 + rewrites) rejection sampling by the critic, not critique -> revision,
and the stage's ``method`` and the run's note say so (``METHODS``). The SFT policy is then fine-tuned on (prompt,
revision) with the SFT loss. Cached by policy,
critic, constitution and settings; the metadata report the gold reward of originals and revisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignzoo.stages.cache import StageResult, run_stage


#: what the stage does, by whether the critic can write a revision (``critique_and_revise``)
METHODS = {True: "critique_revision", False: "rejection_sampling"}


def method_note(meta: dict[str, Any], rewrites: int) -> str:
    """The record's line on what SL-CAI did: critique -> revision, or (a rule critic) best-of-k selection."""
    if meta.get("method") == METHODS[False]:
        return (f"SL-CAI with critic {meta['critic']} is rejection sampling, not critique -> revision: the critic "
                f"cannot write, so each revision is its best of {1 + rewrites} policy samples; use critic=lm_judge "
                "for written critiques and revisions")
    return f"SL-CAI with critic {meta['critic']}: critique -> revision written by the critic"


@dataclass
class CritiqueRevisionConfig:
    prompts: int = 512  # prompts whose responses are revised (from the task's RL prompts)
    rewrites: int = 4  # rule critics: extra samples per prompt the critic chooses the revision from
    max_new_tokens: int = 20  # tokens per sampled response
    steps: int = 50  # fine-tuning steps on (prompt, revision)
    lr: float = 5e-4  # fine-tuning learning rate
    batch_size: int = 32  # fine-tuning rows per step
    seed: int = 0  # sampling and fine-tuning seed

    def problems(self) -> list[str]:
        out = [f"{k} must be >= 1 (got {getattr(self, k)})" for k in ("prompts", "rewrites", "max_new_tokens",
                                                                        "steps", "batch_size") if getattr(self, k) < 1]
        if self.lr <= 0:
            out.append(f"lr must be > 0 (got {self.lr})")
        return out


def revise(critic: Any, policy: Any, prompts: list[str], cfg: CritiqueRevisionConfig, progress: Any = None
           ) -> dict[str, list]:
    """Originals, critiques (LM critics) and revisions for ``prompts``, with EOS flags."""
    from alignzoo.critics.base import rank_groups
    from alignzoo.stages.feedback import sample_groups

    writes = hasattr(critic, "critique_and_revise")
    k = 1 if writes else 1 + cfg.rewrites
    texts, ended = sample_groups(policy, prompts, k=k, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                 progress=progress)
    originals, orig_ended = texts[::k], ended[::k]
    if writes:
        rng = np.random.default_rng(cfg.seed)
        principles = critic.constitution.principles
        weights = np.array([p.weight for p in principles])
        picks = rng.choice(len(principles), size=len(prompts), p=weights / weights.sum())
        critiques, revisions = [""] * len(prompts), [""] * len(prompts)
        gen = torch.Generator(device=critic.model.device).manual_seed(cfg.seed)
        for j, principle in enumerate(principles):
            idx = [i for i in range(len(prompts)) if picks[i] == j]
            if idx:
                c, r = critic.critique_and_revise([prompts[i] for i in idx], [originals[i] for i in idx], principle, gen)
                for i, ci, ri in zip(idx, c, r):
                    critiques[i], revisions[i] = ci, ri
        return {"original": originals, "original_ended": orig_ended, "critique": critiques, "revision": revisions,
                "revision_ended": [True] * len(prompts), "principle": [principles[j].name for j in picks]}
    groups = [texts[i * k:(i + 1) * k] for i in range(len(prompts))]
    group_ended = [ended[i * k:(i + 1) * k] for i in range(len(prompts))]
    rankings, _, _ = rank_groups(critic, prompts, groups, group_ended, rng=np.random.default_rng(cfg.seed))
    best = [order[0] for order in rankings]
    return {"original": originals, "original_ended": orig_ended, "critique": [""] * len(prompts),
            "revision": [g[b] for g, b in zip(groups, best)],
            "revision_ended": [e[b] for e, b in zip(group_ended, best)], "principle": ["all"] * len(prompts)}


def critique_revision(ctx: Any, task: Any, policy: Any, critic: Any, cfg: CritiqueRevisionConfig) -> StageResult:
    """Revise, fine-tune, cache; returns the stage (``path/policy`` is the SL-CAI policy, ``path/data`` the
    revisions)."""
    from alignzoo.critics.base import critic_description
    from alignzoo.rollout import SAMPLER

    prompts = list(task.train_prompts(policy))[:cfg.prompts]
    config = {"method": METHODS[hasattr(critic, "critique_and_revise")],
              "policy": policy.info.get("sft_stage") or policy.info.get("source", policy.name),
              "prompts": [len(prompts), prompts[:3]], "critic": critic_description(critic), "sampler": SAMPLER,
              **cfg.__dict__}

    def build(out: Path) -> dict[str, Any]:
        import copy

        import datasets

        from alignzoo.models.base import Policy
        from alignzoo.stages.lm import LMTrainSettings, sft_batch, train_lm

        with ctx.progress(total=len(prompts), desc="critique-revision: responses") as bar:
            rows = revise(critic, policy, prompts, cfg, progress=lambda n: bar.update(min(n, bar.total) - bar.n))
        rows["prompt"] = prompts
        gold = getattr(task, "gold", None)
        meta: dict[str, Any] = {"prompts": len(prompts), "critic": critic.name,
                                "method": METHODS[hasattr(critic, "critique_and_revise")],
                                "constitution": critic.constitution.name,
                                "changed_share": float(np.mean([o != r for o, r in zip(rows["original"],
                                                                                       rows["revision"])]))}
        if gold is not None:
            rows["original_gold"] = gold.score(prompts, rows["original"], rows["original_ended"]).tolist()
            rows["revision_gold"] = gold.score(prompts, rows["revision"], rows["revision_ended"]).tolist()
            meta.update({"original_gold": float(np.mean(rows["original_gold"])),
                         "revision_gold": float(np.mean(rows["revision_gold"]))})
        datasets.Dataset.from_dict(rows).save_to_disk(str(out / "data"))
        model = copy.deepcopy(policy.model)
        tuned = Policy(model, policy.tokenizer, name="sl_cai")
        ids, loss_mask, attn = sft_batch(tuned.encode_prompts(prompts), tuned.encode_completions(rows["revision"]),
                                         tuned.pad_id, tuned.max_length)
        with ctx.progress(total=cfg.steps, desc="critique-revision: fine-tune") as bar:
            losses = train_lm(model, ids, loss_mask, attn,
                              LMTrainSettings(cfg.steps, cfg.lr, batch_size=cfg.batch_size, warmup_steps=0,
                                              seed=cfg.seed), progress=lambda s, l: bar.update(1))
        model.eval()
        tuned.save(out / "policy")
        meta["final_loss"] = losses[-1] if losses else None
        return meta

    result = run_stage(ctx.cache_dir, "critique_revision", config, build, note=ctx.note)
    m = result.meta
    ctx.note(method_note(m, cfg.rewrites))
    if "revision_gold" in m:
        ctx.extra_metrics.update({"sl_cai/original_gold": m["original_gold"], "sl_cai/revision_gold": m["revision_gold"]})
        ctx.note(f"critique-revision (SL-CAI, critic {m['critic']}, constitution {m['constitution']}): "
                 f"{m['prompts']} revisions, mean gold {m['original_gold']:.3f} -> {m['revision_gold']:.3f}; "
                 f"{m['changed_share']:.0%} changed")
    return result

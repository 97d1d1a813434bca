"""``labeler=verifier``: feedback labelled by the task's answer checker (DPO, IPO, KTO, ILQL on verified pairs).

K completions of the starting policy per feedback prompt (``pipeline.completions_per_prompt``), each checked
(``task.gold``: 1 correct, 0 not); a prompt gives a pair only when its group holds a correct and an incorrect
completion: the correct one is ``chosen``, the incorrect one ``rejected``. Groups that are all correct or all
wrong carry no preference and are dropped (counted in the stage's meta and the run's notes). The rows have the
columns of every feedback stage (``alignzoo.stages.feedback.COLUMNS``), so ranking-based algorithms read them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.stages.cache import StageResult

LABELER = "verifier"


@dataclass
class VerifierLabelerConfig:
    name: str = "verifier"


def verified_rows(prompts: list[str], texts: list[str], ended: list[bool], scores: list[float], k: int
                  ) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Feedback rows of the groups with a correct and an incorrect completion, and how many groups were kept or
    dropped as ties (all correct, all wrong). Within a group the ranking puts higher scores first (stable)."""
    from alignzoo.stages.feedback import feedback_row

    rows, counts = [], {"pairs": 0, "all_correct": 0, "all_wrong": 0}
    for i, prompt in enumerate(prompts):
        group = slice(i * k, (i + 1) * k)
        g = scores[group]
        if max(g) == min(g):
            counts["all_correct" if g[0] > 0 else "all_wrong"] += 1
            continue
        ranking = sorted(range(k), key=lambda j: -g[j])
        rows.append(feedback_row(prompt, texts[group], g, ended[group], ranking, LABELER))
        counts["pairs"] += 1
    return rows, counts


class VerifierLabeler:
    """The task's verifier judges K sampled completions per feedback prompt; correct-vs-incorrect pairs only."""

    def __init__(self, cfg: VerifierLabelerConfig, ctx: Any = None):
        self.cfg, self.name = cfg, cfg.name

    def feedback(self, pipe: Any, policy: Any) -> Optional[StageResult]:
        from alignzoo.rollout import SAMPLER
        from alignzoo.stages.feedback import COLUMNS, columns, sample_groups

        prompts, gold, ctx, s = pipe.feedback_prompts, pipe.gold, pipe.ctx, pipe.settings
        if getattr(pipe.task, "answer_for", None) is None or gold is None or not prompts:
            raise AlignzooError(f"labeler=verifier needs a task with checkable answers and feedback prompts "
                                f"(task=arithmetic); task={pipe.task.name} has not both: use labeler=simulated")
        k = s.completions_per_prompt
        config = {"sft": pipe.policy_key, **pipe.data_key, "prompts": len(prompts), "k": k,
                  "max_new_tokens": s.max_new_tokens, "seed": s.stage_seed, "sampler": SAMPLER, "labeler": LABELER}

        def build(out: Path) -> dict[str, Any]:
            import datasets

            with ctx.progress(total=len(prompts) * k, desc="feedback") as bar:
                texts, ended = sample_groups(policy, prompts, k=k, max_new_tokens=s.max_new_tokens,
                                             seed=s.stage_seed, progress=lambda n: bar.update(n - bar.n))
            repeated = [p for p in prompts for _ in range(k)]
            scores = [float(x) for x in gold.score(repeated, texts, ended).tolist()]
            rows, counts = verified_rows(prompts, texts, ended, scores, k)
            if not rows:
                raise AlignzooError(
                    f"labeler=verifier found no prompt with both a correct and an incorrect completion among "
                    f"{len(prompts)} feedback prompts x {k} (all correct: {counts['all_correct']}, all wrong: "
                    f"{counts['all_wrong']}): raise pipeline.feedback_prompts or pipeline.completions_per_prompt, "
                    "or train the starting policy longer (pipeline.sft_steps)")
            datasets.Dataset.from_dict(columns(rows, COLUMNS)).save_to_disk(str(out / "data"))
            return {**counts, "prompts": len(prompts), "completions_per_prompt": k,
                    "accuracy": sum(scores) / len(scores)}

        result = pipe.stage("feedback", config, build)
        m = result.meta
        ctx.record.notes.append(
            f"feedback (labeler=verifier): {m['pairs']} correct-vs-incorrect pairs from {m['prompts']} prompts x "
            f"{m['completions_per_prompt']}; dropped as ties: {m['all_correct']} all correct, {m['all_wrong']} all "
            f"wrong; starting policy's accuracy {m['accuracy']:.3f}")
        return result


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_labelers(register):
    register(LABELER, VerifierLabeler, VerifierLabelerConfig,
             description="the task's answer checker labels K sampled completions: correct vs incorrect pairs")

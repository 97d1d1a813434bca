"""The AI ``feedback`` stage (``labeler=critic``, RLAIF): a constitutional critic labels the comparisons in place
of the simulated human annotators.

For each feedback prompt the SFT policy samples K completions, as in the simulated stage; the critic judges
every pair within the group in both orders against its constitution (``alignzoo.critics.base``), the group is
ranked by summed preference, and (best, worst) become ``chosen`` / ``rejected`` with the soft label
``chosen_prob`` = p(chosen > rejected) in [1/2, 1] (``rejected_prob`` = 1 - chosen_prob). The columns are those
of the simulated stage (so DPO, reward models and evaluators read it unchanged), the gold scores are kept to
measure the AI labels' agreement with the gold order, and the stage is cached by SFT policy, prompts, sampling,
critic and constitution.

On a task without feedback prompts (``task=hf_preferences``) the critic relabels the task's own pairs instead
(``critic_relabel``: K = 2, the dataset's chosen and rejected). A task without a gold scorer gets no gold columns
and no agreement metrics (a rule critic's scorers need no vocabulary: VADER, fluency, harmlessness).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from alignzoo.rollout import SAMPLER
from alignzoo.stages.cache import StageResult
from alignzoo.stages.feedback import COLUMNS, columns, feedback_row, sample_groups

#: the feedback columns that hold gold scores (left out when the task has no gold scorer)
GOLD_COLUMNS = ("chosen_gold", "rejected_gold", "gold")


def agreement(chosen_gold: np.ndarray, rejected_gold: np.ndarray, chosen_prob: np.ndarray | None = None
              ) -> dict[str, float]:
    """Agreement of the labels with the gold order over pairs whose gold scores differ: the share where the chosen
    completion has the higher gold (hard), and the mean probability the soft label puts on the gold-better one."""
    c, r = np.asarray(chosen_gold, float), np.asarray(rejected_gold, float)
    decided = c != r
    out = {"agreement_with_gold": float(np.mean(c[decided] > r[decided])) if decided.any() else float("nan"),
           "gold_tie_share": float(1 - decided.mean()) if len(c) else float("nan")}
    if chosen_prob is not None:
        p = np.asarray(chosen_prob, float)[decided]
        out["soft_agreement_with_gold"] = float(np.mean(np.where(c[decided] > r[decided], p, 1 - p))) \
            if decided.any() else float("nan")
    return out


def label_with_critic(out_dir: Path, critic: Any, prompts: list[str], texts: list[str], ended: list[bool],
                      gold: list[float] | None, *, k: int, seed: int) -> dict[str, Any]:
    """Rank each group of K with the critic, save the dataset into ``out_dir/data``; returns stage metadata.
    ``gold`` None (a task without a gold scorer): the dataset has no gold columns and the metadata no agreement."""
    import datasets

    from alignzoo.critics.base import rank_groups

    groups = [slice(i * k, (i + 1) * k) for i in range(len(prompts))]
    rankings, matrices, judged = rank_groups(critic, prompts, [texts[s] for s in groups], [ended[s] for s in groups],
                                             rng=np.random.default_rng(seed))
    labelled = []
    known = gold is not None  # a task without a gold scorer: no gold columns (they would read as real scores)
    for prompt, s, order, m in zip(prompts, groups, rankings, matrices):
        p = float(m[order[0], order[-1]])  # the critic's probability that the chosen beats the rejected
        labelled.append({**feedback_row(prompt, texts[s], gold[s] if known else [0.0] * k, ended[s], order,
                                        critic.name), "chosen_prob": p, "rejected_prob": 1.0 - p})
    names = [c for c in (*COLUMNS, "chosen_prob", "rejected_prob") if known or c not in GOLD_COLUMNS]
    rows = columns(labelled, names)
    datasets.Dataset.from_dict(rows).save_to_disk(str(out_dir / "data"))
    probs = np.asarray(rows["chosen_prob"])
    stats = agreement(np.asarray(rows["chosen_gold"]), np.asarray(rows["rejected_gold"]), probs) if known else {}
    stats.update({
        "pairs": len(prompts), "prompts": len(prompts), "completions_per_prompt": k, "critic": critic.name,
        "constitution": critic.constitution.name, "principles": [p.name for p in critic.constitution.principles],
        "principle_mode": critic.principle_mode, "comparisons_judged": int(len(judged.p)),
        "mean_label_confidence": float(np.mean(probs)) if len(probs) else float("nan"),
        "undecided_share": float(np.mean(probs == 0.5)) if len(probs) else float("nan"),
        "position_bias": judged.position_bias, "mean_gold": float(np.mean(gold)) if known else float("nan"),
        "eos_share": float(np.mean(ended)), "mean_words": float(np.mean([len(t.split()) for t in texts])),
    })
    return stats


def critic_agreement(critic: Any, data: Any, n: int = 200, progress: Callable[[int], None] | None = None
                     ) -> dict[str, float]:
    """Judge the first ``n`` sampled pairs of a feedback dataset (columns ``prompt``, ``completions``, ``gold``,
    ``ended``; K = 2) with ``critic`` and compare with the gold order: ``agreement_with_gold`` over pairs whose gold
    differs (a judge tie at exactly 1/2 counts half), the soft agreement, and the judge's position bias."""
    from alignzoo.critics.base import preferences

    rows = data.select(range(min(n, len(data))))
    if hasattr(critic, "progress"):
        critic.progress = progress
    judged = preferences(critic, rows["prompt"], [c[0] for c in rows["completions"]],
                         [c[1] for c in rows["completions"]], [e[0] for e in rows["ended"]],
                         [e[1] for e in rows["ended"]], rng=np.random.default_rng(0))
    g = np.array(rows["gold"], dtype=float)
    decided = g[:, 0] != g[:, 1]
    first_better = g[decided, 0] > g[decided, 1]
    p = judged.p[decided]
    hard = np.where(p == 0.5, 0.5, (p > 0.5) == first_better)
    return {"pairs": int(len(rows)), "decided_pairs": int(decided.sum()), "agreement_with_gold": float(np.mean(hard)),
            "soft_agreement_with_gold": float(np.mean(np.where(first_better, p, 1 - p))),
            "position_bias": judged.position_bias, "mean_confidence": float(np.mean(np.maximum(p, 1 - p)))}


def critic_feedback(pipe: Any, policy: Any) -> StageResult:
    """The feedback stage labelled by the run's critic (``labeler=critic``): K completions of the starting policy
    per feedback prompt, ranked by the critic; cached."""
    from alignzoo.critics import build_critic
    from alignzoo.critics.base import critic_description

    ctx, s, gold, prompts = pipe.ctx, pipe.settings, pipe.gold, pipe.feedback_prompts
    critic = build_critic(ctx)
    k = s.completions_per_prompt
    config = {"sft": pipe.policy_key, "policy": policy.info.get("sl_cai_stage"), **pipe.data_key,
              "prompts": len(prompts), "k": k, "max_new_tokens": s.max_new_tokens,
              "missing_eos_penalty": getattr(gold, "missing_eos_penalty", None), "seed": s.stage_seed,
              "labeler": critic_description(critic), "sampler": SAMPLER}

    def build(out: Path) -> dict[str, Any]:
        with ctx.progress(total=len(prompts) * k, desc="feedback: sampling") as bar:
            texts, ended = sample_groups(policy, prompts, k=k, max_new_tokens=s.max_new_tokens, seed=s.stage_seed,
                                         progress=lambda n: bar.update(n - bar.n))
        scores = gold.score([], texts, ended).tolist() if gold is not None else None
        return _judge(out, ctx, critic, prompts, texts, ended, scores, k=k, seed=s.stage_seed)

    return _recorded(ctx, pipe.stage("feedback_ai", config, build))


def critic_relabel(pipe: Any, policy: Any) -> StageResult:
    """The task's own preference pairs relabelled by the run's critic (``labeler=critic`` on a task without
    feedback prompts, e.g. ``task=hf_preferences``): each (chosen, rejected) is judged in both orders and the
    critic's better one becomes ``chosen``; cached by the pairs' content and the critic."""
    from alignzoo.critics import build_critic
    from alignzoo.critics.base import critic_description
    from alignzoo.errors import AlignzooError
    from alignzoo.pipeline import texts_key

    ctx, task = pipe.ctx, pipe.task
    if not hasattr(task, "preference_data"):
        raise AlignzooError(f"labeler=critic needs comparisons to judge, but task={task.name} gives neither feedback "
                            "prompts nor preference pairs; pick a task with one of them")
    pairs = task.preference_data(policy)
    critic = build_critic(ctx)
    config = {"pairs": texts_key(pairs["prompt"], pairs["chosen"], pairs["rejected"]), "n": len(pairs),
              **pipe.data_key, "labeler": critic_description(critic), "seed": pipe.settings.stage_seed}

    def build(out: Path) -> dict[str, Any]:
        texts = [t for c, r in zip(pairs["chosen"], pairs["rejected"]) for t in (c, r)]
        gold = pipe.gold.score([], texts, [True] * len(texts)).tolist() if pipe.gold is not None else None
        meta = _judge(out, ctx, critic, list(pairs["prompt"]), texts, [True] * len(texts), gold, k=2,
                      seed=pipe.settings.stage_seed)
        data = datasets_load(out)
        meta["flipped_share"] = float(np.mean([c != orig for c, orig in zip(data["chosen"], pairs["chosen"])]))
        return meta

    result = _recorded(ctx, pipe.stage("feedback_ai", config, build))
    ctx.note(f"labeler=critic relabelled task={task.name}'s {len(pairs)} pairs: the critic prefers the dataset's "
             f"rejected response in {result.meta['flipped_share']:.0%} of them")
    return result


def datasets_load(out: Path) -> Any:
    import datasets

    return datasets.load_from_disk(str(out / "data"))


def _judge(out: Path, ctx: Any, critic: Any, prompts: list[str], texts: list[str], ended: list[bool],
           gold: list[float] | None, *, k: int, seed: int) -> dict[str, Any]:
    per_pair = 2 * (len(critic.constitution.principles) if critic.principle_mode == "all" else 1)
    with ctx.progress(total=len(prompts) * k * (k - 1) // 2 * per_pair, desc=f"feedback: {critic.name}") as bar:
        if hasattr(critic, "progress"):  # LM judges report judged prompts; rule critics are instant
            critic.progress = bar.update
        return label_with_critic(out, critic, prompts, texts, ended, gold, k=k, seed=seed)


def _recorded(ctx: Any, result: StageResult) -> StageResult:
    """The AI labels' quality in the record: agreement with the gold order (tasks with a gold scorer)."""
    m = result.meta
    principles = f"constitution {m['constitution']}: {', '.join(m['principles'])}"
    if "agreement_with_gold" not in m:
        ctx.note(f"feedback: {m['pairs']} pairs labelled by critic {m['critic']} ({principles}); no gold reward to "
                 f"measure the AI labels against, position bias {m['position_bias']:.3f}")
        return result
    ctx.extra_metrics.update({"feedback/agreement_with_gold": m["agreement_with_gold"],
                              "feedback/soft_agreement_with_gold": m["soft_agreement_with_gold"],
                              "feedback/label_confidence": m["mean_label_confidence"],
                              "feedback/position_bias": m["position_bias"]})
    ctx.note(f"feedback: {m['pairs']} pairs labelled by critic {m['critic']} ({principles}); AI labels' agreement "
             f"with the gold order {m['agreement_with_gold']:.3f} (soft {m['soft_agreement_with_gold']:.3f}), "
             f"position bias {m['position_bias']:.3f}")
    return result

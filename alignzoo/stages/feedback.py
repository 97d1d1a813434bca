"""The ``feedback`` stage: simulated human annotators label completions of the SFT policy.

For each feedback prompt, K completions are sampled; an annotator from a pool ranks them with a Plackett-Luce
model of the gold reward, P(ranking) = prod_k exp(u_k / T) / sum_{j >= k} exp(u_j / T) with u = gold + length bias
(for K = 2 this is Bradley-Terry: P(a > b) = sigmoid((gold_a - gold_b) / T)), then reverses it with the
annotator's flip rate. The pair (best, worst) becomes ``chosen`` / ``rejected``; the full ranking and gold
scores are kept for K-wise losses and analysis. A share of prompts gets a second annotator, for agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Annotator:
    id: str
    temperature: float  # Bradley-Terry noise; 0: always picks the higher utility
    flip_rate: float  # share of labels reversed outright
    length_bias: float  # utility added per 10 words (> 0: prefers longer completions)


def annotator_pool(n: int, *, temperature: float, flip_rate: float, noise: float, length_bias: float,
                   seed: int) -> list[Annotator]:
    """``n`` annotators around the given temperature; ``noise`` spreads their temperatures log-normally and
    ``length_bias`` is the std of their per-annotator length preference."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        t = temperature * math.exp(noise * rng.standard_normal()) if temperature > 0 else 0.0
        bias = length_bias * rng.standard_normal() if length_bias > 0 else 0.0
        out.append(Annotator(f"annotator_{i}", t, flip_rate, bias))
    return out


def rank(gold: Sequence[float], n_words: Sequence[int], annotator: Annotator, rng: np.random.Generator) -> list[int]:
    """The annotator's ranking (indices, best first) of K completions with the given gold scores."""
    u = np.asarray(gold, dtype=float) + annotator.length_bias * np.asarray(n_words, dtype=float) / 10
    if annotator.temperature > 0:
        # Gumbel-max: sorting u/T + Gumbel noise samples a Plackett-Luce ranking
        keys = u / annotator.temperature + rng.gumbel(size=len(u))
    else:
        keys = u + rng.uniform(0, 1e-9, size=len(u))  # exact order, ties broken at random
    order = [int(i) for i in np.argsort(-keys, kind="stable")]
    if annotator.flip_rate > 0 and rng.random() < annotator.flip_rate:
        order.reverse()
    return order


def label_groups(golds: list[list[float]], n_words: list[list[int]], pool: list[Annotator], *, overlap_share: float,
                 seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Label every group of K completions; returns one label per group and agreement statistics."""
    rng = np.random.default_rng(seed)
    labels, agree_gold, agree_pair, per_annotator = [], [], [], {a.id: [] for a in pool}
    ties = 0
    for g, w in zip(golds, n_words):
        a = pool[int(rng.integers(len(pool)))]
        order = rank(g, w, a, rng)
        best, worst = order[0], order[-1]
        labels.append({"annotator": a.id, "ranking": order, "chosen_index": best, "rejected_index": worst})
        if g[best] == g[worst]:
            ties += 1
        else:
            ok = g[best] > g[worst]
            agree_gold.append(ok)
            per_annotator[a.id].append(ok)
        if len(pool) > 1 and rng.random() < overlap_share:
            other = pool[(pool.index(a) + 1 + int(rng.integers(len(pool) - 1))) % len(pool)]
            second = rank(g, w, other, rng)
            # the two annotators agree when they prefer the same one of the first annotator's pair
            agree_pair.append(second.index(best) < second.index(worst))
    stats = {
        "pairs": len(labels),
        "tie_share": ties / max(1, len(labels)),
        "agreement_with_gold": float(np.mean(agree_gold)) if agree_gold else float("nan"),
        "inter_annotator_agreement": float(np.mean(agree_pair)) if agree_pair else float("nan"),
        "inter_annotator_pairs": len(agree_pair),
        "per_annotator_agreement_with_gold": {k: float(np.mean(v)) if v else float("nan")
                                              for k, v in per_annotator.items()},
    }
    return labels, stats


#: the feedback dataset's columns, whoever labels it (simulated annotators, a critic, people)
COLUMNS = ("prompt", "chosen", "rejected", "chosen_gold", "rejected_gold", "chosen_ended", "rejected_ended",
           "annotator", "completions", "gold", "ended", "ranking")


def feedback_row(prompt: str, completions: Sequence[str], gold: Sequence[float], ended: Sequence[bool],
                 ranking: Sequence[int], annotator: str) -> dict[str, Any]:
    """One row of the feedback dataset: the group's best (``chosen``) and worst (``rejected``) completion under
    ``ranking`` (indices, best first), with the whole group kept for K-wise losses and analysis."""
    b, w = ranking[0], ranking[-1]
    return {"prompt": prompt, "chosen": completions[b], "rejected": completions[w], "chosen_gold": gold[b],
            "rejected_gold": gold[w], "chosen_ended": ended[b], "rejected_ended": ended[w], "annotator": annotator,
            "completions": list(completions), "gold": list(gold), "ended": list(ended), "ranking": list(ranking)}


def columns(rows: list[dict[str, Any]], names: Sequence[str] = COLUMNS) -> dict[str, list]:
    """Rows as the column dict ``datasets.Dataset.from_dict`` takes."""
    return {c: [r[c] for r in rows] for c in names}


def sample_groups(policy: Any, prompts: list[str], *, k: int, max_new_tokens: int, seed: int, batch_size: int = 256,
                  progress: Callable[[int], None] | None = None) -> tuple[list[str], list[bool]]:
    """K completions per prompt (prompt-major order) and whether each ended with EOS (``rollout.sample``: prompts
    cut from the left to leave room for ``max_new_tokens``)."""
    from alignzoo import rollout as ro

    rollouts = ro.sample(policy, [p for p in prompts for _ in range(k)], max_new_tokens=max_new_tokens,
                         batch_size=batch_size, seed=seed, progress=progress)
    texts = [t for r in rollouts for t in r.texts(policy.tokenizer)]
    return texts, [e for r in rollouts for e in r.ended.tolist()]


def build_feedback(out_dir: Any, policy: Any, prompts: list[str], *, gold_fn: Callable[[list[str], list[bool]], list],
                   k: int, max_new_tokens: int, pool: list[Annotator], overlap_share: float, seed: int,
                   batch_size: int = 256, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Sample, score, label and save the feedback dataset into ``out_dir/data``; returns stage metadata."""
    import datasets

    texts, ended = sample_groups(policy, prompts, k=k, max_new_tokens=max_new_tokens, seed=seed,
                                 batch_size=batch_size, progress=progress)
    gold = [float(x) for x in gold_fn(texts, ended)]
    n_words = [len(t.split()) for t in texts]
    groups = [slice(i * k, (i + 1) * k) for i in range(len(prompts))]
    labels, stats = label_groups([gold[s] for s in groups], [n_words[s] for s in groups], pool,
                                 overlap_share=overlap_share, seed=seed + 1)
    rows = columns([feedback_row(prompt, texts[s], gold[s], ended[s], lab["ranking"], lab["annotator"])
                    for prompt, s, lab in zip(prompts, groups, labels)])
    datasets.Dataset.from_dict(rows).save_to_disk(str(out_dir / "data"))
    stats.update({"prompts": len(prompts), "completions_per_prompt": k, "mean_gold": float(np.mean(gold)),
                  "eos_share": float(np.mean(ended)), "mean_words": float(np.mean(n_words)),
                  "annotators": [a.__dict__ for a in pool]})
    return stats

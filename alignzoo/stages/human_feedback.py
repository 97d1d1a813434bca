"""The feedback stage with ``labeler=human``: judgments collected with ``alignzoo label`` become the feedback set.

Reads ``<labeler.path>/labels.jsonl`` (or a labels file given directly), keeps the last judgment of each annotator
on each comparison, drops ties and both-bad judgments (counted in the metadata), and writes the same columns as the
simulated stage (``alignzoo.stages.feedback.build_feedback``): prompt, chosen, rejected (the person's best and worst),
their gold scores and EOS flags, annotator, and the full completions / gold / ended / ranking for K-wise losses.
Gold scores are recomputed with the task's gold reward when it has one. The result is cached like every stage,
keyed on the hash of the labels file's content, so new judgments give a new feedback set (and reward model).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from alignzoo.errors import DataError
from alignzoo.stages.cache import StageResult, run_stage
from alignzoo.stages.feedback import columns, feedback_row

FORMAT = 1  # bump when the rows or metadata this stage writes change


def feedback_rows(pairs: list[dict[str, Any]], gold: list[list[float]], ended: list[list[bool]]) -> dict[str, list]:
    """The feedback dataset's columns from usable judgments and the gold scores / EOS flags of their completions."""
    return columns([feedback_row(r["prompt"], r["completions"], g, e, r["ranking"], r["annotator"])
                    for r, g, e in zip(pairs, gold, ended)])


def human_feedback(pipe: Any, policy: Any, path: str | Path, *, pool: list[Any] | None = None) -> StageResult:
    """The feedback stage's result for the labels in ``path`` (cached by their content hash). ``pipe`` gives
    ``ctx``, the task's ``gold`` scorer (or None) and ``data_key``; ``pool``: the simulated annotators the people's
    agreement is measured against (none: not measured)."""
    from alignzoo.label.agreement import is_pair, simulated_reference, summarize
    from alignzoo.label.store import labels_file, latest_judgments, read_jsonl, read_labels

    rows = latest_judgments(read_labels(path))
    f = labels_file(path)
    pairs = [r for r in rows if is_pair(r)]
    if not pairs:
        no_pref = len(rows) - len(pairs)
        raise DataError(f"labeler.path={path}: {f} holds no usable judgments ({len(rows)} judgment(s), {no_pref} of "
                        f"them ties or both bad); judge some comparisons with `alignzoo label --out {path}`")
    ks = sorted({len(r["completions"]) for r in pairs})
    if len(ks) > 1:
        raise DataError(f"labeler.path={path}: comparisons with different numbers of completions ({ks}) cannot form "
                        "one feedback set; label each K into its own folder")
    good = read_jsonl(f).good_bytes
    with open(f, "rb") as fh:
        digest = hashlib.sha256(fh.read(good)).hexdigest()
    gold_fn = getattr(pipe, "gold", None)
    config: dict[str, Any] = {"labels_sha256": digest, "format": FORMAT,
                              "gold": getattr(gold_fn, "missing_eos_penalty", None) if gold_fn else None,
                              **(getattr(pipe, "data_key", None) or {})}
    pool = list(pool or [])

    def build(out: Path) -> dict[str, Any]:
        import datasets

        ended = [[bool(x) for x in r["ended"]] if r.get("ended") else [True] * len(r["completions"]) for r in pairs]
        if gold_fn is not None:  # the task's gold reward, recomputed (labels from a file may carry none)
            flat = [c for r in pairs for c in r["completions"]]
            scores = gold_fn.score([], flat, [e for es in ended for e in es]).tolist()
            gold, i = [], 0
            for r in pairs:
                gold.append([float(s) for s in scores[i:i + len(r["completions"])]])
                i += len(r["completions"])
        else:
            gold = [[float(g) for g in r["gold"]] if r.get("gold") else [math.nan] * len(r["completions"])
                    for r in pairs]
        scored = [{**r, "gold": g} for r, g in zip(pairs, gold)]
        datasets.Dataset.from_dict(feedback_rows(pairs, gold, ended)).save_to_disk(str(out / "data"))
        refs = {"simulated": simulated_reference(pool)} if pool else {}
        summary = summarize([*scored, *(r for r in rows if not is_pair(r))], refs)
        inter = summary["inter_annotator"]
        return {
            "pairs": len(pairs), "judgments": len(rows), "ties": summary["ties"], "both_bad": summary["both_bad"],
            "agreement_with_gold": summary["vs"]["gold"]["agreement"],
            "gold_pairs": summary["vs"]["gold"]["pairs"],
            "agreement_with_simulated": summary["vs"]["simulated"]["agreement"] if pool else math.nan,
            "inter_annotator_agreement": inter["agreement"], "inter_annotator_pairs": inter["pairs"],
            "annotators": sorted(summary["annotators"]),
            "per_annotator_agreement_with_gold": {a: c["vs"]["gold"]["agreement"]
                                                  for a, c in summary["annotators"].items()},
            "completions_per_prompt": ks[0], "prompts": len({r["prompt"] for r in pairs}),
            "demonstrations": sum(1 for r in rows if r.get("demonstration")),
            "mean_seconds": summary["mean_seconds"], "labels_file": str(f.resolve()),
            "mean_gold": float(sum(sum(g) for g in gold) / sum(len(g) for g in gold)),
        }

    ctx = pipe.ctx
    result = run_stage(ctx.cache_dir, "feedback_human", config, build, note=ctx.note)
    m = result.meta
    ctx.record.notes.append(
        f"feedback: {m['pairs']} human pairs from {f} ({m['ties']} ties and {m['both_bad']} both-bad left out), "
        f"agreement with gold {m['agreement_with_gold']:.3f}, with the simulated annotators "
        f"{m['agreement_with_simulated']:.3f}, inter-annotator agreement {m['inter_annotator_agreement']:.3f}")
    return result

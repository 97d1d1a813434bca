"""Agreement of human judgments: with each other, with the gold reward, with a simulated annotator, with critics.

A *reference* is any function ``row -> P(reference prefers row's chosen over row's rejected)``, or ``None`` when it
has no opinion (e.g. equal gold scores). The gold reward and the simulated annotator model are built in; a critic
(RLAIF) plugs in the same way: ``compare(rows, {"gold": gold_reference, "critic": my_critic_reference})``.
Agreement with a reference is the mean of that probability over the pairs it has an opinion on. Two annotators
agree on a comparison when the later one also ranks the earlier one's chosen above its rejected (the definition
of the simulated stage, ``alignzoo.stages.feedback.label_groups``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from typing import Any, Callable, Optional, Sequence

from alignzoo.label.store import NO_PREFERENCE, latest_judgments

Reference = Callable[[dict[str, Any]], Optional[float]]
NAN = float("nan")


def is_pair(row: dict[str, Any]) -> bool:
    return row["judgment"] not in NO_PREFERENCE and len(row["ranking"]) >= 2


def best_worst(row: dict[str, Any]) -> tuple[int, int]:
    return row["ranking"][0], row["ranking"][-1]


def gold_reference(row: dict[str, Any]) -> Optional[float]:
    """1 if the gold reward scores chosen above rejected, 0 if below, no opinion on equal or unknown gold."""
    gold = row.get("gold")
    if not gold:
        return None
    b, w = best_worst(row)
    if gold[b] == gold[w]:
        return None
    return 1.0 if gold[b] > gold[w] else 0.0


def bradley_terry(delta: float, temperature: float) -> float:
    """P(a > b) = sigmoid((u_a - u_b) / T); T = 0 is the exact order (1/2 on a tie)."""
    if temperature <= 0:
        return 1.0 if delta > 0 else 0.0 if delta < 0 else 0.5
    z = delta / temperature
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def simulated_reference(pool: Sequence[Any]) -> Reference:
    """The simulated annotator pool (``alignzoo.stages.feedback.Annotator``: temperature, flip_rate, length_bias),
    one annotator drawn uniformly: P(prefers chosen over rejected) = mean over the pool of
    (1 - flip) * BT(du / T) + flip * (1 - BT(du / T)), du = gold difference + length_bias * word difference / 10.
    Plackett-Luce's pairwise marginal is this same Bradley-Terry probability, so it holds for K > 2 too."""

    def ref(row: dict[str, Any]) -> Optional[float]:
        gold = row.get("gold")
        if not gold or not pool:
            return None
        b, w = best_worst(row)
        comps = row["completions"]
        words = len(comps[b].split()) - len(comps[w].split())
        probs = []
        for a in pool:
            p = bradley_terry(gold[b] - gold[w] + a.length_bias * words / 10, a.temperature)
            probs.append((1 - a.flip_rate) * p + a.flip_rate * (1 - p))
        return sum(probs) / len(probs)

    return ref


def compare(rows: list[dict[str, Any]], references: dict[str, Reference]) -> dict[str, dict[str, float]]:
    """Agreement of the usable pairs in ``rows`` with each reference: ``{name: {"agreement", "pairs"}}``."""
    out = {}
    for name, ref in references.items():
        values = [v for v in (ref(r) for r in rows if is_pair(r)) if v is not None]
        out[name] = {"agreement": sum(values) / len(values) if values else NAN, "pairs": len(values)}
    return out


def inter_annotator(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Agreement between annotators on the comparisons that several of them judged (ties excluded): overall and
    per pair of annotators."""
    by_item: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if is_pair(r):
            by_item[r["item"]].append(r)
    agree: list[bool] = []
    per_pair: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for judged in by_item.values():
        judged.sort(key=lambda r: r.get("timestamp", ""))
        for first, second in combinations(judged, 2):
            b, w = best_worst(first)
            ok = second["ranking"].index(b) < second["ranking"].index(w)
            agree.append(ok)
            per_pair[tuple(sorted((first["annotator"], second["annotator"])))].append(ok)
    return {"agreement": sum(agree) / len(agree) if agree else NAN, "pairs": len(agree),
            "items": sum(1 for j in by_item.values() if len(j) > 1),
            "by_pair": {f"{a} / {b}": {"agreement": sum(v) / len(v), "pairs": len(v)}
                        for (a, b), v in sorted(per_pair.items())}}


def summarize(judgments: list[dict[str, Any]], references: Optional[dict[str, Reference]] = None) -> dict[str, Any]:
    """Counts and agreement tables of a labels file (the last judgment per item and annotator)."""
    refs = {"gold": gold_reference, **(references or {})}
    rows = latest_judgments(judgments)
    by_annotator: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_annotator[r["annotator"]].append(r)

    def counts(rs: list[dict[str, Any]]) -> dict[str, Any]:
        secs = [float(r.get("seconds") or 0.0) for r in rs]
        return {"judgments": len(rs), "pairs": sum(is_pair(r) for r in rs),
                "ties": sum(r["judgment"] == "tie" for r in rs),
                "both_bad": sum(r["judgment"] == "both_bad" for r in rs),
                "mean_seconds": sum(secs) / len(secs) if secs else NAN, "vs": compare(rs, refs)}

    inter = inter_annotator(rows)
    return {**counts(rows), "annotators": {a: counts(rs) for a, rs in sorted(by_annotator.items())},
            "items": len({r["item"] for r in rows}), "inter_annotator": inter}


def _fmt(x: float, n: int | None = None) -> str:
    if x != x:
        return "n/a"
    return f"{x:.3f}" + (f" ({n})" if n is not None else "")


def format_report(summary: dict[str, Any]) -> str:
    """The agreement tables as Markdown: one row per annotator and overall, then annotator pairs."""
    refs = list(summary["vs"])
    head = ["annotator", "judgments", "pairs", "ties", "both bad", *[f"agrees with {r} (pairs)" for r in refs],
            "mean seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in [*summary["annotators"].items(), ("**all**", summary)]:
        cells = [name, str(c["judgments"]), str(c["pairs"]), str(c["ties"]), str(c["both_bad"]),
                 *[_fmt(c["vs"][r]["agreement"], c["vs"][r]["pairs"]) for r in refs], _fmt(c["mean_seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    inter = summary["inter_annotator"]
    lines += ["", f"Inter-annotator agreement: {_fmt(inter['agreement'])} over {inter['pairs']} pair(s) of judgments "
              f"on {inter['items']} comparison(s) judged by several annotators."]
    if inter["by_pair"]:
        lines += ["", "| annotators | agreement | pairs |", "|---|---|---|"]
        lines += [f"| {k} | {_fmt(v['agreement'])} | {v['pairs']} |" for k, v in inter["by_pair"].items()]
    return "\n".join(lines)

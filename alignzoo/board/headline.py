"""What each task's track is judged by: its headline metric and the columns its table shows.

Tracks of different tasks measure different things (a gold reward, an answer's accuracy, agreement with held-out
human preferences), so every ranking, comparison, collapse rate, Pareto front, frontier column and plot of a track
reads its task's ``Headline``, never a fixed metric. Tasks render as separate sections with their own columns.

A task missing from ``HEADLINES`` (a plugin's) is judged by the first of ``FALLBACK_METRICS`` that any of its
track's records reports, with the generic columns; a record cannot pick its own headline, so two runs of one task
are never ranked by different metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

KL_METRIC = "eval/kl"  # the x axis of every frontier


@dataclass(frozen=True)
class Headline:
    metric: str  # what ranks the track's rows, e.g. "eval/gold_reward"
    label: str  # its short name in headers, legends and axis labels: "Gold reward"
    columns: tuple[tuple[str, str, int], ...]  # (metric, header, digits): the final-value columns of its table


_COST = (("cost/wall_time_s", "Wall time (s)", 0),)

HEADLINES: dict[str, Headline] = {
    "sentiment": Headline("eval/gold_reward", "Gold reward", (
        ("eval/gold_reward", "Gold reward", 3), ("eval/gold_reward_vs_reference", "Gain over SFT", 3),
        ("eval/kl", "KL (nats)", 2), ("eval/win_rate", "Win rate", 3), ("eval/length", "Length", 1), *_COST)),
    "arithmetic": Headline("eval/accuracy", "Accuracy", (
        ("eval/accuracy", "Accuracy", 3), ("eval/pass_at_8", "pass@8", 3), ("eval/format_rate", "Format rate", 3),
        ("eval/format_hack_rate", "Format-hack rate", 3), ("eval/kl", "KL (nats)", 2),
        ("eval/length", "Length", 1), *_COST)),
    "hf_preferences": Headline("eval/pref_accuracy", "Preference accuracy", (
        ("eval/pref_accuracy", "Preference accuracy", 3), ("eval/kl", "KL (nats)", 2),
        ("eval/length", "Length", 1), *_COST)),
}

#: the headline of a task not in HEADLINES: the first of these its records report (else the first, unscored)
FALLBACK_METRICS = ("eval/gold_reward", "eval/accuracy", "eval/pref_accuracy")


def _fallback(metric: str) -> Headline:
    label = metric.removeprefix("eval/").replace("_", " ").capitalize()
    return Headline(metric, label, ((metric, label, 3), ("eval/kl", "KL (nats)", 2), ("eval/length", "Length", 1),
                                    *_COST))


def headline_of(task: str, records: Iterable[dict[str, Any]] = ()) -> Headline:
    """The headline of ``task``'s track (``records``: the track's runs, read only for a task not in HEADLINES)."""
    if task in HEADLINES:
        return HEADLINES[task]
    reported = {k for r in records for k in (r.get("metrics") or {})}
    return _fallback(next((m for m in FALLBACK_METRICS if m in reported), FALLBACK_METRICS[0]))

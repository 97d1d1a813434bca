"""Matched-KL comparison: a row's headline at fixed KL budgets and the area under its frontier, from the
checkpoints every run evaluated (``record.history``), not from its final point alone.

Ranking rows by their final headline ignores what each paid in KL (a policy 11 nats from the reference against one
at 1.8), and averaging final points over seeds yields a KL that no policy has. So, per seed:

- **checkpoints**: every history entry with a finite ``eval/kl`` and headline (``eval/<metric>``), and where the
  run scored it, the headline on the task's validation prompts (``val/<metric>``);
- **envelope at budget b**: among the checkpoints with KL <= b, the one with the best *validation* headline
  (ties: lower KL, then earlier step), reported by its *test* headline, so the choice never peeks at the numbers
  it reports. A run without validation metrics on every candidate selects by the test headline itself
  (``selected_by`` says "test": an optimistic pick). The envelope is non-decreasing in b in the selection metric;
- **n/a**: a budget below the seed's smallest checkpoint KL (no checkpoint within it);
- **area**: ``(1/K) * integral_0^K E(k) dk`` of the envelope E as a step function of the budget (constant between
  checkpoint KLs), over the common range [0, K] with K = ``AREA_KL``: the mean headline over budgets drawn
  uniformly from [0, K]; n/a unless the seed has a checkpoint at KL <= 0 (its evaluation before training).

Per row: the mean and interval (``stats.summaries``) over its seeds, and n/a unless every counted seed has a value
(a mean over the seeds that reached a budget would compare different seeds across columns). A best-of-N row's KL
is the analytic ``log N - (N-1)/N``, an upper bound on its true KL (``kl_bound``): its frontier is conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

KL_BUDGETS = (2.0, 5.0, 10.0)  # nats: the matched-KL columns
AREA_KL = 10.0  # K: the area under the frontier spans budgets [0, K]
KL_METRIC = "eval/kl"
BOUND_MARK = "train/analytic_kl"  # a record metric that says eval/kl is an analytic bound (best-of-N)
FRONTIER_RULE = (f"matched KL: per seed, at each budget b in {', '.join(f'{b:g}' for b in KL_BUDGETS)} nats, the "
                 f"checkpoint (every evaluation in the run's history) with {KL_METRIC} <= b and the best headline on "
                 "the validation prompts (val/<metric>), reported by its test headline (selected by the test headline "
                 "where a run has no validation metrics); n/a below the seed's smallest checkpoint KL. Area: the "
                 f"envelope as a step function of the budget, integrated over [0, {AREA_KL:g}] nats and divided by "
                 f"{AREA_KL:g}. Mean and interval over seeds; n/a unless every seed has a value")


def budget_key(budget: float) -> str:
    """"at_kl_2": a budget's column key in ``leaderboard.json``."""
    return f"at_kl_{budget:g}"


def val_key(metric: str) -> str:
    """``eval/gold_reward`` -> ``val/gold_reward``: where a history entry holds the validation-split score."""
    return "val/" + metric.removeprefix("eval/")


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


@dataclass(frozen=True)
class Checkpoint:
    step: Any  # as the history holds it (an int)
    kl: float
    test: float  # the headline on the test (eval) prompts
    val: Optional[float]  # the headline on the validation prompts; None where the run did not score it


def checkpoints(history: Iterable[Any], metric: str) -> list[Checkpoint]:
    """The usable checkpoints of one run's history: entries with a finite step, KL and test headline."""
    out = []
    for entry in history or []:
        if not isinstance(entry, dict):
            continue
        step, kl, test = (_number(entry.get(k)) for k in ("step", KL_METRIC, metric))
        if step is not None and kl is not None and test is not None:
            out.append(Checkpoint(entry["step"], kl, test, _number(entry.get(val_key(metric)))))
    return out


def pick(points: Sequence[Checkpoint], budget: float) -> tuple[Optional[Checkpoint], str]:
    """(the checkpoint the envelope reports at ``budget``, "val" | "test": what chose it); (None, ...) when no
    checkpoint is within the budget."""
    within = [p for p in points if p.kl <= budget]
    by = "val" if within and all(p.val is not None for p in within) else "test"
    score = (lambda p: p.val) if by == "val" else (lambda p: p.test)
    best = min(within, key=lambda p: (-score(p), p.kl, p.step), default=None)
    return best, by


def at_budget(points: Sequence[Checkpoint], budget: float) -> Optional[float]:
    """The envelope's test headline at ``budget``; None (n/a) below the smallest checkpoint KL."""
    best, _ = pick(points, budget)
    return None if best is None else best.test


def area(points: Sequence[Checkpoint], k: float = AREA_KL) -> Optional[float]:
    """``(1/k) * integral_0^k E(b) db`` of the step-function envelope; None without a checkpoint at KL <= 0."""
    if not points or min(p.kl for p in points) > 0:
        return None
    edges = sorted({0.0, *(p.kl for p in points if 0 < p.kl < k)}) + [k]
    return sum((hi - lo) * at_budget(points, lo) for lo, hi in zip(edges, edges[1:])) / k  # type: ignore[operator]


def seed_frontier(history: Iterable[Any], metric: str) -> dict[str, Any]:
    """One seed's matched-KL values: {"at_kl_2": value | None, ..., "area": value | None, "steps": {key: step},
    "selected_by": "val" | "test"} ("test" when any budget fell back to the test headline)."""
    points = checkpoints(history, metric)
    out: dict[str, Any] = {"steps": {}, "selected_by": "val"}
    for b in KL_BUDGETS:
        best, by = pick(points, b)
        out[budget_key(b)] = None if best is None else best.test
        out["steps"][budget_key(b)] = None if best is None else best.step
        if best is not None and by == "test":
            out["selected_by"] = "test"
    out["area"] = area(points)
    if not points:
        out["selected_by"] = None
    return out


def columns() -> list[str]:
    """The frontier's value keys in column order: one per budget, then the area."""
    return [budget_key(b) for b in KL_BUDGETS] + ["area"]


def row_values(seeds: Sequence[dict[str, Any]]) -> dict[str, list[float]]:
    """{column: per-seed values} for the columns every seed has a value in (the others are left out: n/a)."""
    return {c: [s[c] for s in seeds] for c in columns() if seeds and all(s[c] is not None for s in seeds)}


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which (kl, headline) points no other point dominates (lower or equal KL and higher or equal headline, one of
    them strictly)."""
    return [not any(k2 <= k and h2 >= h and (k2 < k or h2 > h) for k2, h2 in points) for k, h in points]

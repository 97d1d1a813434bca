"""Reward over-optimization (Gao et al. 2022), flagged from a run's evaluation history.

A policy over-optimizes its proxy when the proxy reward keeps rising while the gold reward stalls or falls.
Computed once per run from ``record.history`` (the proxy is ``eval/proxy_reward``, the gold ``eval/gold_reward``).
"""

from __future__ import annotations

from typing import Any, Optional

PROXY, GOLD = "eval/proxy_reward", "eval/gold_reward"


def overoptimization(history: list[dict[str, Any]], *, tol: float = 0.02) -> Optional[dict[str, float]]:
    """None when the history lacks three evaluations with both rewards; otherwise the flag and its evidence.

    Flagged when (a) after the step where gold peaked, the proxy still rose by more than ``tol`` while gold fell
    by more than ``tol`` from its peak, or (b) over the whole run the proxy rose by more than ``tol`` while gold
    ended no higher than it started (a stall).
    """
    points = [(h["step"], h[PROXY], h[GOLD]) for h in history if PROXY in h and GOLD in h]
    if len(points) < 3:
        return None
    peak = max(range(len(points)), key=lambda i: points[i][2])
    proxy_after_peak = points[-1][1] - points[peak][1]
    gold_drop = points[peak][2] - points[-1][2]
    proxy_gain = points[-1][1] - points[0][1]
    gold_gain = points[-1][2] - points[0][2]
    fell = proxy_after_peak > tol and gold_drop > tol
    stalled = proxy_gain > tol and gold_gain <= 0
    return {"overoptimized": float(fell or stalled), "gold_peak_step": float(points[peak][0]),
            "gold_drop_from_peak": gold_drop, "proxy_gain_after_gold_peak": proxy_after_peak,
            "proxy_gain": proxy_gain, "gold_gain": gold_gain}


def describe(flag: dict[str, float]) -> str:
    if not flag["overoptimized"]:
        return "over-optimization: not detected (gold reward followed the proxy)"
    return (f"over-optimization: the proxy reward rose by {flag['proxy_gain']:+.3f} over the run while the gold reward "
            f"changed by {flag['gold_gain']:+.3f} (it peaked at step {int(flag['gold_peak_step'])} and then fell by "
            f"{flag['gold_drop_from_peak']:.3f}); the policy is exploiting the reward model")

"""Small statistics for summaries over seeds: mean and a 95% confidence interval (Student's t)."""

from __future__ import annotations

import math
from typing import Sequence

# two-sided 95% critical values of Student's t for 1..30 degrees of freedom
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t_critical(df: int) -> float:
    if df < 1:
        return float("nan")
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # close to the exact value beyond 30


def mean_ci(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% t-interval; low = high = mean for a single value."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return float("nan"), float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return m, m, m
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    half = t_critical(len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, m - half, m + half

"""Confidence intervals over seeds: the mean and a seeded percentile bootstrap.

The interval of ``values`` (n numbers, one per seed) is computed exactly as::

    rng = numpy.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))   # resamples x n draws with replacement
    means = values[idx].mean(axis=1)
    lo, hi = numpy.percentile(means, [2.5, 97.5])     # level 0.95; numpy's default (linear) interpolation

so anyone can recompute it. With n = 1 every resample is the value itself: the interval is the point. With n = 3 a
bootstrap interval is narrow (it cannot see beyond the observed range); read it with ``n`` beside it.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

RESAMPLES = 2000  # bootstrap resamples per interval
SEED = 0  # the generator seed of every interval (the board is reproducible byte for byte)
LEVEL = 0.95  # two-sided coverage


@lru_cache(maxsize=64)
def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """The resampling indices; they depend only on n, so every metric with n values shares them."""
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    idx.setflags(write=False)
    return idx


def finite(values: Sequence[object]) -> list[float]:
    """The finite numbers among ``values`` (None, NaN, inf, strings and bools dropped)."""
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        f = float(v)
        if math.isfinite(f):
            out.append(f)
    return out


def bootstrap_ci(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = SEED,
                 level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of a percentile-bootstrap interval of the mean; NaNs for no values."""
    xs = np.asarray(finite(values), dtype=float)
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(xs.mean())
    if n == 1:
        return mean, mean, mean, 1
    means = xs[_indices(n, resamples, seed)].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return mean, float(lo), float(hi), n


def summaries(columns: dict[str, Sequence[float]], *, resamples: int = RESAMPLES, seed: int = SEED,
              level: float = LEVEL) -> dict[str, dict[str, float | int | None]]:
    """``summary`` of many metrics at once: the same numbers, computed in batches of metrics with the same n."""
    out: dict[str, dict[str, float | int | None]] = {}
    by_n: dict[int, list[tuple[str, list[float]]]] = {}
    for name, values in columns.items():
        xs = finite(values)
        if len(xs) < 2:
            out[name] = summary(xs)
        else:
            by_n.setdefault(len(xs), []).append((name, xs))
    tail = 100 * (1 - level) / 2
    for n, items in by_n.items():
        idx = _indices(n, resamples, seed)
        step = max(1, 4_000_000 // (resamples * n))  # metrics per batch: at most ~4M numbers in memory
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            matrix = np.asarray([xs for _, xs in chunk], dtype=float)  # metrics x n
            means = matrix[:, idx].mean(axis=2)  # metrics x resamples
            bounds = np.percentile(means, [tail, 100 - tail], axis=1)
            for j, (name, _) in enumerate(chunk):
                out[name] = {"mean": float(matrix[j].mean()), "lo": float(bounds[0, j]), "hi": float(bounds[1, j]),
                             "n": n}
    return {name: out[name] for name in columns}


def summary(values: Sequence[float], **kw: object) -> dict[str, float | int | None]:
    """``{"mean", "lo", "hi", "n"}`` with None for a missing value (JSON has no NaN)."""
    mean, lo, hi, n = bootstrap_ci(values, **kw)  # type: ignore[arg-type]
    clean = lambda x: None if math.isnan(x) else x  # noqa: E731
    return {"mean": clean(mean), "lo": clean(lo), "hi": clean(hi), "n": n}

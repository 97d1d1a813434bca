"""Statistics over seeds: intervals of the mean that cover, metric ranges, and the tests that rank rows.

**Interval of a mean** (``interval``; ``values`` are n numbers, one per seed; level 0.95):

- n = 0: nothing; n = 1: the value with no interval (``lo``/``hi`` are None: one seed says nothing about spread);
- 2 <= n < ``BCA_FROM_N`` (10): the Student-t interval ``mean -+ t(1 - (1-level)/2, n-1) * sd / sqrt(n)`` (``sd`` with
  n - 1 in the denominator). A percentile bootstrap over 3 seeds covers the true mean about 75% of the time;
  the t-interval covers at its level when seeds are roughly normal;
- n >= 10: the BCa bootstrap (Efron and Tibshirani 1993, 14.3), seeded so a rebuild gives the same numbers::

      idx = numpy.random.default_rng(SEED).integers(0, n, size=(RESAMPLES, n))
      boot = values[idx].mean(axis=1)                               # RESAMPLES bootstrap means
      z0 = Phi^-1((#(boot < mean) + #(boot <= mean)) / (2 RESAMPLES)) # bias correction
      jack_i = mean of values without value i; d_i = mean(jack) - jack_i
      a = sum(d^3) / (6 sum(d^2)^1.5)                               # acceleration
      q(z) = Phi(z0 + (z0 + z) / (1 - a (z0 + z)))
      lo, hi = the q(Phi^-1((1-level)/2)) and q(Phi^-1((1+level)/2)) quantiles of boot (linear interpolation)

  which is ``scipy.stats.bootstrap(method="BCa")`` exactly when given the same generator seed and resample count.
  If every value is equal the interval is the point (there is no spread to resample). Bootstrap intervals cover
  less than their level at small n: on normal seeds about 90% at n = 10 to 12 and 92% at n = 20 (simulated), so
  read ``n`` beside them.

**Ranges** (``METRIC_RANGES``): an interval never leaves its metric's range. A t-interval is symmetric and would
(KL 24.8 [-12.0, 61.6] nats over three seeds of 39.8, 10.2 and 24.2): bounds are clipped to the range of the
metric's name (KL and costs >= 0, shares, rates, win rates and accuracies in [0, 1], correlations in [-1, 1]; the
gold reward and anything unknown are unbounded) and ``clipped`` says so.

**Tests** (``welch``, ``paired``, ``holm``): two-sided Welch and paired t-tests over seeds, Holm's step-down
correction over a family of tests. Quantiles and tail probabilities of Student's t and of the normal come from
``scipy.special``.

**Paired bootstrap over seeds x prompts** (``paired_bootstrap``): rows A and B hold per-prompt scores on the same
P prompts, ``a`` (Sa seeds x P) and ``b`` (Sb seeds x P). The difference is ``mean(a) - mean(b)``; each of
``PAIR_RESAMPLES`` resamples draws, from ``numpy.random.default_rng(SEED)`` in this order::

      sa = rng.integers(0, Sa, size=(R, Sa)); sb = rng.integers(0, Sb, size=(R, Sb))  # seeds, each row its own
      pr = rng.integers(0, P, size=(R, P))                     # prompts, the same indices for both rows (paired)
      boot_r = mean_{j} (mean_i a[sa_ri, pr_rj] - mean_i b[sb_ri, pr_rj])

  the interval is the percentile interval of ``boot`` (the (1-level)/2 and (1+level)/2 quantiles, linear
  interpolation), and the two-sided p is ``min(1, 2 min(#(boot <= 0) + 1, #(boot >= 0) + 1) / (R + 1))``: how often
  the resampled difference lands on the other side of 0 (never 0: R resamples cannot show p below 2 / (R + 1)).
  Resampling prompts jointly keeps the prompt effect (some prompts are easy for every policy) out of the
  difference; resampling seeds keeps the seed-to-seed spread in it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

import numpy as np
from scipy.special import ndtr, ndtri, stdtr, stdtrit

LEVEL = 0.95  # two-sided coverage of every interval
BCA_FROM_N = 10  # n at which the interval switches from Student-t to BCa
RESAMPLES = 2000  # bootstrap resamples per BCa interval
SEED = 0  # the generator seed of every bootstrap (the board is reproducible byte for byte)
PAIR_RESAMPLES = 2000  # resamples of each paired bootstrap over seeds x prompts
PAIRED_BOOTSTRAP = "paired bootstrap (seeds x prompts)"  # the test name of paired_bootstrap's comparisons
ALPHA = 0.05  # family-wise error rate of the Holm-corrected tests
INTERVAL_METHOD = (f"mean over seeds; Student-t interval at n < {BCA_FROM_N}, seeded BCa bootstrap at n >= "
                   f"{BCA_FROM_N}; bounds clipped to the metric's range; no interval for one seed")

#: (metric name pattern, low, high): the first pattern that matches a name gives its range; None is unbounded
METRIC_RANGES: list[tuple[str, Optional[float], Optional[float]]] = [
    (r"(^|/)(kl|approx_kl)$", 0.0, None),  # a KL divergence (its estimate's mean over seeds of a >= 0 quantity)
    (r"_(std|se)$", 0.0, None),  # standard deviations and standard errors
    (r"(share|rate|accuracy|clipfrac|overoptimized|repetition|distinct_\d+|pass_at_\d+)$", 0.0, 1.0),  # fractions
    (r"(pearson|spearman|spearman_heldout)$", -1.0, 1.0),  # correlations
    (r"^cost/|(^|/)length$", 0.0, None),  # seconds, tokens, megabytes, tokens per response
]


def metric_range(name: str) -> tuple[Optional[float], Optional[float]]:
    """(low, high) of a metric by its name (``METRIC_RANGES``); (None, None) when unknown or unbounded."""
    for pattern, lo, hi in METRIC_RANGES:
        if re.search(pattern, name):
            return lo, hi
    return None, None


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


def t_quantile(p: float, df: float) -> float:
    """The p quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    return float(stdtrit(df, p))


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's T with ``df`` degrees of freedom; an infinite t (no spread) gives 0."""
    return float(2 * stdtr(df, -abs(t)))


# -- intervals --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """The resampling indices; they depend only on n, so every metric with n values shares them."""
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    idx.setflags(write=False)
    return idx


def t_intervals(matrix: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Student-t intervals of the mean of each row of ``matrix`` (rows x n, n >= 2)."""
    n = matrix.shape[1]
    half = t_quantile(1 - (1 - level) / 2, n - 1) * matrix.std(axis=1, ddof=1) / math.sqrt(n)
    mean = matrix.mean(axis=1)
    return mean - half, mean + half


def _quantiles(sorted_rows: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row i's q[i] quantile of ``sorted_rows`` by linear interpolation (numpy's default method), vectorized."""
    pos = np.clip(q, 0.0, 1.0) * (sorted_rows.shape[1] - 1)
    below = np.floor(pos).astype(int)
    above = np.minimum(below + 1, sorted_rows.shape[1] - 1)
    rows = np.arange(len(q))
    low, high = sorted_rows[rows, below], sorted_rows[rows, above]
    return low + (pos - below) * (high - low)


def bca_intervals(matrix: np.ndarray, level: float = LEVEL, *, resamples: int = RESAMPLES,
                  seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """BCa bootstrap intervals of the mean of each row of ``matrix`` (rows x n), as the module docstring writes."""
    n = matrix.shape[1]
    mean = matrix.mean(axis=1)
    boot = np.sort(matrix[:, _indices(n, resamples, seed)].mean(axis=2), axis=1)  # rows x resamples
    share = ((boot < mean[:, None]).sum(axis=1) + (boot <= mean[:, None]).sum(axis=1)) / (2 * resamples)
    z0 = ndtri(np.clip(share, 0.5 / resamples, 1 - 0.5 / resamples))  # finite even if every mean lies on one side
    jack = (matrix.sum(axis=1, keepdims=True) - matrix) / (n - 1)
    d = jack.mean(axis=1, keepdims=True) - jack
    spread = (d ** 2).sum(axis=1)
    flat = spread == 0  # every value equal: no spread, the interval is the point
    accel = np.where(flat, 0.0, (d ** 3).sum(axis=1) / (6 * np.where(flat, 1.0, spread) ** 1.5))
    tail = ndtri((1 - level) / 2)
    bounds = []
    for z in (tail, -tail):
        q = ndtr(z0 + (z0 + z) / (1 - accel * (z0 + z)))
        bounds.append(np.where(flat, mean, _quantiles(boot, q)))
    return bounds[0], bounds[1]


def _row_stats(matrix: np.ndarray, level: float, resamples: int, seed: int) -> list[dict[str, object]]:
    """``interval`` of every row of ``matrix`` (rows x n, one n for all rows)."""
    n = matrix.shape[1]
    mean, median = matrix.mean(axis=1), np.median(matrix, axis=1)
    if n == 1:
        return [{"mean": float(m), "lo": None, "hi": None, "n": 1, "median": float(m), "sd": None, "method": None}
                for m in mean]
    sd = matrix.std(axis=1, ddof=1)
    method = "bca" if n >= BCA_FROM_N else "t"
    lo, hi = (bca_intervals(matrix, level, resamples=resamples, seed=seed) if method == "bca"
              else t_intervals(matrix, level))
    return [{"mean": float(mean[i]), "lo": float(lo[i]), "hi": float(hi[i]), "n": n, "median": float(median[i]),
             "sd": float(sd[i]), "method": method} for i in range(len(mean))]


EMPTY = {"mean": None, "lo": None, "hi": None, "n": 0, "median": None, "sd": None, "method": None}


def interval(values: Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES,
             seed: int = SEED) -> dict[str, object]:
    """``{"mean", "lo", "hi", "n", "median", "sd", "method"}`` of the finite ``values``; None where undefined
    (JSON has no NaN). ``method`` is "t", "bca" or None (n < 2: no interval)."""
    xs = finite(values)
    if not xs:
        return dict(EMPTY)
    return _row_stats(np.asarray([xs], dtype=float), level, resamples, seed)[0]


def summaries(columns: dict[object, Sequence[float]], *, level: float = LEVEL, resamples: int = RESAMPLES,
              seed: int = SEED) -> dict[object, dict[str, object]]:
    """``interval`` of many columns at once: the same numbers, computed in batches of columns with the same n."""
    out: dict[object, dict[str, object]] = {}
    by_n: dict[int, list[tuple[object, list[float]]]] = {}
    for name, values in columns.items():
        xs = finite(values)
        if xs:
            by_n.setdefault(len(xs), []).append((name, xs))
        else:
            out[name] = dict(EMPTY)
    for n, items in by_n.items():
        step = max(1, 4_000_000 // (resamples * n))  # columns per batch: at most ~4M bootstrap numbers in memory
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            rows = _row_stats(np.asarray([xs for _, xs in chunk], dtype=float), level, resamples, seed)
            out.update({name: row for (name, _), row in zip(chunk, rows)})
    return {name: out[name] for name in columns}


def within_range(stat: dict[str, object], name: str) -> dict[str, object]:
    """``stat`` with its bounds clipped to the range of the metric ``name``; ``clipped`` says whether they were."""
    low, high = metric_range(name)
    out, clipped = dict(stat), False
    for key in ("lo", "hi"):
        v = out.get(key)
        if v is None:
            continue
        bounded = v if low is None else max(v, low)
        bounded = bounded if high is None else min(bounded, high)
        clipped = clipped or bounded != v
        out[key] = bounded
    out["clipped"] = clipped
    return out


# -- tests ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """A difference of means (a - b) over seeds with its interval and two-sided p-value."""

    test: str  # "paired t" (the same seeds in both rows: per-seed differences), "Welch t" or PAIRED_BOOTSTRAP
    diff: float
    lo: float
    hi: float
    p: float
    n: int  # pairs (paired), the smaller of the two counts (Welch) or the prompts (paired bootstrap)


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Optional[Comparison]:
    """Welch's unequal-variance t-test of mean(a) - mean(b) (``scipy.stats.ttest_ind(equal_var=False)``) and its
    interval (Welch-Satterthwaite degrees of freedom); None when a row has fewer than 2 values. Two rows without
    any spread differ for certain when their means differ (p = 0) and not at all when they are equal (p = 1)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(xa) < 2 or len(xb) < 2:
        return None
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    diff, se = float(xa.mean() - xb.mean()), math.sqrt(va + vb)
    if se == 0:
        return Comparison("Welch t", diff, diff, diff, 0.0 if diff else 1.0, min(len(xa), len(xb)))
    df = (va + vb) ** 2 / (va ** 2 / (len(xa) - 1) + vb ** 2 / (len(xb) - 1))
    half = t_quantile(1 - (1 - level) / 2, df) * se
    return Comparison("Welch t", diff, diff - half, diff + half, two_sided_p(diff / se, df), min(len(xa), len(xb)))


def paired(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Optional[Comparison]:
    """The paired t-test of the per-seed differences a_i - b_i (``scipy.stats.ttest_rel``) and the t-interval of
    their mean; None for fewer than 2 pairs. Constant differences have no variance for t to use (its p would be 0
    at any n): their p is the exact sign-flip test's instead, 2 / 2^n if they are not 0 (0.25 at three seeds: three
    equal gains are not evidence), else 1."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(d) < 2:
        return None
    diff, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(len(d))
    if se == 0:
        return Comparison("sign-flip", diff, diff, diff, min(1.0, 2.0 / 2 ** len(d)) if diff else 1.0, len(d))
    half = t_quantile(1 - (1 - level) / 2, len(d) - 1) * se
    return Comparison("paired t", diff, diff - half, diff + half, two_sided_p(diff / se, len(d) - 1), len(d))


def compare(a: dict[object, float], b: dict[object, float], level: float = LEVEL) -> Optional[Comparison]:
    """Row a against row b, each {seed: value}: paired on the per-seed differences when both rows hold the same
    seeds, else Welch. None when either row has fewer than 2 values."""
    if set(a) == set(b):
        seeds = sorted(a, key=lambda s: (isinstance(s, str), s))
        return paired([a[s] for s in seeds], [b[s] for s in seeds], level)
    return welch(list(a.values()), list(b.values()), level)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, level: float = LEVEL, *, resamples: int = PAIR_RESAMPLES,
                     seed: int = SEED) -> Optional[Comparison]:
    """mean(a) - mean(b) for per-prompt scores ``a`` (seeds x prompts) and ``b`` (seeds x the same prompts, same
    column order), with the two-level bootstrap's percentile interval and p (module docstring); None when a row has
    fewer than 2 seeds or there are fewer than 2 prompts (nothing to resample)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"paired_bootstrap needs seeds x prompts on the same prompts, got {a.shape} and {b.shape}")
    (sa, prompts), sb = a.shape, b.shape[0]
    if sa < 2 or sb < 2 or prompts < 2:
        return None
    rng = np.random.default_rng(seed)
    ia, ib = rng.integers(0, sa, size=(resamples, sa)), rng.integers(0, sb, size=(resamples, sb))
    ip = rng.integers(0, prompts, size=(resamples, prompts))
    per_prompt = a[ia].mean(axis=1) - b[ib].mean(axis=1)  # resamples x prompts: seed-resampled row difference
    boot = np.take_along_axis(per_prompt, ip, axis=1).mean(axis=1)
    diff = float(a.mean() - b.mean())
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    tail = min(int((boot <= 0).sum()), int((boot >= 0).sum())) + 1
    p = min(1.0, 2 * tail / (resamples + 1))
    return Comparison(PAIRED_BOOTSTRAP, diff, float(lo), float(hi), p, prompts)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: sort ascending, p_(i) * (m - i + 1) for i = 1..m,
    made monotone by a running maximum and capped at 1. A test is significant at family-wise level alpha when its
    adjusted p <= alpha."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        adjusted[i] = running
    return adjusted

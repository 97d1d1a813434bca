"""The board's statistics (alignzoo/board/stats.py) against scipy and hand computations: Student-t and BCa intervals,
their coverage, metric ranges, Welch and paired tests, Holm, and the ranks, comparisons and collapse rates that
alignzoo/board/aggregate.py builds from them."""

import numpy as np
import pytest

from alignzoo.board import stats
from alignzoo.board.aggregate import group_records
from alignzoo.board.tables import fmt, fmt_comparison

scipy_stats = pytest.importorskip("scipy.stats")

SKEWED = [0.61, 0.16, 0.62, 0.28, 0.78, 0.69, 0.47, 0.55, 0.71, 0.12, 0.66, 0.59]  # n = 12: the BCa regime


# -- intervals --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[0.31, 0.22], [0.31, 0.22, 0.27], [1.5, -2.0, 0.25, 8.0, 3.0],
                                    list(np.linspace(0, 1, 9))])
def test_t_interval_matches_scipy_below_ten_seeds(values):
    x = np.asarray(values)
    lo, hi = scipy_stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    got = stats.interval(values)
    assert got["method"] == "t" and got["n"] == len(x)
    assert (got["mean"], got["lo"], got["hi"]) == pytest.approx((x.mean(), lo, hi), abs=1e-12)
    assert (got["median"], got["sd"]) == pytest.approx((np.median(x), x.std(ddof=1)), abs=1e-12)


def test_bca_is_scipys_bca_on_the_same_resamples():
    """scipy draws its resamples as ``rng.integers(0, n, (resamples, n))``, as the board does: with the same
    generator seed and count the intervals agree to rounding."""
    for resamples, seed in ((2000, 1), (5000, 7)):
        got = stats.interval(SKEWED, resamples=resamples, seed=seed)
        res = scipy_stats.bootstrap((np.asarray(SKEWED),), np.mean, n_resamples=resamples, method="BCa", rng=seed)
        assert got["method"] == "bca"
        assert (got["lo"], got["hi"]) == pytest.approx(tuple(res.confidence_interval), abs=1e-12)


def test_bca_agrees_with_scipy_within_monte_carlo_error():
    """The board's interval (2000 resamples, seed 0) against scipy's with 100,000 resamples: within 0.3 standard
    errors of the mean, about 5 Monte-Carlo standard errors of a 2000-resample tail quantile."""
    x = np.asarray(SKEWED)
    got = stats.interval(x)
    res = scipy_stats.bootstrap((x,), np.mean, n_resamples=100_000, method="BCa", rng=1)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert got["lo"] == pytest.approx(res.confidence_interval.low, abs=0.3 * se)
    assert got["hi"] == pytest.approx(res.confidence_interval.high, abs=0.3 * se)


def test_method_switches_at_ten_and_degenerate_cases():
    assert stats.interval(SKEWED[:9])["method"] == "t" and stats.interval(SKEWED[:10])["method"] == "bca"
    one = stats.interval([0.7, float("nan"), None])  # non-finite values are dropped: one seed left
    assert one == {"mean": 0.7, "lo": None, "hi": None, "n": 1, "median": 0.7, "sd": None, "method": None}
    assert fmt(one, 3) == "0.700 (n=1)"  # shown as n=1, never as a made-up interval
    assert stats.interval([]) == {"mean": None, "lo": None, "hi": None, "n": 0, "median": None, "sd": None,
                                  "method": None}
    for n in (3, 12):  # no spread: the interval is the point, for t and for BCa alike
        flat = stats.interval([0.25] * n)
        assert (flat["lo"], flat["hi"]) == (0.25, 0.25)


def test_summaries_batch_equals_one_by_one():
    columns = {"a": SKEWED, "b": SKEWED[::-1], "c": SKEWED[:3], "d": [1.0], "e": []}
    assert stats.summaries(columns) == {k: stats.interval(v) for k, v in columns.items()}


@pytest.mark.parametrize("n", [3, 5])
def test_interval_covers_the_true_mean_at_small_n(n):
    """2,000 synthetic groups of n normal seeds (seeded): the 95% interval covers the true mean at least 93% of the
    time (the percentile bootstrap this replaced covered 75% at n = 3)."""
    true_mean = 1.0
    groups = np.random.default_rng(n).normal(true_mean, 2.0, size=(2000, n))
    out = stats.summaries({i: row for i, row in enumerate(groups)})
    coverage = np.mean([s["lo"] <= true_mean <= s["hi"] for s in out.values()])
    print(f"coverage at n={n}: {coverage:.3f}")
    assert coverage >= 0.93


# -- ranges -----------------------------------------------------------------------------------------------------

def test_metric_ranges_by_name():
    cases = {"eval/kl": (0.0, None), "train/kl": (0.0, None), "eval/eos_share": (0.0, 1.0),
             "eval/win_rate": (0.0, 1.0), "eval/truncated_share": (0.0, 1.0), "reward/heldout_accuracy": (0.0, 1.0),
             "eval/rm_gold_spearman": (-1.0, 1.0), "cost/wall_time_s": (0.0, None), "eval/length": (0.0, None),
             "eval/gold_reward": (None, None), "eval/gold_reward_vs_reference": (None, None),
             "eval/proxy_reward": (None, None), "eval/kl_k1_std": (0.0, None), "my/metric": (None, None),
             "eval/pass_at_8": (0.0, 1.0), "eval/format_hack_rate": (0.0, 1.0), "eval/length_gen_accuracy": (0.0, 1.0),
             "eval/kl_se": (0.0, None)}
    assert {name: stats.metric_range(name) for name in cases} == cases


def test_intervals_never_leave_their_metrics_range():
    kl = stats.within_range(stats.interval([39.84, 10.23, 24.21]), "eval/kl")  # dpo beta=0.1 on the published board
    raw = stats.interval([39.84, 10.23, 24.21])
    assert raw["lo"] < 0 and (kl["lo"], kl["hi"], kl["clipped"]) == (0.0, raw["hi"], True)
    eos = stats.within_range(stats.interval([0.998, 0.93, 0.982]), "eval/eos_share")
    assert eos["hi"] == 1.0 and eos["lo"] == pytest.approx(stats.interval([0.998, 0.93, 0.982])["lo"])
    gold = stats.within_range(raw, "eval/gold_reward")  # gold as it is: no range
    assert (gold["lo"], gold["hi"], gold["clipped"]) == (raw["lo"], raw["hi"], False)
    assert stats.within_range(stats.interval([0.5]), "eval/win_rate") == {**stats.interval([0.5]), "clipped": False}


# -- tests and Holm ---------------------------------------------------------------------------------------------

A, B = [0.30, 0.20, 0.25, 0.40], [0.10, 0.30, 0.05]


def test_welch_matches_scipy():
    c = stats.welch(A, B)
    ref = scipy_stats.ttest_ind(A, B, equal_var=False)
    lo, hi = ref.confidence_interval(0.95)
    assert c.test == "Welch t" and c.n == 3
    assert (c.diff, c.lo, c.hi, c.p) == pytest.approx((np.mean(A) - np.mean(B), lo, hi, ref.pvalue), abs=1e-12)
    assert stats.welch(A, [0.1]) is None  # one value: no variance, no test


def test_paired_matches_scipy():
    b = [0.10, 0.30, 0.05, 0.20]
    c = stats.paired(A, b)
    ref = scipy_stats.ttest_rel(A, b)
    lo, hi = ref.confidence_interval(0.95)
    assert c.test == "paired t" and c.n == 4
    assert (c.diff, c.lo, c.hi, c.p) == pytest.approx((np.mean(np.subtract(A, b)), lo, hi, ref.pvalue), abs=1e-12)


def test_compare_pairs_only_when_the_seeds_match():
    a = {0: 0.30, 1: 0.20, 2: 0.25}
    assert stats.compare(a, {2: 0.02, 0: 0.10, 1: 0.05}).p == pytest.approx(
        scipy_stats.ttest_rel([0.30, 0.20, 0.25], [0.10, 0.05, 0.02]).pvalue)  # paired seed by seed, in any order
    welch = stats.compare(a, {0: 0.10, 1: 0.05, 3: 0.02})
    assert welch.test == "Welch t" and welch.p == pytest.approx(
        scipy_stats.ttest_ind([0.30, 0.20, 0.25], [0.10, 0.05, 0.02], equal_var=False).pvalue)
    # constant nonzero differences: no variance for t; the exact sign-flip test's p, 2 / 2^n
    assert (stats.paired([1.0, 2.0], [0.5, 1.5]).p, stats.paired([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]).p) == (0.5, 0.25)
    assert stats.paired([1.0, 2.0, 3.0], [0.5, 1.5, 2.5]).test == "sign-flip"
    assert stats.paired([1.0, 2.0], [1.0, 2.0]).p == 1.0
    assert stats.welch([1.0, 1.0], [1.0, 1.0]).p == 1.0  # identical constant rows: no difference at all


def test_holm_against_a_hand_computation():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.3]) == pytest.approx([0.6, 0.6])  # 0.3 x 2 = 0.6, then max(0.6, 0.5)
    assert stats.holm([0.9, 0.6]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []


# -- ranks, comparisons and collapse on a board -----------------------------------------------------------------

def record(algo, seed, gold):
    return {"run_id": f"{algo}-{seed}", "status": "ok", "algo": algo, "task": "t", "model": "m", "budget": "quick",
            "seed": seed, "config": {"seed": seed, "algo": {"name": algo}}, "overrides": [f"algo={algo}"],
            "metrics": {"eval/gold_reward": gold}, "history": [], "started_at": "2026-01-01T00:00:00+00:00"}


TABLE = {"top": [0.90, 0.92, 0.89], "mid": [0.70, 0.73, 0.69], "wide": [0.0, 0.8, 0.6], "sft": [0.0, 0.01, -0.01]}


def board(table):
    groups = group_records([record(algo, s, g) for algo, golds in table.items() for s, g in enumerate(golds)])
    return {g.algo: g for g in groups}, groups


def test_a_wide_row_with_a_low_mean_never_outranks_a_narrow_row_with_a_higher_mean():
    """No test separates the wide row (mean 0.47) from any other, yet it ranks below the narrow row with the higher
    mean (0.71) that the top row beats: rank = 1 + rows better than it or than a row with a higher mean."""
    rows, ordered = board(TABLE)
    pairs = [("top", "mid"), ("top", "wide"), ("top", "sft"), ("mid", "wide"), ("mid", "sft"), ("wide", "sft")]
    p = [scipy_stats.ttest_ind(TABLE[a], TABLE[b], equal_var=False).pvalue for a, b in pairs]
    p_holm = dict(zip(pairs, stats.holm(p)))
    significant = {pair for pair, q in p_holm.items() if q <= 0.05}
    assert significant == {("top", "mid"), ("top", "sft"), ("mid", "sft")}  # wide vs anything: not shown to differ
    assert rows["wide"].better == [] and rows["mid"].better == [rows["top"].id]
    assert sorted(rows["sft"].better) == sorted([rows["top"].id, rows["mid"].id])
    assert {a: g.rank for a, g in rows.items()} == {"top": 1, "mid": 2, "wide": 2, "sft": 3}
    assert [g.algo for g in ordered] == ["top", "mid", "wide", "sft"]


def test_comparisons_with_the_sft_row_are_paired_and_holm_corrected():
    rows, _ = board(TABLE)
    others = ["top", "mid", "wide"]
    ref = [scipy_stats.ttest_rel(TABLE[a], TABLE["sft"]) for a in others]  # the same seeds 0, 1, 2: paired
    adjusted = stats.holm([r.pvalue for r in ref])
    for algo, r, q in zip(others, ref, adjusted):
        c = rows[algo].vs_sft
        lo, hi = r.confidence_interval(0.95)
        assert (c["ref"], c["test"], c["n"]) == (rows["sft"].id, "paired t", 3)
        assert (c["diff"], c["lo"], c["hi"], c["p"], c["p_holm"]) == pytest.approx(
            (np.mean(TABLE[algo]) - np.mean(TABLE["sft"]), lo, hi, r.pvalue, q), abs=1e-12)
        assert c["significant"] == (q <= 0.05)
    assert rows["sft"].vs_sft is None and rows["sft"].reference
    assert not rows["wide"].vs_sft["significant"]  # its uncorrected interval aside, no claim without Holm
    assert fmt_comparison(rows["sft"], "vs_sft") == "ref"
    text = fmt_comparison(rows["top"], "vs_sft")
    assert text.startswith("+0.903 [") and text.endswith(" paired") and "p_holm=" in text
    above = rows["wide"].vs_above  # against mid, the row printed above it
    assert above["ref"] == rows["mid"].id and above["p"] == pytest.approx(
        scipy_stats.ttest_rel(TABLE["wide"], TABLE["mid"]).pvalue)
    assert rows["top"].vs_above is None


def test_collapse_rate_counts_seeds_below_the_sft_mean_minus_two_sds():
    """SFT seeds 0, 0.01, -0.01: mean 0, sd 0.01, threshold -0.02; strictly below it counts."""
    table = {**TABLE, "wide": [-0.5, 0.8, -0.02]}
    rows, _ = board(table)
    assert rows["wide"].collapse == {"rate": pytest.approx(1 / 3), "collapsed": 1, "n": 3,
                                     "threshold": pytest.approx(-0.02)}
    assert rows["top"].collapse["collapsed"] == 0 and rows["sft"].collapse["collapsed"] == 0
    no_sft, _ = board({k: v for k, v in table.items() if k != "sft"})
    assert all(g.collapse is None and g.vs_sft is None for g in no_sft.values())  # no reference row: no threshold

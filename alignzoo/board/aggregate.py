"""Group records into presets and aggregate each over seeds.

A *track* is what a comparison holds fixed: task x model x budget; ranks, comparisons and Pareto fronts are computed
within one, on the track's *headline* metric (``headline``: gold reward on sentiment, accuracy on arithmetic, ...).
A *group* (one leaderboard row) is a track x algorithm preset: every run whose resolved config is the same once the
seed and the settings that cannot change results (loggers, ``run.*``) are set aside. Its label is the algorithm's
name plus the hyperparameters that differ between that algorithm's groups in the track (``dpo (beta=0.3)``), so a
frontier sweep over ``algo.beta`` yields one row per beta.

Ranks come from tests, never from the overlap of intervals (which rewards variance: a wide-interval row with a low
mean would outrank narrow rows with higher means): two-sided Welch t-tests of the headline's final values over
seeds between every pair of rows of a track, Holm-corrected over all those pairs at ``stats.ALPHA``. A row's rank is
1 + the rows significantly better than it, or than any row with a higher mean, whichever is more: rows not shown to
differ share a rank, and a row never ranks above one with a higher mean (with 1 + its own count alone, a row too
noisy for any test to separate would rank first). A row with one seed cannot be tested: only the rows above it in
the mean order set its rank. Each row is also compared with the track's SFT row (``algo=sft``) and with the row
above it (``compare_rows``: a paired bootstrap over seeds x prompts where both rows recorded per-prompt scores on the
same prompts, else ``stats.compare``: paired t where the seeds match), each family Holm-corrected.

Each row also gets the matched-KL columns (``frontier``: the headline at KL budgets and the area under the
frontier, from every checkpoint of its seeds, chosen on the validation prompts). The Pareto front (PARETO_RULE) is
drawn through the seeds' own final (KL, headline) points, never through seed-averaged points: the mean of KLs 10,
24 and 40 is no policy's KL.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

import alignzoo.board.frontier as frontier
import alignzoo.board.stats as stats  # the submodule itself: board/__init__ imports this module
from alignzoo.board.headline import KL_METRIC, Headline, headline_of
from alignzoo.board.stats import (ALPHA, Comparison, compare, finite, holm, paired_bootstrap, summaries, welch,
                                  within_range)

COST_FIELDS = {"cost/wall_time_s": "wall_time_s", "cost/tokens": "tokens", "cost/peak_memory_mb": "peak_memory_mb"}
IGNORED_CONFIG = ("seed", "logger", "run")  # top-level config keys that do not define a preset
MESSAGE_CHARS = 2000  # an error message is cut to this many characters in the board
REFERENCE_ALGO = "sft"  # the reference row of a track: the starting policy every optimizer is compared with
COLLAPSE_SDS = 2.0  # a seed has collapsed when its final headline is below the SFT row's mean minus this many sds
RANK_RULE = ("1 + the rows of the same task/model/budget significantly better in the track's headline metric "
             "(groups[].headline; final values) than this row or "
             f"than a row with a higher mean (two-sided Welch t-tests over seeds between every pair of rows, Holm "
             f"step-down over all pairs of the track, alpha {ALPHA}); rows not shown to differ share a rank, and no "
             "row ranks above a row with a higher mean")
COMPARISON_RULE = ("vs_sft / vs_above: the headline of the row minus that of the track's SFT row / of the row "
                   "above it: the difference of means with its uncorrected 95% interval, p and the Holm-adjusted "
                   "p_holm of its family (each column of a track); a paired bootstrap over seeds x prompts "
                   f"({stats.PAIR_RESAMPLES} resamples: seeds of each row, then the same prompts for both rows) "
                   "where every seed of both rows recorded per-prompt headline scores on the same prompts "
                   "(record.per_prompt), else a paired t-test on the per-seed differences where both rows hold the "
                   "same seeds (the exact sign-flip test when those differences are all equal: t has no variance "
                   "to use), else Welch; each comparison's test field names the test used")
COLLAPSE_RULE = (f"share of a row's seeds whose final headline is below the mean of its track's SFT row minus "
                 f"{COLLAPSE_SDS:g} of its standard deviations (needs an SFT row with 2+ seeds)")
PARETO_RULE = ("pareto: at least one of the row's seeds has a final (eval/kl, headline) point that no seed's point of "
               "the track dominates (lower or equal KL and higher or equal headline, one strictly)")


@dataclass
class Group:
    id: str  # file-name-safe and unique: "<algo slug>-<hash of the preset>"
    track: tuple[str, str, str]  # (task, model, budget)
    algo: str
    preset: dict[str, Any]  # hyperparameters that differ from the algorithm's other groups in the track
    label: str  # "dpo (beta=0.3)"
    config: dict[str, Any]  # the resolved config of one of its runs (seed of that run)
    runs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> stats.interval + clipped
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> [{step, mean, lo, hi, n, ...}]
    rank: Optional[int] = None  # RANK_RULE: from Holm-corrected Welch tests, monotone in the mean
    better: list[str] = field(default_factory=list)  # ids of the groups significantly better than this one
    vs_sft: Optional[dict[str, Any]] = None  # headline minus the track's SFT row's (``_comparison``); None: no test
    vs_above: Optional[dict[str, Any]] = None  # headline minus the row above's in the board's order
    collapse: Optional[dict[str, Any]] = None  # {rate, collapsed, n, threshold} (COLLAPSE_RULE); None: no SFT row
    reference: bool = False  # the track's SFT row, which the vs_sft comparisons are against
    pareto: bool = False  # a seed's final point is on the track's headline-vs-KL Pareto front (PARETO_RULE)
    headline: Headline = field(default_factory=lambda: headline_of("sentiment"))  # what the track ranks by
    frontier: dict[str, Any] = field(default_factory=dict)  # matched-KL columns (``frontier``), see _frontier
    kl_bound: bool = False  # eval/kl is an analytic upper bound (best-of-N), not an estimate
    command: str = ""  # reproduces every run of the group
    repeats: list[dict[str, Any]] = field(default_factory=list)  # ok runs of a seed that ran again later (not counted)

    def __post_init__(self) -> None:
        self._ok = self._latest_per_seed()

    @property
    def ok(self) -> list[dict[str, Any]]:
        """The successful runs that count: one per seed (the latest when a seed ran more than once)."""
        return self._ok

    def _latest_per_seed(self) -> list[dict[str, Any]]:
        counted: list[dict[str, Any]] = []
        latest: dict[Any, dict[str, Any]] = {}
        for r in self.runs:
            if not usable(r):
                continue
            seed = r.get("seed")
            if seed is None:
                counted.append(r)
                continue
            prev = latest.get(seed)
            if prev is not None:
                newer = str(r.get("started_at") or "") > str(prev.get("started_at") or "")
                self.repeats.append(prev if newer else r)
            if prev is None or newer:
                latest[seed] = r
        keep = {id(r) for r in latest.values()}
        return counted + [r for r in self.runs if id(r) in keep]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Every run that does not count (failed, unfinished, or with a non-finite final metric)."""
        return [r for r in self.runs if not usable(r)]

    @property
    def seeds(self) -> list[Any]:
        return sorted({r.get("seed") for r in self.runs if r.get("seed") is not None}, key=_sort_key)

    @property
    def score(self) -> dict[str, Any]:
        """The headline's final-value statistics (what ranks the row)."""
        return self.metric(self.headline.metric)

    def metric(self, name: str) -> dict[str, Any]:
        return self.metrics.get(name) or {"mean": None, "lo": None, "hi": None, "n": 0}

    def per_seed(self, name: Optional[str] = None) -> dict[Any, float]:
        """{seed: final value} of the counted runs (of the headline by default); a run without a seed is keyed by its
        run id, so it never pairs."""
        name = name or self.headline.metric
        out: dict[Any, float] = {}
        for r in self.ok:
            v = (r.get("metrics") or {}).get(name)
            if finite([v]):
                out[r.get("seed") if r.get("seed") is not None else ("unseeded", r.get("run_id"))] = float(v)
        return out

    def per_prompt(self) -> Optional[dict[Any, dict[str, float]]]:
        """{seed: {prompt id: headline score}} from the records' ``per_prompt`` (the final evaluation), or None when
        a counted seed lacks them (an older record) or its prompts differ from the other seeds': no pairing."""
        out: dict[Any, dict[str, float]] = {}
        for seed in self.per_seed():
            run = next(r for r in self.ok if (r.get("seed") if r.get("seed") is not None
                                              else ("unseeded", r.get("run_id"))) == seed)
            table = run.get("per_prompt")
            scores = table.get(self.headline.metric) if isinstance(table, dict) else None
            if not isinstance(scores, dict) or not scores or len(finite(list(scores.values()))) != len(scores):
                return None
            out[seed] = {str(k): float(v) for k, v in scores.items()}
        prompt_sets = {frozenset(v) for v in out.values()}
        return out if len(prompt_sets) == 1 else None

    def errors(self) -> list[dict[str, Any]]:
        return [error_summary(r) for r in self.failed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "rank": self.rank, "label": self.label, "algo": self.algo, "task": self.track[0],
            "model": self.track[1], "budget": self.track[2], "headline": self.headline.metric,
            "preset": self.preset, "n": len(self.ok), "frontier": self.frontier, "kl_bound": self.kl_bound,
            "failed": len(self.failed), "seeds": self.seeds, "pareto": self.pareto,
            "reference": self.reference, "significantly_better": self.better, "vs_sft": self.vs_sft,
            "vs_above": self.vs_above, "collapse": self.collapse, "metrics": self.metrics,
            "curves": self.curves, "errors": self.errors(), "run_ids": [r.get("run_id") for r in self.runs],
            "repeated_runs_not_counted": [r.get("run_id") for r in self.repeats],
            "command": self.command, "config_file": f"configs/{self.id}.yaml", "config": self.config,
        }


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, v) if isinstance(v, (int, float)) else (1, str(v))


def text(value: Any) -> str:
    """A record field as display text (None -> "?")."""
    return "?" if value is None else str(value)


def nonfinite_metrics(record: dict[str, Any]) -> list[str]:
    """``["eval/kl=nan", ...]``: the final metrics of a record that are NaN or infinite."""
    return [f"{k}={v}" for k, v in (record.get("metrics") or {}).items()
            if isinstance(v, float) and not math.isfinite(v)]


def usable(record: dict[str, Any]) -> bool:
    """Whether a run counts: status ok and every final metric finite. Any other run is listed as failed with the
    reason (``error_summary``), never averaged in: a NaN dropped from one metric's mean but kept in the others would
    compare different seeds across the columns of one row."""
    return record.get("status") == "ok" and not nonfinite_metrics(record)


#: why a run whose record carries no error message is not counted, by its status
NOT_COUNTED = {
    "ok": "finished, but its final metric(s) {bad} are not finite, so it is not counted; check the evaluator and "
          "rerun this seed",
    "failed": "status 'failed' without an error message",
    "running": "the job never finished (status 'running': it was killed, ran out of memory or is still running), "
               "so it is not counted; rerun it",
}


def error_summary(record: dict[str, Any]) -> dict[str, Any]:
    err = record.get("error") or {}
    status, bad = record.get("status"), nonfinite_metrics(record)
    if status == "ok" and bad:
        err = {"type": "NonFiniteMetric", "message": NOT_COUNTED["ok"].format(bad=", ".join(bad))}
    default = NOT_COUNTED.get(str(status), f"status {status!r} is neither ok nor failed, so it is not counted")
    message = str(err.get("message") or default)
    return {"run_id": record.get("run_id"), "algo": record.get("algo"), "seed": record.get("seed"),
            "type": err.get("type"), "message": message[:MESSAGE_CHARS], "user_error": err.get("user_error"),
            "source": record.get("source")}


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"algo": {"beta": 0.1}} -> {"algo.beta": 0.1}; lists stay values."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def _preset_config(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config") or {}
    return {k: v for k, v in config.items() if k not in IGNORED_CONFIG}


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:32]
    return slug or "run"


def _value_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


#: overrides a group's reproduce command leaves out: the seed (the group's seeds are appended) and the stage cache's
#: folder (a path on the author's machine; the stages are rebuilt identically anywhere)
NOT_REPRODUCED = re.compile(r"^[+~]{0,2}(seed|run\.cache_dir)=")


def reproduce_command(runs: list[dict[str, Any]]) -> str:
    """``alignzoo run [-m] <overrides> seed=<the group's seeds>``, shell-quoted."""
    ok = [r for r in runs if usable(r)]
    base = (ok or runs)[0]
    overrides = [o for o in base.get("overrides") or [] if not NOT_REPRODUCED.match(str(o))]
    seeds = sorted({r.get("seed") for r in runs if r.get("seed") is not None}, key=_sort_key)
    parts = ["alignzoo", "run"]
    if len(seeds) > 1:
        parts.append("-m")
    parts += [str(o) for o in overrides]
    if seeds:
        parts.append("seed=" + ",".join(str(s) for s in seeds))
    return " ".join(shlex.quote(p) for p in parts)


def run_command(record: dict[str, Any]) -> str:
    """The exact command of one run."""
    return " ".join(shlex.quote(p) for p in ["alignzoo", "run", *[str(o) for o in record.get("overrides") or []]])


def group_records(records: list[dict[str, Any]]) -> list[Group]:
    """Records -> groups (ranked, labelled, aggregated), ordered by track, then rank, then mean headline."""
    buckets: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        track = (text(r.get("task")), text(r.get("model")), text(r.get("budget")))
        key = json.dumps(_preset_config(r), sort_keys=True, default=str)
        buckets[(track, text(r.get("algo")), key)].append(r)

    headlines = {track: headline_of(track[0], [r for (t, _, _), rs in buckets.items() if t == track for r in rs])
                 for track in {t for t, _, _ in buckets}}
    groups: list[Group] = []
    for (track, algo, key), runs in buckets.items():
        runs.sort(key=lambda r: (_sort_key(r.get("seed")), str(r.get("run_id"))))
        digest = hashlib.sha1(json.dumps([track, algo, key]).encode()).hexdigest()[:8]
        config = dict(next((r for r in runs if usable(r)), runs[0]).get("config") or {})
        groups.append(Group(id=f"{_slug(algo)}-{digest}", track=track, algo=algo, preset={}, label=algo,
                            config=config, runs=runs, command=reproduce_command(runs), headline=headlines[track]))
    _label(groups)
    for g in groups:
        _aggregate(g)
        _frontier(g)
    for members in _tracks(groups).values():
        _rank(members)
        _pareto(members)
    order = {t: i for i, t in enumerate(sorted({g.track for g in groups}))}
    groups.sort(key=lambda g: (order[g.track], g.rank if g.rank is not None else math.inf,
                               -(g.score["mean"] or 0.0) if g.rank is not None else 0.0,
                               g.label, g.id))
    for members in _tracks(groups).values():  # in the board's order: "the row above" is the one printed above
        _compare_with_reference(members)
        _compare_with_row_above(members)
    return groups


def protocol() -> dict[str, Any]:
    """How the board's numbers were computed, as ``leaderboard.json`` states it."""
    ranges = {pattern: [lo, hi] for pattern, lo, hi in stats.METRIC_RANGES}
    return {"ci": {"method": stats.INTERVAL_METHOD, "level": stats.LEVEL, "resamples": stats.RESAMPLES,
                   "seed": stats.SEED, "bca_from_n": stats.BCA_FROM_N, "ranges": ranges},
            "rank": RANK_RULE, "comparisons": COMPARISON_RULE, "collapse": COLLAPSE_RULE, "pareto": PARETO_RULE,
            "frontier": {"rule": frontier.FRONTIER_RULE, "kl_budgets": list(frontier.KL_BUDGETS),
                         "area_kl": frontier.AREA_KL, "columns": frontier.columns()}}


def _tracks(groups: list[Group]) -> dict[tuple[str, str, str], list[Group]]:
    tracks: dict[tuple[str, str, str], list[Group]] = defaultdict(list)
    for g in groups:
        tracks[g.track].append(g)
    return tracks


def _label(groups: list[Group]) -> None:
    """Name each group by its algorithm and the hyperparameters that tell it apart from its siblings."""
    siblings: dict[tuple[Any, ...], list[Group]] = defaultdict(list)
    for g in groups:
        siblings[(g.track, g.algo)].append(g)
    for family in siblings.values():
        flat = [flatten(_preset_config(g.runs[0])) for g in family]
        keys = sorted({k for f in flat for k in f})
        differing = [k for k in keys if len({json.dumps(f.get(k, "<unset>"), sort_keys=True, default=str)
                                             for f in flat}) > 1]
        for g, f in zip(family, flat):
            g.preset = {k: f.get(k) for k in differing}
            shown = ", ".join(f"{k.removeprefix('algo.')}={_value_text(v)}" for k, v in g.preset.items())
            g.label = f"{g.algo} ({shown})" if shown else g.algo


def _aggregate(g: Group) -> None:
    ok = g.ok
    values: dict[str, list[float]] = defaultdict(list)
    for r in ok:
        for k, v in (r.get("metrics") or {}).items():
            if finite([v]):
                values[k].append(float(v))
        for name, fld in COST_FIELDS.items():
            if finite([r.get(fld)]):
                values[name].append(float(r[fld]))
    order = lambda k: ({"eval": 0, "train": 1, "cost": 2}.get(k.split("/")[0], 3), k)  # noqa: E731
    columns = {k: values[k] for k in sorted(values, key=order)}
    curves: dict[tuple[str, Any], list[float]] = defaultdict(list)
    for name in (g.headline.metric, KL_METRIC):  # learning curves kept per group (from each record's history)
        for r in ok:
            for point in r.get("history") or []:
                if isinstance(point, dict) and finite([point.get("step")]) and finite([point.get(name)]):
                    curves[(name, point["step"])].append(float(point[name]))
    computed = summaries({**{("m", k): v for k, v in columns.items()}, **{("c", *k): v for k, v in curves.items()}})
    g.metrics = {k: within_range(computed[("m", k)], k) for k in columns}
    for (name, step) in sorted(curves, key=lambda c: (c[0], c[1])):
        g.curves.setdefault(name, []).append({"step": step, **within_range(computed[("c", name, step)], name)})


def _frontier(g: Group) -> None:
    """The matched-KL columns of one row (``frontier``): per-seed envelopes, then mean and interval over seeds."""
    seeds = [{"seed": r.get("seed"), "run_id": r.get("run_id"),
              **frontier.seed_frontier(r.get("history") or [], g.headline.metric)} for r in g.ok]
    values = frontier.row_values(seeds)
    computed = summaries(values)
    by = {s["selected_by"] for s in seeds}
    g.kl_bound = any(frontier.BOUND_MARK in (r.get("metrics") or {}) for r in g.ok)
    g.frontier = {
        "headline": g.headline.metric,
        "selected_by": (frontier.val_key(g.headline.metric) if by == {"val"} else
                        "test" if by == {"test"} else "mixed" if by - {None} else None),
        **{c: within_range(computed[c], g.headline.metric) if c in computed else
           {"mean": None, "lo": None, "hi": None, "n": 0} for c in frontier.columns()},
        "per_seed": seeds,
    }


def _rank(members: list[Group]) -> None:
    """RANK_RULE within one track: Welch tests between every pair of scored rows, Holm over the pairs tested."""
    scored = [g for g in members if g.score["mean"] is not None]
    values = {g.id: list(g.per_seed().values()) for g in scored}
    tests = [(a, b, c) for i, a in enumerate(scored) for b in scored[i + 1:]
             if (c := welch(values[a.id], values[b.id])) is not None]
    for (a, b, c), p in zip(tests, holm([c.p for _, _, c in tests])):
        if p <= ALPHA and c.diff != 0:
            (b if c.diff > 0 else a).better.append((a if c.diff > 0 else b).id)
    raw = {g.id: 1 + len(g.better) for g in scored}
    for g in scored:  # a row never ranks above a row with a higher mean: a wide interval is no evidence of merit
        mean = g.score["mean"]
        g.rank = max(raw[h.id] for h in scored if h.score["mean"] >= mean)


def seed_points(members: list[Group]) -> list[tuple[Group, float, float]]:
    """Every counted seed's final (KL, headline) point of a track, with its row: what the Pareto front joins."""
    out = []
    for g in members:
        kls, scores = g.per_seed(KL_METRIC), g.per_seed()
        out += [(g, kls[s], scores[s]) for s in scores if s in kls]
    return out


def _pareto(members: list[Group]) -> None:
    """PARETO_RULE: the track's headline-vs-KL front through the seeds' own final points."""
    points = seed_points(members)
    on_front = frontier.pareto_front([(kl, h) for _, kl, h in points])
    for (g, _, _), front in zip(points, on_front):
        g.pareto = g.pareto or front


def _comparison(c: Comparison, ref: Group, p_holm: float) -> dict[str, Any]:
    """One comparison as the board publishes it: the difference of means with its (uncorrected) 95% interval, the
    raw and the Holm-adjusted p, and whether the adjusted p is significant."""
    return {"ref": ref.id, "ref_label": ref.label, "test": c.test, "diff": c.diff, "lo": c.lo, "hi": c.hi,
            "n": c.n, "p": c.p, "p_holm": p_holm, "significant": p_holm <= ALPHA and c.diff != 0}


def compare_rows(g: Group, ref: Group) -> Optional[Comparison]:
    """Row g's headline against row ref's (COMPARISON_RULE): the paired bootstrap over seeds x prompts when both rows
    carry per-prompt scores on the same prompts, else ``stats.compare`` over the per-seed values."""
    mine, theirs = g.per_prompt(), ref.per_prompt()
    if mine and theirs:
        prompts = sorted(next(iter(mine.values())))
        if set(prompts) == set(next(iter(theirs.values()))):
            matrix = lambda rows: [[rows[s][k] for k in prompts] for s in sorted(rows, key=_sort_key)]  # noqa: E731
            c = paired_bootstrap(matrix(mine), matrix(theirs))
            if c is not None:
                return c
    return compare(g.per_seed(), ref.per_seed())


def _publish(pairs: list[tuple[Group, Group, Comparison]], slot: str) -> None:
    """Holm over one family of comparisons, then each into its row's ``slot`` (vs_sft or vs_above)."""
    for (g, ref, c), p in zip(pairs, holm([c.p for _, _, c in pairs])):
        setattr(g, slot, _comparison(c, ref, p))


def reference_row(members: list[Group]) -> Optional[Group]:
    """The track's SFT row (``algo=sft``) with headline values; of several, the one with the most seeds."""
    refs = [g for g in members if g.algo == REFERENCE_ALGO and g.per_seed()]
    return min(refs, key=lambda g: (-len(g.per_seed()), g.id), default=None)


def _compare_with_reference(members: list[Group]) -> None:
    """Every row's headline against the SFT row's (one Holm family per track), and the collapse rate (COLLAPSE_RULE)."""
    ref = reference_row(members)
    if ref is None:
        return
    ref.reference = True
    pairs = [(g, ref, c) for g in members if g is not ref and (c := compare_rows(g, ref)) is not None]
    _publish(pairs, "vs_sft")
    stat = ref.score
    if stat["n"] < 2:
        return
    threshold = stat["mean"] - COLLAPSE_SDS * stat["sd"]
    for g in members:
        seeds = list(g.per_seed().values())
        if seeds:
            k = sum(1 for v in seeds if v < threshold)
            g.collapse = {"rate": k / len(seeds), "collapsed": k, "n": len(seeds), "threshold": threshold}


def _compare_with_row_above(members: list[Group]) -> None:
    """Every ranked row's headline against the ranked row printed above it (one Holm family per track)."""
    ranked = [g for g in members if g.rank is not None]
    pairs = [(g, above, c) for above, g in zip(ranked, ranked[1:])
             if (c := compare_rows(g, above)) is not None]
    _publish(pairs, "vs_above")

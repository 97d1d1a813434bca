"""The board's data files: ``leaderboard.json`` (groups), ``runs.csv`` (one row per run), ``LEADERBOARD.md`` (ranked
tables for a README) and ``configs/<group>.yaml`` (each group's resolved config). Every record string that reaches
Markdown goes through ``md()``, every cell of ``runs.csv`` through ``csvsafe.neutral_cell``.

Each track's table shows its task's columns (``headline.HEADLINES``): first the matched-KL columns of its headline
(``frontier``), then the final values, then the tests."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional

import yaml

import alignzoo.board.frontier as frontier
import alignzoo.board.stats as stats  # the submodule itself: board/__init__ imports this module
from alignzoo.board.aggregate import COLLAPSE_SDS, COST_FIELDS, Group, error_summary, run_command, text
from alignzoo.board.csvsafe import write_csv
from alignzoo.board.headline import HEADLINES, KL_METRIC, Headline

#: the tested columns after the final values: (Group attribute, header after the headline's label); each cell
#: "diff [interval] p_holm=... test"
COMPARISONS = [("vs_sft", "vs SFT row [CI], p_holm"), ("vs_above", "vs row above [CI], p_holm")]
#: a comparison's test (``stats.Comparison.test``) as its cell names it
TEST_NAMES = {"paired t": "paired", "Welch t": "Welch", "sign-flip": "sign-flip", stats.PAIRED_BOOTSTRAP: "bootstrap"}
TEST_PICKED = "†"  # a frontier cell whose checkpoints were picked on the test split (no validation metrics)
KL_BOUND = "≤ "  # a KL cell that is an analytic upper bound (best-of-N)
RUN_FIELDS = ["run_id", "group_id", "status", "counted", "algo", "preset", "task", "model", "budget", "reward", "seed",
              "wall_time_s", "tokens", "peak_memory_mb", "started_at", "git_sha", "error_type", "error_message",
              "command", "source"]


def clean(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def fmt(stat: dict[str, Any], digits: int) -> str:
    """"0.346 [0.215, 0.346]"; one seed: "0.346 (n=1)" (no interval, never a made-up one); or "n/a"."""
    if stat.get("mean") is None:
        return "n/a"
    if stat.get("lo") is None or stat.get("hi") is None:
        return f"{stat['mean']:.{digits}f} (n={stat.get('n', 0)})"
    return f"{stat['mean']:.{digits}f} [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"


def frontier_columns(h: Headline) -> list[tuple[str, str, int]]:
    """(frontier key, header, digits): the matched-KL columns of a track with headline ``h``."""
    digits = h.columns[0][2]
    return [(frontier.budget_key(b), f"{h.label} @ KL ≤ {b:g}", digits) for b in frontier.KL_BUDGETS] + [
        ("area", f"{h.label} area, KL 0–{frontier.AREA_KL:g}", digits)]


def comparison_headers(h: Headline) -> list[str]:
    return [f"{h.label} {header}" for _, header in COMPARISONS]


def fmt_frontier(g: Group, key: str, digits: int) -> str:
    """A matched-KL cell: ``fmt`` of the row's value, marked TEST_PICKED when it was not chosen on validation."""
    cell = fmt(g.frontier.get(key) or {}, digits)
    picked_on_test = g.frontier.get("selected_by") in ("test", "mixed")
    return cell + TEST_PICKED if picked_on_test and cell != "n/a" else cell


def fmt_metric(g: Group, key: str, digits: int) -> str:
    """A final-value cell; a KL that is an analytic bound (best-of-N) reads "≤ 1.84"."""
    cell = fmt(g.metric(key), digits)
    return KL_BOUND + cell if key == KL_METRIC and g.kl_bound and cell != "n/a" else cell


def row_cells(g: Group) -> list[str]:
    """The value cells of one row in header order: matched-KL columns, then final values."""
    h = g.headline
    return [fmt_frontier(g, k, d) for k, _, d in frontier_columns(h)] + [fmt_metric(g, k, d) for k, _, d in h.columns]


def p_text(p: float) -> str:
    """A p-value to three decimals; below 0.001 as "<0.001" (more digits claim a precision a few seeds lack)."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_comparison(g: Group, attr: str, digits: int = 3) -> str:
    """"+0.320 [+0.210, +0.430] p_holm=0.012 paired"; "ref" on the SFT row itself; "–" where nothing is tested."""
    c = getattr(g, attr)
    if c is None:
        return "ref" if attr == "vs_sft" and g.reference else "–"
    test = TEST_NAMES.get(c["test"], c["test"])
    return (f"{c['diff']:+.{digits}f} [{c['lo']:+.{digits}f}, {c['hi']:+.{digits}f}] "
            f"p_holm={p_text(c['p_holm'])} {test}")


def fmt_collapse(g: Group) -> str:
    """"1/3" seeds collapsed, or "–" when the track has no SFT row to set the threshold."""
    return "–" if g.collapse is None else f"{g.collapse['collapsed']}/{g.collapse['n']}"


def legend(code: Callable[[str], str] = lambda s: s) -> list[str]:
    """How the numbers were computed, one line each (Markdown, the page and ``alignzoo demo``); ``code`` marks
    names up (backticks in Markdown)."""
    pct = f"{stats.LEVEL:.0%}"
    return [
        f"Mean over seeds with a {pct} Student-t interval (n < {stats.BCA_FROM_N}) or BCa bootstrap interval "
        f"(n ≥ {stats.BCA_FROM_N}; {stats.RESAMPLES} resamples, seed {stats.SEED}), clipped to the metric's range; "
        "one seed: the mean alone (n=1).",
        "Headline of each track, by task: " + "; ".join(f"{task}: {code(h.metric)}" for task, h in HEADLINES.items())
        + ".",
        f"Matched KL (@ KL ≤ b, for b = {', '.join(f'{b:g}' for b in frontier.KL_BUDGETS)} nats): per seed, of the "
        f"checkpoints its run evaluated with {code(KL_METRIC)} ≤ b, the one with the best headline on the validation "
        "prompts, reported by its headline on the test prompts; n/a below the seed's smallest KL. Area: that envelope "
        f"as a step function of the budget over [0, {frontier.AREA_KL:g}] nats, divided by {frontier.AREA_KL:g}. Mean "
        f"over seeds, n/a unless every seed has a value; {TEST_PICKED} picked on the test prompts (the run recorded "
        "no validation metrics): optimistic.",
        f"Rank: 1 + the rows significantly better in the final headline than the row or than a row with a higher "
        f"mean (two-sided Welch t-tests over seeds between every pair of rows of the track, Holm-corrected over all "
        f"pairs, α = {stats.ALPHA}); rows not shown to differ share a rank.",
        f"vs SFT row / vs row above: difference of the mean final headline with its {pct} interval and the "
        "Holm-adjusted p of each column of the track; the cell names its test: bootstrap = paired bootstrap over "
        f"seeds x prompts ({stats.PAIR_RESAMPLES} resamples of each row's seeds, then of the prompts, the same for "
        "both rows) where both rows recorded per-prompt headline scores on the same prompts, else paired = paired t "
        "on the per-seed differences where both rows hold the same seeds, else Welch; significant only where "
        f"p_holm ≤ {stats.ALPHA}; – where a row has fewer than 2 "
        "seeds or the track no SFT row. Collapsed: seeds whose final headline is below the SFT row's mean minus "
        f"{COLLAPSE_SDS:g} sd.",
        "★ / front: a seed of the row has a final (KL, headline) point that no seed of the track dominates (the "
        f"front joins the seeds' own points, not seed averages). {KL_BOUND}KL: best-of-N's analytic "
        "log N − (N−1)/N, an upper bound on its true KL.",
    ]


def track_title(track: tuple[str, str, str]) -> str:
    return f"task={track[0]} · model={track[1]} · budget={track[2]}"


# -- leaderboard.json -------------------------------------------------------------------------------------------

def leaderboard_json(groups: list[Group], meta: dict[str, Any]) -> dict[str, Any]:
    failed = [error_summary(r) for g in groups for r in g.failed]
    return clean({**meta, "groups": [g.to_dict() for g in groups], "failed_runs": failed})


# -- runs.csv ---------------------------------------------------------------------------------------------------

def runs_csv(groups: list[Group]) -> str:
    """One row per run, every cell neutralized for spreadsheets (``csvsafe``). A metric named like a fixed column
    (a record may name its metrics anything) gets a column of its own, ``metric:<name>``, never the fixed one."""
    rows, metric_names = [], set()
    for g in groups:
        counted, failed = {id(r) for r in g.ok}, {id(r) for r in g.failed}
        for r in g.runs:
            err = error_summary(r) if id(r) in failed else {}  # why it is not counted, also for NaN or unfinished
            metrics = {(k if k not in RUN_FIELDS else f"metric:{k}"): v for k, v in (r.get("metrics") or {}).items()
                       if isinstance(v, (int, float))}
            metric_names.update(metrics)
            row = {"run_id": r.get("run_id"), "group_id": g.id, "status": r.get("status"),
                   "counted": int(id(r) in counted), "algo": r.get("algo"),
                   "preset": g.label, "task": r.get("task"), "model": r.get("model"), "budget": r.get("budget"),
                   "reward": r.get("reward"), "seed": r.get("seed"),
                   **{fld: r.get(fld) for fld in COST_FIELDS.values()}, "started_at": r.get("started_at"),
                   "git_sha": r.get("git_sha"), "error_type": err.get("type"),
                   "error_message": " ".join(str(err.get("message") or "").split()) or None,
                   "command": run_command(r), "source": r.get("source"), **metrics}
            rows.append(row)
    order = lambda k: ({"eval": 0, "train": 1}.get(k.split("/")[0], 2), k)  # noqa: E731
    header = RUN_FIELDS + sorted(metric_names, key=order)
    return write_csv(header, ([row.get(k) for k in header] for row in rows))


# -- LEADERBOARD.md ---------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any) -> str:
    """Record text as inert Markdown: one line, HTML tags as text, no emphasis/links/code/table breaks."""
    s = " ".join(text(value).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(value: str) -> str:
    """An inline code span that survives backticks inside (CommonMark: a longer fence)."""
    s = " ".join(value.split())
    fence = "`" * (max((len(m) for m in re.findall(r"`+", s)), default=0) + 1)
    return f"{fence} {s} {fence}" if s.startswith("`") or s.endswith("`") else f"{fence}{s}{fence}"


def track_table(members: list[Group]) -> list[str]:
    """One track's ranked Markdown table, line by line (header, alignment row, a row per group in the given order):
    the table of LEADERBOARD.md, and what ``alignzoo demo`` prints."""
    h = members[0].headline if members else HEADLINES["sentiment"]
    head = (["Rank", "Algorithm", "n"] + [c for _, c, _ in frontier_columns(h)] + [c for _, c, _ in h.columns]
            + comparison_headers(h) + ["Collapsed", "Failed"])
    align = ["---:", ":---", "---:"] + ["---:"] * (len(head) - 3)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for g in members:
        cells = [str(g.rank) if g.rank is not None else "–", md(g.label) + (" ★" if g.pareto else ""),
                 str(len(g.ok))] + row_cells(g) + [
                     fmt_comparison(g, attr) for attr, _ in COMPARISONS] + [fmt_collapse(g), str(len(g.failed))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def leaderboard_md(groups: list[Group], meta: dict[str, Any], *, plots: Optional[dict[str, str]] = None) -> str:
    lines = ["# Leaderboard", "",
             f"{meta['n_records']} runs ({meta['n_ok']} ok, {meta['n_failed']} failed) in {len(groups)} "
             f"group{'' if len(groups) == 1 else 's'}, ranked by its task's headline within each task/model/budget. "
             f"Regenerate with {md_code('alignzoo board build ' + ' '.join(meta['run_dirs']) + ' --out <dir>')}.",
             "", *[f"- {line}" for line in legend(md_code)], ""]
    tracks: dict[tuple[str, str, str], list[Group]] = {}
    for g in groups:
        tracks.setdefault(g.track, []).append(g)
    for track, members in tracks.items():
        lines += [f"## {md(track_title(track))}", "", f"Headline: {md_code(members[0].headline.metric)}.", ""]
        lines += track_table(members) + [""]
    if any(g.pareto for g in groups):
        lines += ["★ on the headline-vs-KL Pareto front of its track (through the seeds' own final points).", ""]
    if plots and plots.get("frontier"):
        lines += [f"![headline vs KL]({plots['frontier']})", ""]
    lines += ["## Reproduce", ""]
    for g in groups:
        lines.append(f"- {md(g.label)} ({md(track_title(g.track))}): {md_code(g.command)}")
    failed = [(g, r) for g in groups for r in g.failed]
    if failed:
        lines += ["", "## Failed runs", "", "| Run | Algorithm | Seed | Error |", "|---|---|---:|---|"]
        for g, r in failed:
            e = error_summary(r)
            lines.append(f"| {md(e['run_id'])} | {md(g.label)} | {md(e['seed'])} | "
                         f"{md(e['type'] or 'error')}: {md(e['message'][:300])} |")
    return "\n".join(lines) + "\n"


# -- configs/<group>.yaml ---------------------------------------------------------------------------------------

def config_yaml(g: Group) -> str:
    one_line = lambda s: " ".join(text(s).split())  # noqa: E731
    header = [f"# resolved config of {one_line(g.label)} ({one_line(track_title(g.track))}), "
              f"seed {one_line(g.config.get('seed'))}; the group's seeds: {', '.join(map(str, g.seeds)) or '?'}",
              f"# reproduce: {one_line(g.command)}"]
    return "\n".join(header) + "\n" + yaml.safe_dump(clean(g.config), sort_keys=False, allow_unicode=True)

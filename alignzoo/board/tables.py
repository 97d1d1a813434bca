"""The board's data files: ``leaderboard.json`` (groups), ``runs.csv`` (one row per run), ``LEADERBOARD.md`` (ranked
tables for a README) and ``configs/<group>.yaml`` (each group's resolved config). Every record string that reaches
Markdown goes through ``md()``, every cell of ``runs.csv`` through ``csvsafe.neutral_cell``."""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional

import yaml

import alignzoo.board.stats as stats  # the submodule itself: board/__init__ imports this module
from alignzoo.board.aggregate import COLLAPSE_SDS, COST_FIELDS, RANK_METRIC, Group, error_summary, run_command, text
from alignzoo.board.csvsafe import write_csv

#: the columns every table shows: (metric, header, digits)
COLUMNS = [("eval/gold_reward", "Gold reward", 3), ("eval/gold_reward_vs_reference", "Gain over SFT", 3),
           ("eval/kl", "KL (nats)", 2), ("eval/win_rate", "Win rate", 3), ("eval/length", "Length", 1),
           ("cost/wall_time_s", "Wall time (s)", 0)]
#: the tested columns after COLUMNS: (Group attribute, header); each cell "diff [interval] p_holm=... test"
COMPARISONS = [("vs_sft", "Gold vs SFT row [CI], p_holm"), ("vs_above", "Gold vs row above [CI], p_holm")]
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


def p_text(p: float) -> str:
    """A p-value to three decimals; below 0.001 as "<0.001" (more digits claim a precision a few seeds lack)."""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_comparison(g: Group, attr: str, digits: int = 3) -> str:
    """"+0.320 [+0.210, +0.430] p_holm=0.012 paired"; "ref" on the SFT row itself; "–" where nothing is tested."""
    c = getattr(g, attr)
    if c is None:
        return "ref" if attr == "vs_sft" and g.reference else "–"
    test = "paired" if c["test"].startswith("paired") else "Welch"
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
        f"Rank: 1 + the rows significantly better in {code(RANK_METRIC)} than the row or than a row with a higher "
        f"mean (two-sided Welch t-tests over seeds between every pair of rows of the track, Holm-corrected over all "
        f"pairs, α = {stats.ALPHA}); rows not shown to differ share a rank.",
        f"Gold vs SFT row / vs row above: difference of mean {code(RANK_METRIC)} with its {pct} interval and the "
        "Holm-adjusted p of each column of the track (paired t on the per-seed differences where both rows hold the "
        f"same seeds, else Welch); significant only where p_holm ≤ {stats.ALPHA}; – where a row has fewer than 2 "
        "seeds or the track no SFT row. Collapsed: seeds whose final gold reward is below the SFT row's mean minus "
        f"{COLLAPSE_SDS:g} sd.",
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
    head = ["Rank", "Algorithm", "n"] + [h for _, h, _ in COLUMNS] + [h for _, h in COMPARISONS] + ["Collapsed",
                                                                                                 "Failed"]
    align = ["---:", ":---", "---:"] + ["---:"] * (len(head) - 3)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    for g in members:
        cells = [str(g.rank) if g.rank is not None else "–", md(g.label) + (" ★" if g.pareto else ""),
                 str(len(g.ok))] + [fmt(g.metric(k), d) for k, _, d in COLUMNS] + [
                     fmt_comparison(g, attr) for attr, _ in COMPARISONS] + [fmt_collapse(g), str(len(g.failed))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def leaderboard_md(groups: list[Group], meta: dict[str, Any], *, plots: Optional[dict[str, str]] = None) -> str:
    lines = ["# Leaderboard", "",
             f"{meta['n_records']} runs ({meta['n_ok']} ok, {meta['n_failed']} failed) in {len(groups)} "
             f"group{'' if len(groups) == 1 else 's'}, ranked by `{RANK_METRIC}` within each task/model/budget. "
             f"Regenerate with {md_code('alignzoo board build ' + ' '.join(meta['run_dirs']) + ' --out <dir>')}.",
             "", *[f"- {line}" for line in legend(md_code)], ""]
    tracks: dict[tuple[str, str, str], list[Group]] = {}
    for g in groups:
        tracks.setdefault(g.track, []).append(g)
    for track, members in tracks.items():
        lines += [f"## {md(track_title(track))}", ""] + track_table(members) + [""]
    if any(g.pareto for g in groups):
        lines += ["★ on the gold-reward-vs-KL Pareto front of its track.", ""]
    if plots and plots.get("frontier"):
        lines += [f"![gold reward vs KL]({plots['frontier']})", ""]
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

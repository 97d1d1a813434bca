"""The board's figures (matplotlib, Agg; no pyplot, so no global backend state), each as PNG and SVG.

- ``frontier``: the track's headline vs KL to the reference; each algorithm's presets joined in KL order (its
  curve), with 95% CIs on both axes, the seeds' own final points (faint) and the Pareto front through them (dashed);
- ``compute``: the headline vs mean wall-clock seconds per run;
- ``curves``: the headline vs training step (from each record's ``history``), mean and CI band over seeds.

One panel per task/model/budget track, each on its own task's headline (``headline``). A figure that fails to draw
is reported, never fatal.
"""

from __future__ import annotations

import io
import math
import re
from collections import defaultdict
from typing import Any, Callable

from alignzoo.board.aggregate import KL_METRIC, Group, seed_points
from alignzoo.board.frontier import pareto_front
from alignzoo.board.tables import track_title

MAX_PANELS = 9  # tracks drawn per figure (the rest are in the tables)
ANNOTATE_MAX = 16  # label points with their preset when a panel has at most this many groups
# twenty distinct colours (matplotlib's tab10 and a darker second set), so a zoo of 12+ algorithms never repeats one
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#e7ba52", "#637939", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
           "#756bb1", "#636363"]


def _safe(label: str) -> str:
    """Plain text for matplotlib: no mathtext ($), no control characters (no glyph: a warning per figure), and a
    leading underscore would hide a legend entry."""
    label = re.sub(r"[\x00-\x1f\x7f]", " ", label.replace("$", r"\$"))
    return " " + label if label.startswith("_") else label


def _colors(groups: list[Group]) -> dict[str, str]:
    return {a: PALETTE[i % len(PALETTE)] for i, a in enumerate(sorted({g.algo for g in groups}))}


def _tracks(groups: list[Group]) -> list[tuple[tuple[str, str, str], list[Group]]]:
    tracks: dict[tuple[str, str, str], list[Group]] = defaultdict(list)
    for g in groups:
        tracks[g.track].append(g)
    return list(tracks.items())[:MAX_PANELS]


def _figure(n_panels: int) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    cols = min(3, max(1, n_panels))
    rows = math.ceil(max(1, n_panels) / cols)
    width, height = 6.8 * cols, 4.8 * rows
    fig = Figure(figsize=(width, height))
    # fixed margins in inches (matplotlib's constrained layout would double the drawing time of a large board)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.25 / width, bottom=0.6 / height, top=1 - 0.7 / height,
                        wspace=0.3, hspace=0.5)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:max(1, n_panels)]


def _errs(stats: list[dict[str, Any]]) -> list[list[float]]:
    """Asymmetric error bars [[below...], [above...]] from {mean, lo, hi} (n = 1: no bar)."""
    below, above = [], []
    for s in stats:
        m = s["mean"]
        below.append(max(0.0, m - (s["lo"] if s["lo"] is not None else m)))
        above.append(max(0.0, (s["hi"] if s["hi"] is not None else m) - m))
    return [below, above]


def _short(g: Group) -> str:
    return ", ".join(f"{k.removeprefix('algo.')}={v:g}" if isinstance(v, float) else f"{k.removeprefix('algo.')}={v}"
                     for k, v in g.preset.items())


def _legend(ax: Any) -> None:
    """Lower right (a fixed place: matplotlib's "best" is slow with many points); on a frontier, a learning curve or
    a compute plot that corner is the one results rarely reach (high cost or KL, low reward)."""
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="lower right", framealpha=0.85)


def frontier(groups: list[Group]) -> Any:
    colors, tracks = _colors(groups), _tracks(groups)
    fig, axes = _figure(len(tracks))
    for ax, (track, members) in zip(axes, tracks):
        h = members[0].headline
        pts = [g for g in members if g.metric(KL_METRIC)["mean"] is not None and g.score["mean"] is not None]
        by_algo: dict[str, list[Group]] = defaultdict(list)
        for g in pts:
            by_algo[g.algo].append(g)
        for algo, gs in sorted(by_algo.items()):
            gs.sort(key=lambda g: g.metric(KL_METRIC)["mean"])
            xs = [g.metric(KL_METRIC)["mean"] for g in gs]
            ys = [g.score["mean"] for g in gs]
            ax.plot(xs, ys, "-o", color=colors[algo], label=_safe(algo), ms=5, lw=1.5, zorder=3)
            ax.errorbar(xs, ys, xerr=_errs([g.metric(KL_METRIC) for g in gs]),
                        yerr=_errs([g.score for g in gs]), fmt="none", ecolor=colors[algo], alpha=0.45,
                        lw=1, capsize=2, zorder=2)
            for g, x, y in zip(gs, xs, ys):
                if len(pts) <= ANNOTATE_MAX and _short(g):
                    ax.annotate(_safe(_short(g)), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                                color=colors[algo])
        seeds = seed_points(members)
        if seeds:
            ax.scatter([kl for _, kl, _ in seeds], [y for _, _, y in seeds], s=9, alpha=0.35, zorder=1,
                       color=[colors[g.algo] for g, _, _ in seeds])
        front = sorted((kl, y) for (_, kl, y), on in zip(seeds, pareto_front([(kl, y) for _, kl, y in seeds])) if on)
        if front:
            ax.step([kl for kl, _ in front], [y for _, y in front], where="post", color="black", ls="--", lw=1,
                    label="Pareto front (seeds)", zorder=4)
        ax.set(xlabel="KL to the reference (nats, eval/kl)", ylabel=_safe(f"{h.label.lower()} ({h.metric})"),
               title=_safe(track_title(track)))
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle("Headline vs KL: mean and 95% CI over seeds", y=1 - 0.15 / fig.get_figheight())
    return fig


def compute(groups: list[Group]) -> Any:
    colors, tracks = _colors(groups), _tracks(groups)
    fig, axes = _figure(len(tracks))
    for ax, (track, members) in zip(axes, tracks):
        by_algo: dict[str, list[Group]] = defaultdict(list)
        for g in members:
            if g.metric("cost/wall_time_s")["mean"] is not None and g.score["mean"] is not None:
                by_algo[g.algo].append(g)
        xs_all = []
        for algo, gs in sorted(by_algo.items()):
            xs = [g.metric("cost/wall_time_s")["mean"] for g in gs]
            xs_all += xs
            ax.errorbar(xs, [g.score["mean"] for g in gs], yerr=_errs([g.score for g in gs]),
                        fmt="o", color=colors[algo], capsize=2, ms=5, label=_safe(algo))
        if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) > 20:
            ax.set_xscale("log")
        h = members[0].headline
        ax.set(xlabel="wall-clock time per run (s, mean over seeds)", ylabel=_safe(f"{h.label.lower()} ({h.metric})"),
               title=_safe(track_title(track)))
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle("Headline vs compute", y=1 - 0.15 / fig.get_figheight())
    return fig


def curves(groups: list[Group]) -> Any:
    colors, tracks = _colors(groups), _tracks(groups)
    fig, axes = _figure(len(tracks))
    styles = ["-", "--", ":", "-."]
    for ax, (track, members) in zip(axes, tracks):
        drawn = [g for g in members if g.curves.get(g.headline.metric)]
        per_group_legend = len(drawn) <= 12
        seen: set[str] = set()
        index: dict[str, int] = defaultdict(int)
        for g in drawn:
            c = g.curves[g.headline.metric]
            steps = [p["step"] for p in c]
            ax.plot(steps, [p["mean"] for p in c], styles[index[g.algo] % len(styles)], color=colors[g.algo],
                    lw=1.5, marker="o", ms=3, label=_safe(g.label) if per_group_legend else (None if g.algo in seen else _safe(g.algo)))
            band = [(p["lo"], p["hi"]) if p["lo"] is not None else (math.nan, math.nan) for p in c]  # n=1: none
            ax.fill_between(steps, [lo for lo, _ in band], [hi for _, hi in band], color=colors[g.algo], alpha=0.12,
                            lw=0)
            index[g.algo] += 1
            seen.add(g.algo)
        h = members[0].headline
        ax.set(xlabel="training step", ylabel=_safe(f"{h.label.lower()} ({h.metric})"), title=_safe(track_title(track)))
        ax.grid(alpha=0.3)
        _legend(ax)
    fig.suptitle("Learning curves: the headline during training (mean and 95% CI over seeds)",
                 y=1 - 0.15 / fig.get_figheight())
    return fig


FIGURES: dict[str, tuple[Callable[[list[Group]], Any], str]] = {
    "frontier": (frontier, "Headline vs KL to the reference, with each algorithm's curve, the seeds' final points "
                           "and the Pareto front through them"),
    "compute": (compute, "Headline vs wall-clock compute per run"),
    "curves": (curves, "Learning curves: headline vs training step"),
}


def draw_all(groups: list[Group]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Draw each figure as PNG and SVG bytes (the build writes them with the other board files); returns
    ({name: {png, svg, png_bytes, svg_bytes, caption}}, warnings)."""
    import matplotlib

    figures: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    with matplotlib.rc_context({"svg.hashsalt": "alignzoo-board", "font.size": 9}):
        for name, (draw, caption) in FIGURES.items():
            try:
                fig = draw(groups)
                png, svg = io.BytesIO(), io.BytesIO()
                fig.savefig(png, format="png", dpi=100)
                fig.savefig(svg, format="svg", metadata={"Date": None})
                figures[name] = {"png": f"{name}.png", "svg": f"{name}.svg", "png_bytes": png.getvalue(),
                                 "svg_bytes": svg.getvalue(), "caption": caption}
            except Exception as exc:  # noqa: BLE001 - a figure must not cost the tables
                warnings.append(f"figure {name} could not be drawn: {type(exc).__name__}: {exc}")
    return figures, warnings

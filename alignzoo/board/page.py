"""``index.html``: one static, self-contained page (inline CSS and JS, figures as PNG data URIs) that works from
disk and on any static host. Rendered by Jinja2 with autoescaping, so every string from a record is HTML-escaped
(an algorithm named ``<script>...`` shows as text); no record data is placed inside ``<script>``."""

from __future__ import annotations

import base64
from typing import Any

import jinja2

from alignzoo.board.aggregate import Group, error_summary
from alignzoo.board.headline import KL_METRIC
from alignzoo.board.tables import (COMPARISONS, KL_BOUND, TEST_PICKED, comparison_headers, fmt, fmt_collapse,
                                   fmt_comparison, frontier_columns, legend, track_title)

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1600px;
       padding: 0 16px; color: #1b1b1b; background: #fff; }
h1 { margin: 0 0 4px; } h2 { margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; }
table { border-collapse: collapse; width: 100%; margin: 12px 0; }
th, td { border: 1px solid #e2e2e2; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f3f5f8; cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; }
th.sorted-asc::after { content: " \25B2"; } th.sorted-desc::after { content: " \25BC"; }
td.text, th.text { text-align: left; }
tr.failed td { background: #fff1f0; }
tr.pareto td.algo { font-weight: 600; }
td code, li code { font-size: 12px; word-break: break-all; white-space: pre-wrap; }
.err { color: #a8071a; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
small.ci { color: #666; white-space: nowrap; }
figcaption { color: #555; }
.badge { display: inline-block; font-size: 11px; padding: 0 5px; border-radius: 3px; background: #222; color: #fff; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="meta">{{ summary }}</p>
<p class="meta">Each row is one algorithm preset on one task/model/budget, with the number of seeds <i>n</i>,
ranked by its task's headline within a track. <span class="badge">front</span> marks the
headline-vs-KL Pareto front (through the seeds' own final points). Click a column header to sort.</p>
<ul class="meta legend">{% for line in legend %}<li>{{ line }}</li>{% endfor %}</ul>
<p class="meta">
Data: <a href="leaderboard.json">leaderboard.json</a> · <a href="runs.csv">runs.csv</a> ·
<a href="LEADERBOARD.md">LEADERBOARD.md</a></p>
{% for track in tracks %}
<h2>{{ track.title }}</h2>
<p class="meta">Headline: <code>{{ track.headline }}</code>.</p>
<table class="board sortable">
<thead><tr>
<th>Rank</th><th class="text">Algorithm</th><th>n</th>
{% for c in track.columns %}<th>{{ c }}</th>{% endfor %}
{% for c in track.comparisons %}<th>{{ c }}</th>{% endfor %}
<th>Collapsed</th><th>Tokens</th><th>Failed</th><th class="text">Config</th><th class="text">Reproduce</th>
</tr></thead>
<tbody>
{% for row in track.rows %}
<tr class="{{ row.cls }}" id="{{ row.id }}">
<td data-v="{{ row.rank_v }}">{{ row.rank }}</td>
<td class="text algo" data-v="{{ row.label }}">{{ row.label }}{% if row.pareto %} <span class="badge">front</span>{% endif %}</td>
<td data-v="{{ row.n }}">{{ row.n }}</td>
{% for cell in row.cells %}<td data-v="{{ cell.v }}">{{ cell.text }}{% if cell.ci %}<br><small class="ci">{{ cell.ci }}</small>{% endif %}</td>{% endfor %}
{% for cell in row.compare %}<td data-v="{{ cell.v }}">{{ cell.text }}{% if cell.ci %}<br><small class="ci">{{ cell.ci }}</small>{% endif %}</td>{% endfor %}
<td data-v="{{ row.collapse_v }}">{{ row.collapse }}</td>
<td data-v="{{ row.tokens_v }}">{{ row.tokens }}</td>
<td data-v="{{ row.failed }}">{% if row.failed %}<span class="err" title="{{ row.errors }}">{{ row.failed }}</span>{% else %}0{% endif %}</td>
<td class="text"><a href="{{ row.config_href }}">config</a></td>
<td class="text"><code>{{ row.command }}</code></td>
</tr>
{% endfor %}
</tbody>
</table>
{% endfor %}
{% if figures %}
<h2>Plots</h2>
<div class="figures">
{% for fig in figures %}
<figure>
<img class="plot" src="{{ fig.src }}" alt="{{ fig.caption }}">
<figcaption>{{ fig.caption }}. Files: <a href="{{ fig.png }}">{{ fig.png }}</a> ·
<a href="{{ fig.svg }}">{{ fig.svg }}</a></figcaption>
</figure>
{% endfor %}
</div>
{% endif %}
{% for w in figure_warnings %}<p class="err">{{ w }}</p>{% endfor %}
{% if failed %}
<h2>Failed runs ({{ failed|length }})</h2>
<table class="failed-runs sortable">
<thead><tr><th class="text">Run</th><th class="text">Algorithm</th><th class="text">Track</th><th>Seed</th>
<th class="text">Error</th><th class="text">Job directory</th></tr></thead>
<tbody>
{% for f in failed %}
<tr class="failed"><td class="text">{{ f.run_id }}</td><td class="text">{{ f.label }}</td><td class="text">{{ f.track }}</td>
<td data-v="{{ f.seed }}">{{ f.seed }}</td><td class="text err">{{ f.type }}: {{ f.message }}</td>
<td class="text"><code>{{ f.source }}</code></td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
{% if warnings %}<h2>Warnings</h2><ul>{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul>{% endif %}
<p class="meta">Built by <code>alignzoo board build</code> (alignzoo {{ version }}) from run records only.
Code versions seen: {{ git_shas }}.</p>
<script>
(function () {
  function key(cell) {  // numbers sort as numbers, text as text, empty cells last
    var v = cell.getAttribute("data-v"); if (v === null) { v = cell.textContent; }
    v = v.trim(); if (v === "") { return null; }
    var x = Number(v); return isNaN(x) ? v.toLowerCase() : x;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        var asc = !th.classList.contains("sorted-asc");
        Array.prototype.forEach.call(heads, function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
        th.classList.add(asc ? "sorted-asc" : "sorted-desc");
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[i]), y = key(b.cells[i]);
          if (x === null || y === null) { return (x === null) - (y === null); }
          var c = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1) : (x < y ? -1 : x > y ? 1 : 0);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  // a self-check for headless browsers: how many plots and rows are actually laid out and visible
  window.addEventListener("load", function () {
    var imgs = Array.prototype.filter.call(document.querySelectorAll("img.plot"), function (img) {
      var r = img.getBoundingClientRect(); return img.complete && img.naturalWidth > 0 && r.width > 0 && r.height > 0;
    });
    var rows = Array.prototype.filter.call(document.querySelectorAll("table.board tbody tr"), function (tr) {
      return tr.getBoundingClientRect().height > 0;
    });
    document.body.setAttribute("data-visible-plots", String(imgs.length));
    document.body.setAttribute("data-visible-rows", String(rows.length));
  });
})();
</script>
</body>
</html>
"""

_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _num(v: Any) -> str:
    return "" if v is None else repr(float(v))


def _cell(stat: dict[str, Any], digits: int, *, prefix: str = "", suffix: str = "") -> dict[str, str]:
    """The mean over its interval; ``prefix``/``suffix`` mark the mean (a KL bound, a test-picked checkpoint)."""
    main, _, ci = fmt(stat, digits).partition(" ")
    if stat.get("mean") is not None:
        main = prefix + main + suffix
    return {"text": main, "ci": ci, "v": _num(stat.get("mean"))}


def _cells(g: Group) -> list[dict[str, str]]:
    """A row's value cells in header order: matched-KL columns, then final values (as ``tables.row_cells``)."""
    picked_on_test = g.frontier.get("selected_by") in ("test", "mixed")
    out = [_cell(g.frontier.get(k) or {}, d, suffix=TEST_PICKED if picked_on_test else "")
           for k, _, d in frontier_columns(g.headline)]
    return out + [_cell(g.metric(k), d, prefix=KL_BOUND if k == KL_METRIC and g.kl_bound else "")
                  for k, _, d in g.headline.columns]


def _compare_cell(g: Group, attr: str) -> dict[str, str]:
    """"+0.320" over "[+0.210, +0.430] p_holm=0.012 paired"; sorts by the difference."""
    main, _, rest = fmt_comparison(g, attr).partition(" ")
    c = getattr(g, attr)
    return {"text": main, "ci": rest, "v": "" if c is None else _num(c["diff"])}


def render(groups: list[Group], meta: dict[str, Any], figures: dict[str, dict[str, Any]],
           figure_warnings: list[str], *, title: str) -> str:
    tracks: dict[tuple[str, str, str], list[Group]] = {}
    for g in groups:
        tracks.setdefault(g.track, []).append(g)
    track_rows = []
    for track, members in tracks.items():
        rows = []
        for g in members:
            tokens = g.metric("cost/tokens")["mean"]
            errors = "; ".join(f"seed {e['seed']}: {e['type']}: {e['message'][:300]}" for e in g.errors())
            rows.append({
                "id": g.id, "cls": " ".join(c for c in ("failed" if not g.ok else "", "pareto" if g.pareto else "")
                                             if c),
                "rank": g.rank if g.rank is not None else "–", "rank_v": "" if g.rank is None else g.rank,
                "label": g.label, "pareto": g.pareto, "n": len(g.ok), "failed": len(g.failed), "errors": errors,
                "cells": _cells(g),
                "compare": [_compare_cell(g, attr) for attr, _ in COMPARISONS],
                "collapse": fmt_collapse(g), "collapse_v": "" if g.collapse is None else _num(g.collapse["rate"]),
                "tokens": "n/a" if tokens is None else f"{tokens:,.0f}", "tokens_v": _num(tokens),
                "config_href": f"configs/{g.id}.yaml", "command": g.command,
            })
        h = members[0].headline
        track_rows.append({"title": track_title(track), "rows": rows, "headline": h.metric,
                           "columns": [c for _, c, _ in frontier_columns(h)] + [c for _, c, _ in h.columns],
                           "comparisons": comparison_headers(h)})
    failed = []
    for g in groups:
        for r in g.failed:
            e = error_summary(r)
            failed.append({"run_id": e["run_id"], "label": g.label, "track": track_title(g.track), "seed": e["seed"],
                           "type": e["type"] or "error", "message": e["message"], "source": e["source"]})
    figs = [{"caption": f["caption"], "png": f["png"], "svg": f["svg"],
             "src": "data:image/png;base64," + base64.b64encode(f["png_bytes"]).decode()} for f in figures.values()]
    summary = (f"{meta['n_records']} runs ({meta['n_ok']} ok, {meta['n_failed']} failed) in {len(groups)} "
               f"group{'' if len(groups) == 1 else 's'} "
               f"from {', '.join(meta['run_dirs'])}")
    return _ENV.from_string(TEMPLATE).render(
        title=title, summary=summary, legend=legend(), tracks=track_rows, figures=figs,
        figure_warnings=figure_warnings,
        failed=failed, warnings=meta["warnings"], version=meta["alignzoo_version"],
        git_shas=", ".join(meta["git_shas"]) or "unknown")

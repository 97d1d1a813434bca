"""``build_board(run_dirs, out)``: records -> groups -> every board file, in one call (the CLI and the sweep
callback both use it). Every file is built in memory and then published at once (``publish``): a failed or
interrupted build leaves the previous board whole, and files in ``out`` that the board did not write stay."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from alignzoo.board.aggregate import Group, group_records, protocol, usable
from alignzoo.board.collect import collect
from alignzoo.board.tables import config_yaml, leaderboard_json, leaderboard_md, runs_csv

BOARD_SCHEMA_VERSION = 2  # 2: rank_by is {task: headline}; groups carry headline, frontier, kl_bound


@dataclass
class Board:
    out: Path
    groups: list[Group]
    records: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.records if not usable(r))

    @property
    def index(self) -> Path:
        return self.out / "index.html"

    def summary(self) -> str:
        return (f"{len(self.records)} runs ({len(self.records) - self.n_failed} ok, {self.n_failed} failed) in "
                f"{len(self.groups)} groups -> {self.index} (also LEADERBOARD.md, leaderboard.json, runs.csv, "
                f"plots) in {self.seconds:.1f}s")


def _version() -> str:
    import importlib.metadata as md

    try:
        return md.version("alignzoo")
    except md.PackageNotFoundError:
        return "unknown"


def build_board(run_dirs: Iterable[str | Path], out: str | Path, *, title: str = "alignzoo leaderboard",
                figures: bool = True) -> Board:
    """Read every record under ``run_dirs`` and write the board into ``out``; returns what was built."""
    import json

    import alignzoo.board.page as page
    import alignzoo.board.plots as plots
    import alignzoo.board.publish as publish

    t0 = time.perf_counter()
    out = Path(out)
    publish.check_out(out)  # before any work: a --out that cannot hold a board fails in a second, not a minute
    run_dirs = [str(d) for d in run_dirs]
    collected = collect(run_dirs)
    records = collected.records
    groups = group_records(records)
    n_failed = sum(1 for r in records if not usable(r))
    meta = {
        "schema_version": BOARD_SCHEMA_VERSION, "alignzoo_version": _version(), "run_dirs": run_dirs,
        "rank_by": {g.track[0]: g.headline.metric for g in groups},  # task -> its headline
        "n_records": len(records), "n_ok": len(records) - n_failed, "n_failed": n_failed,
        **protocol(),
        "git_shas": sorted({r["git_sha"] for r in records if r.get("git_sha")}),
        "warnings": list(collected.warnings) + [
            f"{g.label} ({' · '.join(g.track)}): seed(s) {', '.join(sorted({str(r.get('seed')) for r in g.repeats}))} "
            f"ran more than once; the latest run of each seed counts (not counted: "
            f"{', '.join(str(r.get('run_id')) for r in g.repeats)})" for g in groups if g.repeats],
    }
    figs, fig_warnings = plots.draw_all(groups) if figures else ({}, [])
    meta["figures"] = {name: {"png": f["png"], "svg": f["svg"]} for name, f in figs.items()}
    meta["warnings"] += fig_warnings
    files: dict[str, str | bytes] = {f"configs/{g.id}.yaml": config_yaml(g) for g in groups}
    for f in figs.values():
        files.update({f["png"]: f["png_bytes"], f["svg"]: f["svg_bytes"]})
    files["leaderboard.json"] = json.dumps(leaderboard_json(groups, meta), indent=1, default=str) + "\n"
    files["runs.csv"] = runs_csv(groups)
    files["LEADERBOARD.md"] = leaderboard_md(groups, meta, plots={n: f["png"] for n, f in figs.items()})
    files["index.html"] = page.render(groups, meta, figs, fig_warnings, title=title)
    warnings = meta["warnings"] + publish.publish(out, files)
    return Board(out=out, groups=groups, records=records, warnings=warnings, seconds=time.perf_counter() - t0)

"""Check a built board in a real browser: ``python -m alignzoo.board.browser BOARD_DIR``.

Renders ``BOARD_DIR/index.html`` from disk in headless Chromium (Debian packages ``chromium``, ``chromium-driver``)
with ``--dump-dom`` (the DOM after load, including what the page's own self-check measured: how many plots and
table rows are laid out with a non-zero size) and ``--screenshot`` (left in ``BOARD_DIR/screenshot.png``) at a
1400x2000 window. Fails unless the table has rows that are all visible, every plot is a loaded, visible image, no
record string became a ``<script>`` element, and the screenshot is not blank.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=5000"]
WINDOW = "1400,2000"


@dataclass
class BrowserCheck:
    screenshot: Path
    table_rows: int = 0  # <tr> in the leaderboard tables' bodies (DOM)
    visible_rows: int = 0  # of those, laid out with a height (the page's self-check)
    plots: int = 0  # <img class="plot"> in the DOM
    visible_plots: int = 0  # loaded and laid out with a size (the page's self-check)
    escaped_ok: bool = True  # no executable <script> came from a record (only the page's own one)
    ink: float = 0.0  # share of screenshot pixels that are not background white
    colors: int = 0  # distinct colours in the screenshot
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def find_chromium() -> Optional[str]:
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(binary: str, args: list[str], profile: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=timeout)


def check_board(board_dir: str | Path, *, chromium: Optional[str] = None, timeout: int = 120) -> BrowserCheck:
    board_dir = Path(board_dir).resolve()
    index = board_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"{index} does not exist; build the board first (alignzoo board build ... --out DIR)")
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found; install it with `apt-get install -y chromium chromium-driver`")
    check = BrowserCheck(screenshot=board_dir / "screenshot.png")
    url = index.as_uri()
    check.screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="alignzoo-chromium-") as profile:
        # one launch does both: the DOM after load on stdout, the screenshot into the board directory
        dom = _run(binary, [f"--window-size={WINDOW}", f"--screenshot={check.screenshot}", "--dump-dom", url],
                   profile, timeout)
    if dom.returncode != 0 or "<html" not in dom.stdout:
        check.problems.append(f"chromium failed (exit {dom.returncode}): {dom.stderr[-500:]}")
        return check
    html = dom.stdout
    body = re.search(r"<body([^>]*)>", html)
    attrs = dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1))) if body else {}
    check.visible_plots = int(attrs.get("data-visible-plots", 0))
    check.visible_rows = int(attrs.get("data-visible-rows", 0))
    check.plots = len(re.findall(r'<img class="plot" src="data:image/png;base64,', html))
    tables = re.findall(r'<table class="board sortable">.*?<tbody>(.*?)</tbody>', html, flags=re.S)
    check.table_rows = sum(len(re.findall(r"<tr[ >]", t)) for t in tables)
    check.escaped_ok = len(re.findall(r"<script[ >]", html)) == 1  # the page's own sort/self-check script only
    if check.table_rows == 0:
        check.problems.append("the leaderboard table has no rows")
    if check.visible_rows != check.table_rows:
        check.problems.append(f"{check.visible_rows} of {check.table_rows} table rows are visible")
    if check.plots == 0:
        check.problems.append("no plot image in the page")
    if check.visible_plots != check.plots:
        check.problems.append(f"{check.visible_plots} of {check.plots} plots loaded and visible")
    if not check.escaped_ok:
        check.problems.append("the DOM holds a <script> element besides the page's own: a record string was not "
                              "escaped")
    if not check.screenshot.is_file():
        check.problems.append(f"chromium wrote no screenshot: {dom.stderr[-500:]}")
        return check
    import numpy as np
    from PIL import Image

    with Image.open(check.screenshot) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3).astype(np.int32)
    check.colors = len(np.unique((pixels[:, 0] << 16) | (pixels[:, 1] << 8) | pixels[:, 2]))
    check.ink = float((pixels.min(axis=1) < 235).mean())
    if check.ink < 0.02 or check.colors < 16:
        check.problems.append(f"the screenshot looks blank (ink {check.ink:.3f}, {check.colors} colours)")
    return check


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alignzoo.board.browser", description=__doc__.splitlines()[0])
    parser.add_argument("board_dir", help="a directory written by `alignzoo board build --out`")
    parser.add_argument("--chromium", default=None, help="the browser binary (default: /usr/bin/chromium)")
    ns = parser.parse_args(argv)
    try:
        check = check_board(ns.board_dir, chromium=ns.chromium)
    except FileNotFoundError as exc:
        print(f"check_board: error: {exc}", file=sys.stderr)
        return 2
    print(f"table rows {check.visible_rows}/{check.table_rows} visible, plots {check.visible_plots}/{check.plots} "
          f"visible, screenshot {check.screenshot} (ink {check.ink:.3f}, {check.colors} colours)")
    for p in check.problems:
        print(f"check_board: FAIL: {p}", file=sys.stderr)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())

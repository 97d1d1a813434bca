"""The leaderboard: records -> groups over seeds -> ``leaderboard.json``, ``runs.csv``, ``LEADERBOARD.md``,
``index.html`` and plots, built from run records alone (never from W&B), so it works offline and in CI.

- ``collect`` / ``validate``: find ``record.json`` files recursively and check each (a bad one is skipped, named);
- ``aggregate``: group by task/model/budget and algorithm preset; mean, interval, median and n per metric; ranks
  from Holm-corrected tests; comparisons with the SFT row and the row above; collapse rates;
- ``stats``: Student-t and seeded BCa intervals, metric ranges, Welch and paired t-tests, Holm's correction;
- ``tables`` / ``plots`` / ``page``: the JSON, CSV, Markdown, figures and the static HTML page;
- ``csvsafe``: CSV/TSV cells a spreadsheet never runs as formulas; ``publish``: the board into ``--out`` atomically,
  never touching files it did not write;
- ``callback``: the Hydra callback that builds ``<sweep dir>/board/`` after every multirun;
- ``browser``: renders a built page in headless Chromium and checks that the table and plots are visible.

``alignzoo board build RUN_DIRS... --out DIR`` is the command; ``build_board`` the function.
"""

from alignzoo.board.build import Board, build_board

__all__ = ["Board", "build_board"]

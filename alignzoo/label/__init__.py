"""``alignzoo label``: a local web page where people judge completions, saved as preference data.

``store`` (the session folder: items and the append-only labels log), ``items`` (comparisons from a dataset or
sampled from the configured policy), ``server`` (the Starlette app), ``agreement`` (agreement tables), ``cli``
(the command), ``cdp`` (a small headless-Chromium driver for the page's browser test). The feedback stage reads
the labels with ``labeler=human labeler.path=<folder>`` (``alignzoo.stages.human_feedback``).
"""

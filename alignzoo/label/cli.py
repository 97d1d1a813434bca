"""``alignzoo label [options] [hydra overrides]``: start (or resume) a labeling session and serve its page.

Completions come from ``--from FILE`` (a dataset with prompt + completions, or prompt + chosen + rejected) or are
sampled from the policy the overrides configure (default: the embedded task's SFT policy). Running the command
again on the same ``--out`` folder resumes where each annotator stopped. ``--report`` prints the agreement tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from alignzoo.errors import AlignzooError
from alignzoo.label.limits import DEFAULT_MAX_BODY_KB, MIN_TOKEN, annotator_problem, max_body_problem, token_problem

DEFAULT_OUT = "outputs/labels"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="alignzoo label", description="Judge completions in the browser; the judgments become preference data "
        "(labeler=human labeler.path=OUT).", epilog="Keys on the page: 1..K pick (rank) the better completion, t tie, "
        "b both bad, Backspace undo a rank, e write a better response. Example: alignzoo label task=sentiment "
        "budget=quick --annotator alice")
    p.add_argument("overrides", nargs="*", help="hydra overrides that configure the policy to sample from")
    p.add_argument("--from", dest="source", metavar="FILE", help="label comparisons read from a dataset file or "
                   "folder instead of sampling (columns prompt + completions, or prompt + chosen + rejected)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"session folder: items.jsonl and labels.jsonl "
                   f"(default {DEFAULT_OUT}; an existing session is resumed)")
    p.add_argument("--annotator", default=os.environ.get("USER") or "annotator", help="your annotator id "
                   "(default $USER); others can open the page with ?annotator=NAME")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument("--access-token", default=None, metavar="TOKEN",
                   help=f"require this token (at least {MIN_TOKEN} URL-safe characters) on every request (needed to "
                   "bind beyond localhost; default $ALIGNZOO_LABEL_TOKEN)")
    p.add_argument("--max-body-kb", type=int, default=DEFAULT_MAX_BODY_KB, metavar="KB",
                   help=f"refuse request bodies over this size, unread (default {DEFAULT_MAX_BODY_KB}; raise it only "
                   "for very long demonstrations)")
    p.add_argument("-k", "--completions", type=int, default=None, metavar="K",
                   help="completions per prompt when sampling (default: the task's completions_per_prompt, else 2)")
    p.add_argument("--limit", type=int, default=None, help="number of comparisons to label (default: 100 sampled "
                   "prompts; every row of a --from file)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: the config's seed)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--report", action="store_true", help="print the agreement tables of the labels in --out and exit")
    return p


def _simulated_pool(overrides: list[str]) -> Optional[list[Any]]:
    """The simulated annotator pool the task config describes (task=sentiment), to compare humans with it."""
    from omegaconf import OmegaConf

    from alignzoo.pipeline.labelers import SimulatedLabelerConfig, annotators
    from alignzoo.testing import compose_config

    cfg = compose_config(list(overrides))
    if cfg.task.get("name") != "sentiment":
        return None
    labeler = cfg.get("labeler")
    simulated = (OmegaConf.to_object(labeler) if labeler is not None and labeler.get("name") == "simulated"
                 else SimulatedLabelerConfig())  # the pool labeler=simulated would use
    return annotators(simulated, seed=int(cfg.pipeline.stage_seed))


def report(folder: str | Path, overrides: list[str]) -> str:
    from alignzoo.label.agreement import format_report, simulated_reference, summarize
    from alignzoo.label.store import read_labels

    rows = read_labels(folder)
    pool = _simulated_pool(overrides)
    refs = {"simulated annotators": simulated_reference(pool)} if pool else {}
    return format_report(summarize(rows, refs))


def open_session(ns: argparse.Namespace) -> Any:
    from alignzoo.label.items import items_from_file, items_from_policy
    from alignzoo.label.store import ITEMS, SESSION, LabelSession

    folder = Path(ns.out).expanduser()
    if ns.limit is not None and ns.limit < 1:
        raise AlignzooError(f"--limit must be >= 1 (got {ns.limit})")
    if ns.source:
        items, source = items_from_file(ns.source, limit=ns.limit, seed=ns.seed or 0)
        return LabelSession.open(folder, items, source)
    if (folder / ITEMS).is_file():
        session_file = folder / SESSION
        config = json.loads(session_file.read_text())["source"].get("config", "") if session_file.is_file() else ""
        if ns.overrides and " ".join(ns.overrides) != config:
            raise AlignzooError(f"{folder} holds a session sampled with overrides {config!r}, not "
                                f"{' '.join(ns.overrides)!r}; resume it without overrides or use another --out")
        return LabelSession.open(folder)
    if ns.completions is not None and ns.completions < 2:
        raise AlignzooError(f"-k must be >= 2 (got {ns.completions})")
    from alignzoo import plugins
    from alignzoo.config_groups import options_for
    from alignzoo.registry import check_component_overrides

    problems = check_component_overrides(ns.overrides, plugins.load().registries, options_for(ns.overrides))
    if problems:
        raise AlignzooError("; ".join(problems))
    print(f"alignzoo label: sampling completions from the configured policy ({' '.join(ns.overrides) or 'defaults'})",
          file=sys.stderr)
    items, source = items_from_policy(ns.overrides, k=ns.completions, limit=ns.limit or 100, seed=ns.seed,
                                      out=folder)
    return LabelSession.open(folder, items, source)


def check_options(ns: argparse.Namespace) -> None:
    """The options that the server relies on, checked before the session opens (sampling may take minutes)."""
    token = "--access-token (from $ALIGNZOO_LABEL_TOKEN)" if ns.token_from_env else "--access-token"
    checks = [(f"--annotator {ns.annotator[:80]!r}", annotator_problem(ns.annotator)),
              ("--max-body-kb", max_body_problem(ns.max_body_kb)),
              (token, None if ns.access_token is None else token_problem(ns.access_token))]  # never echo a token
    found = [f"{option} {problem}" for option, problem in checks if problem]
    if found:
        raise AlignzooError("; ".join(found))


def main(args: list[str]) -> int:
    import logging

    from alignzoo.label.server import serve

    ns = parser().parse_args(args)
    ns.token_from_env = ns.access_token is None and bool(os.environ.get("ALIGNZOO_LABEL_TOKEN"))
    if ns.token_from_env:
        ns.access_token = os.environ["ALIGNZOO_LABEL_TOKEN"]
    if not ns.report:
        check_options(ns)
    logging.basicConfig(level=logging.INFO, format="alignzoo: %(message)s", stream=sys.stderr)
    import datasets

    datasets.disable_progress_bars()  # per-file bars of a --from file drown the command's own lines
    if ns.report:
        print(report(ns.out, ns.overrides))
        return 0
    session = open_session(ns)
    try:
        serve(session, host=ns.host, port=ns.port, annotator=ns.annotator, access_token=ns.access_token,
              open_browser=ns.open, max_body_kb=ns.max_body_kb)
    except KeyboardInterrupt:
        pass
    return 0

"""``alignzoo run|plugins|board|config|models|demo|label`` (also ``python -m alignzoo``).

``run`` hands its arguments to Hydra (overrides, ``-m`` sweeps, ``--cfg job``, ``--help``) after loading plugins, so
registered components are in Hydra's ConfigStore and the plugins' config folders on its search path before it
composes. The command line is parsed and put in the order Hydra's parser takes (``alignzoo/hydra_args.py``), and
component and preset names are checked first, so a typo gets "did you mean" instead of a Hydra stack trace.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Optional

from alignzoo import closed_pipe, plugins
from alignzoo.conf import CONFIG_NAME, CONFIG_PATH
from alignzoo.errors import AlignzooError
from alignzoo.registry import KINDS, check_component_overrides

USAGE = """usage: alignzoo <command> [args]

commands:
  run [overrides...]       run one job (or a sweep with -m), e.g. `alignzoo run algo=dpo seed=1`
  plugins [--json]         list plugins, their versions and components, and broken plugins
  models [--json]          the packaged models (SmolLM2, MiniLM): installed, converted, size, folder
  models convert NAME      convert a packaged model once (e.g. smollm2) and print its folder
  config path NAME | list  the absolute path of a shipped config file (accelerate/ddp.yaml), or all of them
  demo [--budget quick]    the zoo sweep on the embedded task x 3 seeds, then a results table
  board build RUN_DIRS... --out DIR
                           build the leaderboard (JSON, CSV, Markdown, HTML, plots) from run records
  label [--from FILE] [--out DIR] [overrides...]
                           judge completions in the browser; labeler=human labeler.path=DIR trains on them

`alignzoo run --help` lists config groups and options.
"""

def check_output_dir(args: list[str]) -> list[str]:
    """A problem when the job's output directory cannot be created (its nearest existing ancestor is a file or
    not writable), so the user gets one line instead of Hydra's traceback."""
    if any(a in ("--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i") for a in args):
        return []
    key = "hydra.sweep.dir" if any(a in ("-m", "--multirun") for a in args) else "hydra.run.dir"
    given = [a.split("=", 1)[1] for a in args if a.startswith(key + "=")]
    target = Path(given[-1]) if given and "$" not in given[-1] else Path("outputs")
    existing = target.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return []
    why = "is not a directory" if not existing.is_dir() else "is not writable"
    return [f"cannot create the output directory {target}: {existing} {why}; choose a writable one with {key}=<dir>"]


RERUN_REFUSED = ("--experimental-rerun: Hydra would unpickle that file, and alignzoo never unpickles what it reads; "
                 "run the job again with its overrides instead (they are in <job dir>/.hydra/overrides.yaml)")


def _hydra_flags(args: list[str]) -> Optional[argparse.Namespace]:
    """Hydra's own parse of the command line; None when Hydra will refuse it (it says why, before composing)."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            return get_args_parser().parse_args(args)
    except SystemExit:
        return None


def _command_line_keys(overrides: list[str]) -> set[str]:
    """The keys the command line itself sets: what the user typed, as opposed to what a config file says."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return {o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides)) if not o.is_delete()}
    except Exception:  # noqa: BLE001 - an override that does not parse: composing it fails and is refused
        return set()


def check_config_targets(args: list[str]) -> list[str]:
    """Problems that would let the config these arguments compose run code: a ``_target_`` or logging factory that
    is not on the exact allowlist, a code-loading ``hydra.job.env_set``, ``trust_remote_code`` that only a config
    file asked for, Hydra's pickle-based ``--experimental-rerun``; checked on the resolved config of the run, or of
    the sweep and every one of its jobs. A config that cannot be composed or resolved is one problem (fail closed)."""
    from alignzoo import safety
    from alignzoo.hydra_configs import ComposeError, planned_configs

    ns = _hydra_flags(args)
    if ns is None or ns.shell_completion:  # shell completion composes but never instantiates or configures logging
        return []
    if ns.experimental_rerun is not None:
        return [RERUN_REFUSED]
    allow, typed = safety.allowlist(), _command_line_keys(ns.overrides)
    problems: list[str] = []
    seen: set[str] = set()
    try:
        for planned in planned_configs(ns, config_path=CONFIG_PATH, config_name=CONFIG_NAME,
                                       task_function=_run_hydra_job):
            c = planned.container
            found = (safety.untrusted_targets(c, allow=allow) + safety.code_loading_env(c)
                     + safety.unconfirmed_remote_code(c, typed))
            problems += [p + (f" (in the sweep job {planned.job})" if planned.job else "") for p in found
                         if p not in seen]
            seen.update(found)
    except ComposeError as exc:
        problems.append(str(exc))
    return problems


def _report_broken(state) -> None:
    for info in state.broken:
        print(f"alignzoo: warning: plugin {info.name} ({info.version}) is broken and was skipped: {info.error}",
              file=sys.stderr)
    for warning in state.warnings:
        print(f"alignzoo: warning: {warning}", file=sys.stderr)


def _refuse(problems: list[str]) -> int:
    for p in problems:
        print(f"alignzoo: error: {p}", file=sys.stderr)
    return 2


def cmd_run(args: list[str]) -> int:
    from alignzoo import config_groups, hydra_args
    from alignzoo.config import store_schema
    from alignzoo.distributed import hydra_overrides

    state = plugins.load()
    _report_broken(state)
    store_schema()
    config_groups.install()  # the plugins' presets are on every search path Hydra builds from here on
    # under a launcher, ranks other than 0 write no .hydra/ and no log file; placed where Hydra's parser takes them
    parsed = hydra_args.parse(args, extra=tuple(hydra_overrides(args)))
    if parsed.ns is None:  # --version
        return _hydra_main(parsed.args)
    options = config_groups.group_options(parsed.ns, config_path=CONFIG_PATH, config_name=CONFIG_NAME,
                                          task_function=_run_hydra_job)
    from alignzoo.pipeline.moved import moved_key_problems

    problems = (check_component_overrides(parsed.ns.overrides, state.registries, options)
                + check_output_dir(parsed.args) + moved_key_problems(parsed.ns.overrides))
    if problems:
        return _refuse(problems)
    # before Hydra instantiates anything the config names; then the flag combinations Hydra would end in a
    # traceback (the guard's findings come first: `-m ... --cfg job` is how one checks a sweep without running it)
    problems = check_config_targets(parsed.args) or hydra_args.flag_problems(parsed.ns)
    if problems:
        return _refuse(problems)
    return _hydra_main(parsed.args)


def _hydra_main(args: list[str]) -> int:
    import hydra

    sys.argv = ["alignzoo run", *args]

    @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=CONFIG_NAME)
    def _job(cfg) -> Optional[float]:
        return _run_hydra_job(cfg)

    _job()
    return 0


def _run_hydra_job(cfg) -> Optional[float]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from alignzoo.distributed import is_main_process, shared_job_dir
    from alignzoo.run import run_job

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job_dir = shared_job_dir(Path(hc.runtime.output_dir))  # rank 0's directory on every rank
    group = Path(hc.sweep.dir).name if multirun else None
    record = run_job(cfg, job_dir, overrides=list(hc.overrides.task), group=group)
    where = getattr(record, "written_to", None) or job_dir / "record.json"
    if record.status == "ok" and not is_main_process():
        return None
    if record.status == "ok":
        gold = record.metrics.get("eval/gold_reward")
        extra = f" eval/gold_reward={gold:.4f}" if gold is not None else ""
        print(f"alignzoo: {record.algo} ok in {record.wall_time_s:.1f}s{extra}; record: {where}", file=sys.stderr)
        return gold
    err = record.error or {}
    print(f"alignzoo: error: {err.get('message', 'job failed')}", file=sys.stderr)
    if not err.get("user_error"):
        print(f"alignzoo: this looks like a bug; the traceback is in {where}", file=sys.stderr)
    elif getattr(record, "written_to", "") is not None:
        print(f"alignzoo: the failed record is in {where}", file=sys.stderr)
    if not multirun:
        sys.exit(2 if err.get("user_error") else 1)
    return None


def cmd_plugins(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alignzoo plugins", description="List plugins and their components.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    ns = parser.parse_args(args)
    state = plugins.load()
    for warning in state.warnings:
        print(f"alignzoo: warning: {warning}", file=sys.stderr)
    if ns.json:
        out = {"plugins": [p.as_dict() for p in state.plugins],
               "components": {k: state.registries[k].names() for k in KINDS},
               "broken": [p.as_dict() for p in state.broken]}
        print(json.dumps(out, indent=2))
        return 0
    for p in state.plugins:
        status = "BROKEN" if p.broken else ("built-in" if p.builtin else "ok")
        print(f"{p.name} {p.version or ''} [{status}]")
        if p.broken:
            print(f"    error: {p.error}")
        for kind, names in p.components.items():
            print(f"    {kind}: {', '.join(names)}")
    return 0


def cmd_board(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alignzoo board", description="Build the leaderboard from run records.")
    sub = parser.add_subparsers(dest="action", metavar="build", required=True)
    build = sub.add_parser("build", help="read every record.json under RUN_DIRS and write the board into --out",
                           description="Read every record.json under RUN_DIRS (recursively), aggregate over seeds "
                                       "and write leaderboard.json, runs.csv, LEADERBOARD.md, index.html, plots.")
    build.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="sweep or output directories")
    build.add_argument("--out", required=True, metavar="DIR", help="where to write the board (created if missing)")
    build.add_argument("--title", default="alignzoo leaderboard", help="the page title")
    ns = parser.parse_args(args)
    from alignzoo.board import build_board

    try:
        board = build_board(ns.run_dirs, ns.out, title=ns.title)
    except KeyboardInterrupt:  # publish holds Ctrl-C during its renames, so --out holds one whole board either way
        print(f"alignzoo board: interrupted; {ns.out} holds one whole board (the previous one unless the new one "
              "was already in place), never a mix", file=sys.stderr)
        return 130
    for warning in board.warnings:
        print(f"alignzoo board: warning: {warning}", file=sys.stderr)
    print(f"alignzoo board: {board.summary()}")
    return 0


def cmd_config(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="alignzoo config", description="The config files shipped in the package.")
    sub = parser.add_subparsers(dest="action", metavar="{path,list}", required=True)
    path = sub.add_parser("path", help="print the absolute path of a shipped config file",
                          description="Print the absolute path of a shipped config file, e.g. for `accelerate "
                                      "launch --config_file \"$(alignzoo config path accelerate/ddp.yaml)\"`.")
    path.add_argument("name", metavar="NAME", help="relative to the package's conf/ folder, e.g. accelerate/ddp.yaml")
    sub.add_parser("list", help="list the shipped config files", description="List the shipped config files.")
    ns = parser.parse_args(args)
    from alignzoo.conf_files import shipped, shipped_path

    print(shipped_path(ns.name) if ns.action == "path" else "\n".join(shipped()))
    return 0


def cmd_models(args: list[str]) -> int:
    from alignzoo.models.assets import main as models_main

    return models_main(args)


def cmd_demo(args: list[str]) -> int:
    from alignzoo.demo import main as demo_main

    return demo_main(args)


def cmd_label(args: list[str]) -> int:
    from alignzoo.label.cli import main as label_main

    return label_main(args)


COMMANDS = {"run": cmd_run, "plugins": cmd_plugins, "board": cmd_board, "config": cmd_config, "models": cmd_models,
            "demo": cmd_demo, "label": cmd_label}


def main(argv: Optional[list[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    guard = closed_pipe.install()
    try:
        code = _run(argv, guard)
    finally:
        closed_pipe.uninstall(guard)
    sys.exit(code)


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"alignzoo: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    return COMMANDS[command](rest)


def _run(argv: list[str], guard: closed_pipe.StdoutGuard) -> object:
    """The command's exit code: its return value, its ``sys.exit`` (Hydra's, argparse's), 2 for an
    ``AlignzooError``, and ``closed_pipe.CLOSED_PIPE_EXIT`` when its stdout reader went away (see the README)."""
    try:
        code = _dispatch(argv)
    except AlignzooError as exc:
        print(f"alignzoo: error: {exc}", file=sys.stderr)
        code = 2
    except SystemExit as exc:  # Hydra ends --help and a failed job with sys.exit, argparse a bad flag
        code = exc.code
    except BrokenPipeError:  # written around sys.stdout (os.write, a saved reference): the same quiet end
        guard.divert()
        code = 0
    return closed_pipe.exit_code(guard, code)

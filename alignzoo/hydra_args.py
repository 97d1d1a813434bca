"""The ``alignzoo run`` command line as Hydra's own parser reads it: parsed once, checked for flag combinations Hydra
would answer with a traceback, and rebuilt in the one order Hydra's parser accepts.

Hydra's parser takes the overrides as one positional run (``nargs="*"``): ``algo=ipo --cfg job seed=1`` is refused,
and so was any override the CLI appended after a user's trailing flag. Here the command line is parsed with
``parse_intermixed_args`` (overrides anywhere), then rebuilt as ``[overrides..., extra overrides..., flags...]``,
and the rebuilt line is only used when Hydra's strict parser reads it exactly as the intermixed parse did.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from dataclasses import dataclass
from typing import Optional

from alignzoo.errors import AlignzooError

class CommandLineError(AlignzooError):
    """Flags that Hydra's parser refuses, or combines only with a traceback: one line with the fix."""


HELP_HINT = "`alignzoo run --help` lists the options, `--hydra-help` Hydra's flags"


@dataclass
class Parsed:
    """A command line Hydra will accept: its namespace (``None`` for ``--version``, which argparse answers itself)."""

    ns: Optional[argparse.Namespace]
    args: list[str]


def _parser() -> argparse.ArgumentParser:
    from hydra._internal.utils import get_args_parser

    return get_args_parser()


def _quiet(parse, args: list[str]) -> tuple[Optional[argparse.Namespace], Optional[int], str]:
    """``parse(args)`` with argparse's usage and messages captured: (namespace, exit code when it exited, stderr)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parse(args), None, ""
    except SystemExit as exc:
        return None, exc.code if isinstance(exc.code, int) else 2, err.getvalue()


def _argparse_message(stderr: str) -> str:
    """argparse's ``prog: error: MESSAGE`` line, without the usage above it."""
    lines = [ln.split(": error: ", 1)[1] for ln in stderr.splitlines() if ": error: " in ln]
    return lines[-1] if lines else "Hydra's parser refused these flags"


def _flag_tokens(args: list[str], overrides: list[str]) -> list[str]:
    """``args`` without the override tokens (taken in order, leftmost first): the flags and their values."""
    rest, pending = [], list(overrides)
    for token in args:
        if pending and token == pending[0]:
            pending.pop(0)
        else:
            rest.append(token)
    return rest


def parse(args: list[str], extra: tuple[str, ...] = ()) -> Parsed:
    """The command line with ``extra`` overrides added, in an order Hydra's parser accepts; ``CommandLineError`` (one
    line) when Hydra's parser refuses the flags themselves (an unknown flag, ``--cfg jb``)."""
    parser = _parser()
    ns, code, err = _quiet(parser.parse_intermixed_args, list(args))
    if code == 0:  # --version: argparse prints it and exits; Hydra does the same when it parses
        return Parsed(None, list(args))
    if ns is None:
        raise CommandLineError(f"{_argparse_message(err)}; {HELP_HINT}")
    rebuilt = [*ns.overrides, *extra, *_flag_tokens(args, ns.overrides)]
    strict, _, _ = _quiet(_parser().parse_args, rebuilt)
    expected = argparse.Namespace(**{**vars(ns), "overrides": [*ns.overrides, *extra]})
    if strict != expected:  # e.g. a flag's value spelled like one of the overrides: never guess
        raise CommandLineError(f"cannot tell the overrides from the flags in {' '.join(args)!r}; put every override "
                          "(key=value) after the flags and their values")
    return Parsed(strict, rebuilt)


RESOLVE_NEEDS_CFG = ("--resolve only applies to a printed config: add --cfg job (or --cfg hydra, --cfg all), or "
                     "drop --resolve")
PACKAGE_NEEDS_CFG = ("--package (-p) only selects the part of the config that --cfg prints: add --cfg job (e.g. "
                     "`alignzoo run --cfg job -p algo`), or drop -p")

#: Hydra's commands: at most one per command line (``_run_hydra`` raises a ValueError otherwise)
COMMAND_FLAGS = (("--run", lambda ns: ns.run), ("-m/--multirun", lambda ns: ns.multirun),
                 ("--cfg", lambda ns: ns.cfg is not None), ("--info", lambda ns: ns.info is not None),
                 ("--shell-completion", lambda ns: ns.shell_completion))


def flag_problems(ns: Optional[argparse.Namespace]) -> list[str]:
    """Flag combinations that Hydra ends in a ValueError traceback (``hydra._internal.utils._run_hydra``, checked in
    its order), or that it silently ignores (``-p`` without ``--cfg``), each as one message with the fix."""
    if ns is None or ns.help:  # --version, --help: printed before Hydra looks at the other flags
        return []
    if ns.resolve and ns.cfg is None:
        return [RESOLVE_NEEDS_CFG]
    if ns.hydra_help:
        return []
    problems = [PACKAGE_NEEDS_CFG] if ns.package is not None and ns.cfg is None else []
    commands = [name for name, given in COMMAND_FLAGS if given(ns)]
    if len(commands) > 1:
        problems.append(f"{' and '.join(commands)} cannot be combined: Hydra does one of them per command; keep "
                        "--cfg job to print the config (without -m: the config of one job), -m to run the sweep, "
                        "or --info to describe the config")
    return problems

"""What a resolved config may make Hydra (and ``logging``) import and run: an exact allowlist of objects.

Hydra instantiates every ``_target_`` under ``hydra.`` (callbacks, launcher, sweeper, recursively into their
arguments) and hands ``hydra.job_logging`` / ``hydra.hydra_logging`` to ``logging.config.dictConfig``, which imports
``class`` and ``()`` and every ``ext://`` value. A config file someone downloaded must not pick what runs, so each
such path is looked up among the modules already imported (never importing and never calling anything) and compared
by identity with the objects allowed below; a string prefix proves nothing (``alignzoo.run.os.system`` is
``os.system``). The checks work on a resolved container (``OmegaConf.to_container(cfg, resolve=True)``): values that
interpolations and resolvers produce are checked as Hydra will see them. ``alignzoo.hydra_configs`` composes the
configs Hydra will use; ``alignzoo.cli`` runs both before Hydra starts.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Iterable, Optional

#: alignzoo's own Hydra callbacks (``hydra.callbacks.<name>._target_``); launchers and sweepers are the installed
#: Hydra plugins' classes, found by Hydra's own plugin discovery
CALLBACKS = ("alignzoo.board.callback.BoardCallback",)
#: the logging classes Hydra's shipped job_logging / hydra_logging configs name, and colorlog's formatter when the
#: hydra-colorlog plugin is installed (``class`` and ``()`` keys)
LOGGING_CLASSES = ("logging.StreamHandler", "logging.FileHandler", "logging.Formatter", "logging.NullHandler",
                   "colorlog.ColoredFormatter")
#: the only ``ext://`` values a logging config may hold (dictConfig imports anything else it names)
LOGGING_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
#: where Hydra hands a config node to ``logging.config.dictConfig``
LOGGING_NODES = ("hydra.job_logging", "hydra.hydra_logging")
#: environment variables that make a process (or the programs it starts) load or run other code; a config's
#: ``hydra.job.env_set`` may not set them
CODE_LOADING_ENV_PREFIXES = ("LD_", "DYLD_", "PYTHON")
CODE_LOADING_ENV = ("PATH", "BASH_ENV", "ENV", "PERL5OPT", "PERL5LIB", "RUBYOPT", "NODE_OPTIONS", "PROMPT_COMMAND",
                    "GIT_SSH_COMMAND", "GIT_EXEC_PATH", "CC", "CXX")
#: set to 1 to let ``trust_remote_code: true`` from a config file through (the command line confirms it too)
TRUST_REMOTE_CODE_ENV = "ALIGNZOO_TRUST_REMOTE_CODE"

_NOT_FOUND = object()
_PUBLIC_MODULE = {"posix": "os", "nt": "os"}  # where os.system & co. are documented
_FIX = ("select components by name (e.g. algo=dpo), or package your code as an alignzoo plugin and register it")


@dataclass(frozen=True)
class Allowlist:
    """The objects a ``_target_`` and a logging ``class`` / ``()`` may resolve to (compared by ``id``)."""

    targets: frozenset[int]
    logging: frozenset[int]


def locate_loaded(path: str) -> Any:
    """The object Hydra's ``_locate(path)`` would return, found among already-imported modules only.

    Walks ``path`` as ``_locate`` does (an attribute first, else the submodule), but looks modules up in
    ``sys.modules`` instead of importing them and reads attributes with ``inspect.getattr_static`` (no module
    ``__getattr__``, no descriptors run). Returns a private sentinel when the path does not lead anywhere that way:
    nothing the allowlist holds is missed, since every allowed object's module is imported before the check.
    """
    parts = path.split(".")
    if not all(parts):
        return _NOT_FOUND
    obj = sys.modules.get(parts[0], _NOT_FOUND)
    for i, part in enumerate(parts[1:], start=2):
        if obj is _NOT_FOUND:
            return obj
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            obj = sys.modules.get(".".join(parts[:i]), _NOT_FOUND) if isinstance(obj, ModuleType) else _NOT_FOUND
    return obj


def _import(dotted: str) -> Optional[Any]:
    """One of alignzoo's own allowlist names (never a config's): its module imported, if it is installed."""
    module, _, name = dotted.rpartition(".")
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return None
    return getattr(importlib.import_module(module), name, None)


def allowlist() -> Allowlist:
    """alignzoo's callbacks, the installed Hydra launcher and sweeper plugins, Hydra's logging classes."""
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra.plugins.sweeper import Sweeper

    plugins = Plugins.instance()
    targets = [*plugins.discover(Launcher), *plugins.discover(Sweeper), *map(_import, CALLBACKS)]
    logging_objects = map(_import, LOGGING_CLASSES)
    return Allowlist(frozenset(id(o) for o in targets if o is not None),
                     frozenset(id(o) for o in logging_objects if o is not None))


def _what_it_is(path: str) -> str:
    """`` (it is os.system)`` when ``path`` leads to an object whose own name differs (an attribute walk)."""
    obj = locate_loaded(path)
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if obj is _NOT_FOUND or not isinstance(module, str) or not isinstance(name, str):
        return ""
    module = _PUBLIC_MODULE.get(module, module)
    real = name if module == "builtins" else f"{module}.{name}"
    return "" if real == path else f" (it is {real})"


def _refused_target(key: str, value: Any) -> str:
    return (f"{key}={value!r}: configs may not name import paths other than alignzoo's and installed Hydra plugins'"
            f"{_what_it_is(value) if isinstance(value, str) else ''}; {_FIX}")


def _allowed(value: Any, ids: frozenset[int]) -> bool:
    return isinstance(value, str) and id(locate_loaded(value)) in ids


def _logging_problem(key: str, name: Any, value: Any, allow: Allowlist) -> Optional[str]:
    """What is wrong with one entry of a logging config (``class``, ``()``, ``ext://``, a log file name)."""
    if name in ("class", "()") and not _allowed(value, allow.logging):
        return (f"{key}={value!r}: logging configs may only name Hydra's logging classes (logging.StreamHandler, "
                f"logging.FileHandler, logging.Formatter){_what_it_is(value) if isinstance(value, str) else ''}; "
                "pick one of hydra/job_logging=default|stdout|disabled")
    if isinstance(value, str) and value.startswith("ext://") and value not in LOGGING_STREAMS:
        return f"{key}={value!r}: logging configs may only refer to ext://sys.stdout or ext://sys.stderr"
    if name == "filename" and not (isinstance(value, str) and value.endswith(".log")):
        return (f"{key}={value!r}: a log file's name must end in .log (a config may not append to other files, "
                "such as a shell profile)")
    return None


def untrusted_targets(node: Any, prefix: str = "", allow: Optional[Allowlist] = None) -> list[str]:
    """Every ``_target_`` in a config container, and every ``class`` / ``()`` / ``ext://`` / log file name in its
    logging nodes, that is not on the allowlist: one problem each, with its full key and the fix. ``node`` is
    resolved (``OmegaConf.to_container(cfg, resolve=True)``); an unresolved ``${...}`` is refused like any other
    string that names nothing allowed."""
    allow = allow or allowlist()
    out: list[str] = []
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = ((f"[{i}]", v) for i, v in enumerate(node))
    for name, value in items:
        key = f"{prefix}{name}" if str(name).startswith("[") else (f"{prefix}.{name}" if prefix else str(name))
        in_logging = key.startswith(LOGGING_NODES)
        problem = _logging_problem(key, name, value, allow) if in_logging else None
        if name == "_target_" and not _allowed(value, allow.targets):
            problem = _refused_target(key, value)
        if problem:
            out.append(problem)
        elif not (name == "_target_" or (in_logging and name in ("class", "()"))):
            out += untrusted_targets(value, key, allow)
    return out


def code_loading_env(container: dict[str, Any]) -> list[str]:
    """``hydra.job.env_set`` entries that would make the job, or the programs it starts, load other code."""
    env_set = ((container.get("hydra") or {}).get("job") or {}).get("env_set") or {}
    return [f"hydra.job.env_set.{name}: configs may not set {name}, which makes programs load or run other code; "
            f"set it in your shell instead" for name in env_set
            if str(name).upper().startswith(CODE_LOADING_ENV_PREFIXES) or str(name).upper() in CODE_LOADING_ENV]


def remote_code_keys(node: Any, prefix: str = "") -> list[str]:
    """The full keys of every ``trust_remote_code`` that is true in a resolved container (model, reward and critic
    configs alike: any Hugging Face backbone)."""
    out: list[str] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for name, value in items:
        key = f"{prefix}[{name}]" if isinstance(node, list) else (f"{prefix}.{name}" if prefix else str(name))
        if name == "trust_remote_code" and value is True:
            out.append(key)
        else:
            out += remote_code_keys(value, key)
    return out


def unconfirmed_remote_code(container: dict[str, Any], command_line_keys: set[str]) -> list[str]:
    """``trust_remote_code`` switched on by a config file rather than by the user: refused unless the command line
    names that key or ``ALIGNZOO_TRUST_REMOTE_CODE=1`` confirms it."""
    if os.environ.get(TRUST_REMOTE_CODE_ENV) == "1":
        return []
    return [f"{key}=true comes from a config file and would run code shipped with the model; confirm it on the "
            f"command line ({key}=true) or with {TRUST_REMOTE_CODE_ENV}=1"
            for key in remote_code_keys(container) if key not in command_line_keys]

"""Every config Hydra will use for an ``alignzoo run`` command line, composed and resolved the way Hydra does it.

The search path, the primary config (``--config-path``/``-cp``, ``--config-name``/``-cn``, ``--config-dir``/``-cd``),
the mode (``-m``, or ``hydra.mode: MULTIRUN`` in a config) and the jobs of a sweep (the basic sweeper's cartesian
product of the command line's sweeps and ``hydra.sweeper.params``, each job composed with
``load_sweep_config``, as the launcher does) all come from Hydra's own functions, so the check sees what Hydra will
instantiate rather than a copy of its rules. Resolution fills what Hydra fills only at run time
(``hydra.job.num``/``id``, ``hydra.runtime.output_dir``) and sets ``HydraConfig`` for ``${hydra:...}``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from alignzoo.errors import AlignzooError


class ComposeError(AlignzooError):
    """The config cannot be composed or resolved, so it cannot be checked: the run is refused (fail closed)."""


@dataclass
class Planned:
    """One config Hydra will use: the run's (or the sweep's master config) or one job of a sweep."""

    container: dict[str, Any]  # resolved
    job: str = ""  # "" for the run / the sweep itself; else the job's overrides


def one_line(exc: BaseException, *, with_key: bool = True) -> str:
    """Hydra's and OmegaConf's multi-line messages as one line: the message and its causes' (without the
    search-path listing, the type details and repeats), then the key."""
    key = getattr(exc, "full_key", None)
    parts: list[str] = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(parts) < 2:
        seen.add(id(exc))
        text = str(exc).split("Config search path:")[0]
        lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
        lines = [ln for ln in lines if not ln.startswith(("full_key:", "reference_type", "object_type", "See https"))
                 and "$VALUE" not in ln]
        text = " ".join(ln + ("" if ln.endswith(":") else ";") for ln in lines).rstrip(";")
        if text and text != "None" and not any(text.strip("\"'") in p for p in parts):
            parts.append(text)
        exc = exc.__cause__ or exc.__context__
    return "; ".join(parts) + (f" (key: {key})" if key and with_key else "")


def yaml_message(exc: Any) -> str:
    """``FILE line N: not valid YAML: ...; the fix`` for a scanner or parser error (bad indentation, a tab, an
    unclosed quote); N is where the broken construct starts."""
    mark = exc.context_mark or exc.problem_mark
    what = "; ".join(p for p in (exc.context, exc.problem) if p)
    return (f"{mark.name} line {mark.line + 1}: not valid YAML ({what}); indent with spaces (never tabs), align "
            "the keys of one mapping and close every quote")


def _yaml_error(exc: Optional[BaseException]) -> Any:
    """The YAML syntax error behind ``exc`` (itself or a cause), if there is one."""
    import yaml

    while exc is not None and not isinstance(exc, yaml.MarkedYAMLError):
        exc = exc.__cause__ or exc.__context__
    return exc


def _hydra(ns: argparse.Namespace, config_path: Optional[str], config_name: Optional[str],
           task_function: Callable[..., Any]) -> tuple[Any, Optional[str]]:
    """A Hydra instance with the search path ``hydra.main`` would build for these flags (see
    ``hydra._internal.utils._run_hydra``), and the primary config's name."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import (create_automatic_config_search_path,
                                       detect_calling_file_or_module_from_task_function, detect_task_name,
                                       validate_config_path)
    from hydra.core.config_search_path import SearchPathQuery

    config_name = ns.config_name if ns.config_name is not None else config_name
    config_path = ns.config_path if ns.config_path is not None else config_path
    calling_file, calling_module = detect_calling_file_or_module_from_task_function(task_function)
    validate_config_path(config_path)
    search_path = create_automatic_config_search_path(calling_file, calling_module, config_path)
    if ns.config_dir is not None:
        config_dir = os.path.abspath(ns.config_dir)
        if not os.path.isdir(config_dir):
            raise ComposeError(f"--config-dir {ns.config_dir}: the directory {config_dir} does not exist")
        search_path.prepend(provider="command-line", path=f"file://{config_dir}",
                            anchor=SearchPathQuery(provider="schema"))
    return Hydra.create_main_hydra2(task_name=detect_task_name(calling_file, calling_module),
                                    config_search_path=search_path), config_name


def _unloaded_package(path: str) -> Optional[str]:
    """The package a ``pkg://`` search-path entry would import, when it is not loaded already (alignzoo's, Hydra's
    and the plugins' are): reading configs from it would run its code, e.g. a module planted in the current
    directory."""
    if not path.startswith("pkg://"):
        return None
    top = path[len("pkg://"):].replace("/", ".").split(".")[0]
    return top if top and top not in sys.modules else None


def _vet_search_path(hydra: Any, config_name: Optional[str], overrides: list[str]) -> None:
    """Refuse a ``pkg://`` entry that would import a package nobody loaded, before anything reads from it: the main
    config path (``--config-path``), then ``hydra.searchpath`` from the command line or else from the primary config,
    as Hydra picks it (``ConfigLoaderImpl._process_config_searchpath``)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    fix = "use file://<folder> for a folder of configs, or install the package"
    for element in hydra.config_loader.config_search_path.get_path():
        if _unloaded_package(element.path):
            raise ComposeError(f"the config search path entry {element.path} would import the package "
                               f"{_unloaded_package(element.path)}, which runs its code; {fix}")
    given = [o.value() for o in OverridesParser.create().parse_overrides(list(overrides))
             if o.get_key_element() == "hydra.searchpath"]
    searchpath = given[0] if given else None
    if searchpath is None and config_name is not None:
        try:
            loaded = ConfigRepository(hydra.config_loader.config_search_path).load_config(config_name)
            searchpath = OmegaConf.select(loaded.config, "hydra.searchpath") if loaded else None
        except Exception:  # noqa: BLE001 - a primary config that does not load: composing it says why
            searchpath = None
    for path in searchpath if isinstance(searchpath, (list, tuple)) or OmegaConf.is_list(searchpath) else []:
        if isinstance(path, str) and _unloaded_package(path):
            raise ComposeError(f"hydra.searchpath: {path} would import the package {_unloaded_package(path)}, "
                               f"which runs its code; {fix}")


def _compose(hydra: Any, config_name: Optional[str], overrides: list[str], multirun: bool) -> Any:
    from hydra.types import RunMode

    mode = RunMode.MULTIRUN if multirun else RunMode.RUN
    return hydra.compose_config(config_name=config_name, overrides=list(overrides), run_mode=mode,
                                with_log_configuration=False)


def _is_multirun(hydra: Any, config_name: Optional[str], ns: argparse.Namespace) -> tuple[bool, Any]:
    """Whether Hydra will sweep (``-m``, or ``hydra.mode`` in a config), and the run's config when it will not."""
    from hydra.types import RunMode

    if ns.multirun:
        return True, None
    try:
        cfg = _compose(hydra, config_name, ns.overrides, multirun=False)
    except Exception:  # noqa: BLE001 - Hydra sweeps when a config says so, even with sweep overrides (get_mode)
        if hydra.get_mode(config_name=config_name, overrides=list(ns.overrides)) == RunMode.MULTIRUN:
            return True, None
        raise
    return cfg.hydra.mode == RunMode.MULTIRUN, cfg


#: the nodes Hydra itself resolves and acts on (instantiates, configures logging with, exports), by the kind of
#: config: these must resolve; elsewhere a value that does not resolve is kept as written (it cannot become code
#: later: nothing resolves it differently), and a ``_target_`` left as ``${...}`` names nothing allowed
RUN_NODES = ("hydra.callbacks", "hydra.job_logging", "hydra.hydra_logging", "hydra.job.env_set")
SWEEP_NODES = ("hydra.callbacks", "hydra.hydra_logging", "hydra.launcher", "hydra.sweeper")
JOB_NODES = ("hydra.job_logging", "hydra.job.env_set")


def _resolved(cfg: Any, num: int, multirun: bool, required: tuple[str, ...]) -> dict[str, Any]:
    """``cfg`` resolved as Hydra will see it when the job runs (its number, id and output directory filled in
    ``cfg``, a config composed for the check alone)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict, read_write

    with read_write(cfg.hydra.job), open_dict(cfg.hydra.job):
        for key, value in (("num", num), ("id", str(num))):  # what the launcher sets
            if OmegaConf.is_missing(cfg.hydra.job, key):
                cfg.hydra.job[key] = value
    HydraConfig.instance().set_config(cfg)
    where = ("hydra.sweep.dir", "hydra.sweep.subdir") if multirun else ("hydra.run.dir",)
    try:  # what run_job sets
        output_dir = os.path.abspath(os.path.join(*(str(OmegaConf.select(cfg, k)) for k in where)))
        with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = output_dir
    except Exception:  # noqa: BLE001 - left missing: what uses it does not resolve (refused where Hydra needs it)
        pass
    HydraConfig.instance().set_config(cfg)
    return _resolve(cfg, "", required)


def _resolve(node: Any, key: str, required: tuple[str, ...]) -> Any:
    """A config node as a resolved container; a value that does not resolve stays as written, but under the
    ``required`` keys, where it is refused."""
    from omegaconf import ListConfig, OmegaConf

    try:
        return OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
    except Exception:  # noqa: BLE001 - some value below does not resolve: find it, child by child
        pass
    raw = OmegaConf.to_container(node, resolve=False)
    is_list = isinstance(node, ListConfig)
    out: Any = [] if is_list else {}
    for name in (range(len(raw)) if is_list else list(raw)):
        child_key = f"{key}[{name}]" if is_list else (f"{key}.{name}" if key else str(name))
        child = node._get_node(name)
        if OmegaConf.is_config(child) and not child._is_interpolation():
            value = _resolve(child, child_key, required)
        else:
            value = _leaf(node, name, child_key, raw[name], required)
        out.append(value) if is_list else out.__setitem__(name, value)
    return out


def _leaf(parent: Any, name: Any, key: str, raw: Any, required: tuple[str, ...]) -> Any:
    """One value resolved (an interpolation may produce a whole container); as written when it does not resolve,
    unless Hydra needs it."""
    from omegaconf import OmegaConf

    try:
        if OmegaConf.is_missing(parent, name):
            return raw
        value = parent[name]
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except Exception as exc:  # noqa: BLE001
        if any(key.startswith(r) for r in required):
            why = one_line(exc, with_key=False)
            raise ComposeError(f"{key}: cannot be resolved to check what it would run ({why}); fix or remove it") \
                from None
        return raw


def _sweep_jobs(hydra: Any, master: Any) -> tuple[list[list[str]], set[str]]:
    """The overrides of every job the basic sweeper will launch (config params first, then the command line's),
    and the keys that vary between jobs."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    try:
        params = (OmegaConf.to_container(master.hydra.sweeper, resolve=True) or {}).get("params") or {}
    except Exception as exc:  # noqa: BLE001
        raise ComposeError(f"hydra.sweeper.params cannot be resolved to check the sweep: {one_line(exc)}") from None
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += OmegaConf.to_container(master.hydra.overrides.task, resolve=False)
    parser = OverridesParser.create(config_loader=hydra.config_loader)
    try:
        parsed = parser.parse_overrides(arguments)
        swept = {o.get_key_element() for o in parsed if o.is_sweep_override()}
        return BasicSweeper.split_arguments(parsed, None)[0], swept
    except Exception as exc:  # noqa: BLE001 - e.g. interval() sweeps: jobs that cannot be listed cannot be checked
        raise ComposeError(f"the jobs of this sweep cannot be listed to check them: {one_line(exc)}; sweep over "
                           "lists of values (key=a,b,c or range(...))") from None


def planned_configs(ns: argparse.Namespace, *, config_path: Optional[str], config_name: Optional[str],
                    task_function: Callable[..., Any]) -> Iterator[Planned]:
    """The resolved config of the run, or of the sweep and then of each of its jobs; ``ComposeError`` (one line)
    when one cannot be composed or resolved. ``ns`` is Hydra's own argument parser's result."""
    from hydra import version
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    version.setbase("1.3")
    GlobalHydra.instance().clear()
    try:
        hydra, name = _hydra(ns, config_path, config_name, task_function)
        _vet_search_path(hydra, name, ns.overrides)
        multirun, cfg = _is_multirun(hydra, name, ns)
        if not multirun:
            yield Planned(_resolved(cfg, 0, multirun=False, required=RUN_NODES))
            return
        master = _compose(hydra, name, ns.overrides, multirun=True)
        yield Planned(_resolved(master, 0, multirun=True, required=SWEEP_NODES))
        jobs, swept = _sweep_jobs(hydra, master)
        for num, job in enumerate(jobs):
            job_cfg = hydra.config_loader.load_sweep_config(master, list(job))
            label = " ".join(o for o in job if o.split("=", 1)[0] in swept)
            yield Planned(_resolved(job_cfg, num, multirun=True, required=JOB_NODES), job=label)
    except ComposeError:
        raise
    except Exception as exc:  # noqa: BLE001 - composition errors of every kind: fail closed, in one line
        bad_yaml = _yaml_error(exc)
        raise ComposeError(yaml_message(bad_yaml) if bad_yaml else f"cannot compose the config: {one_line(exc)}") \
            from None
    finally:
        HydraConfig.instance().cfg = None
        GlobalHydra.instance().clear()

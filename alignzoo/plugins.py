"""The plugin manager: built-in modules, entry points (group ``alignzoo``), env gating, broken-plugin report.

``load()`` is lazy and idempotent (the CLI calls it; ``import alignzoo`` never does):

1. register the built-in modules like any plugin: every module of a component package (``BUILTIN_PACKAGES``)
   that defines a hook implementation sits next to the code it registers, so a new built-in is one new file;
2. load every entry point of the group ``alignzoo``, each in its own try/except: a plugin that fails to import
   is reported as broken (name, version, error) and the others still load;
3. reject misspelled hooks (pluggy's ``check_pending``): a plugin with a hook implementation that no hook
   specification names is reported as broken, with the closest real hook, before any of its hooks run;
4. call each registration hook once per plugin, again isolating failures: a plugin whose hook raises is
   reported as broken and whatever it registered before failing is removed.

Environment: ``ALIGNZOO_PLUGINS=a,b`` loads only these entry points (empty: built-ins only);
``ALIGNZOO_DISABLE_PLUGINS=a,b`` skips these.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import os
import pkgutil
import re
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from alignzoo import hookspecs
from alignzoo.registry import KINDS, Registries

GROUP = "alignzoo"
BUILTIN = "alignzoo"
#: the packages whose modules may register built-in components, in registration order (then by module name)
BUILTIN_PACKAGES = ("alignzoo.algos", "alignzoo.rewards", "alignzoo.critics", "alignzoo.evaluators",
                    "alignzoo.loggers", "alignzoo.models", "alignzoo.tasks", "alignzoo.pipeline")
#: a module-level hook implementation: ``@hookimpl`` (or ``@alignzoo.hookimpl``) at the start of a line
_HOOKIMPL_DECORATOR = re.compile(r"^@(?:\w+\.)*hookimpl\b", re.MULTILINE)


@dataclass
class PluginInfo:
    name: str
    version: str | None
    module: str | None
    builtin: bool = False
    components: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def broken(self) -> bool:
        return self.error is not None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "module": self.module, "builtin": self.builtin,
                "components": self.components, "broken": self.broken, "error": self.error}


@dataclass
class PluginState:
    manager: pluggy.PluginManager
    registries: Registries
    plugins: list[PluginInfo]
    warnings: list[str] = field(default_factory=list)  # e.g. names in ALIGNZOO_PLUGINS that no plugin has

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.broken]


_STATE: PluginState | None = None


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


def _unknown_plugin_names(only: list[str] | None, disabled: set[str], installed: list[str]) -> list[str]:
    """One warning per name in ``ALIGNZOO_PLUGINS`` / ``ALIGNZOO_DISABLE_PLUGINS`` that no installed plugin has (a
    typo there silently loads, or keeps, a plugin the user did not mean), with the closest installed name."""
    out = []
    for var, names in (("ALIGNZOO_PLUGINS", only or []), ("ALIGNZOO_DISABLE_PLUGINS", sorted(disabled))):
        for name in names:
            if name in installed:
                continue
            close = difflib.get_close_matches(name, installed, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]}? " if close else ""
            listed = ", ".join(installed) or "none"
            out.append(f"{var} names {name!r}, which is not an installed plugin ({hint}installed: {listed}); "
                       f"fix the name or remove it from {var}")
    return out


def _entry_points() -> list[md.EntryPoint]:
    return sorted(md.entry_points(group=GROUP), key=lambda ep: ep.name)


def load(*, reload: bool = False, extra_plugins: list[tuple[str, Any]] | None = None) -> PluginState:
    """Load plugins and fill the registries (and Hydra's ConfigStore). Idempotent unless ``reload``.

    ``extra_plugins``: (name, module-or-object) pairs registered after the built-ins, as if they were entry
    points (used by tests and ``alignzoo.testing``).
    """
    global _STATE
    if _STATE is not None and not reload and not extra_plugins:
        return _STATE
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs.AlignzooSpecs)
    from alignzoo import __version__

    builtin = PluginInfo(BUILTIN, __version__, BUILTIN, builtin=True)
    infos: list[PluginInfo] = [builtin]
    owners: dict[str, PluginInfo] = {}  # pluggy's plugin name -> the plugin it belongs to
    for module_name in builtin_modules():
        _register(pm, owners, builtin, lambda m=module_name: importlib.import_module(m), as_name=module_name)
    only = _env_list("ALIGNZOO_PLUGINS")
    disabled = set(_env_list("ALIGNZOO_DISABLE_PLUGINS") or [])
    entry_points = _entry_points()
    warnings = _unknown_plugin_names(only, disabled, [ep.name for ep in entry_points])
    for ep in entry_points:
        if (only is not None and ep.name not in only) or ep.name in disabled:
            continue
        infos.append(PluginInfo(ep.name, ep.dist.version if ep.dist is not None else None, ep.value))
        _register(pm, owners, infos[-1], ep.load)
    for name, obj in extra_plugins or []:
        infos.append(PluginInfo(name, None, getattr(obj, "__name__", type(obj).__name__)))
        _register(pm, owners, infos[-1], lambda obj=obj: obj)
    _reject_unknown_hooks(pm, owners)
    registries = _fill_registries(pm, owners, infos)
    _STATE = PluginState(pm, registries, infos, warnings)
    return _STATE


def state() -> PluginState:
    """The loaded plugin state (loads on first use)."""
    return load()


def registries() -> Registries:
    return load().registries


def config_searchpath() -> list[str]:
    """Search-path entries contributed by plugins (``alignzoo_config_searchpath``); a failing hook is skipped."""
    out: list[str] = []
    for impl in load().manager.hook.alignzoo_config_searchpath.get_hookimpls():
        try:
            out.extend(str(p) for p in (impl.function() or []))
        except Exception:  # noqa: BLE001 - reported by `alignzoo plugins`; never blocks a run
            continue
    return out


def call_run_end(record: Any) -> list[str]:
    """Fire ``alignzoo_run_end`` on every plugin; returns the errors (never raises)."""
    errors = []
    for impl in load().manager.hook.alignzoo_run_end.get_hookimpls():
        try:
            impl.function(record=record)
        except Exception as exc:  # noqa: BLE001 - a plugin must not fail a finished job
            errors.append(f"{impl.plugin_name}: {_describe(exc)}")
    return errors


def builtin_modules() -> list[str]:
    """The built-in plugin modules: each module (or subpackage) of ``BUILTIN_PACKAGES`` whose source has a
    module-level ``@hookimpl``, package by package, then by name.

    The check reads the source instead of importing, so helper modules (and heavy or optional ones) are never
    imported here; a module whose source cannot be read (a sourceless install) is registered and pluggy decides.
    """
    found = []
    for package in BUILTIN_PACKAGES:
        path = importlib.import_module(package).__path__
        modules = sorted(pkgutil.iter_modules(path, prefix=f"{package}."), key=lambda m: m.name)
        found += [m.name for m in modules if _declares_hooks(m)]
    return found


def _declares_hooks(module: pkgutil.ModuleInfo) -> bool:
    spec = module.module_finder.find_spec(module.name)
    try:
        source = spec.loader.get_source(module.name) if spec is not None and spec.loader is not None else None
    except (ImportError, OSError):
        source = None
    return source is None or bool(_HOOKIMPL_DECORATOR.search(source))


def _register(pm: pluggy.PluginManager, owners: dict[str, PluginInfo], info: PluginInfo, obtain: Any, *,
              as_name: str | None = None) -> None:
    """Import (``obtain()``) and register one plugin module under ``as_name`` (default: the plugin's name); a
    failure marks the plugin broken and never stops the others."""
    name = as_name or info.name
    if name == BUILTIN or name in owners:
        info.error = f"the plugin name {name!r} is already taken; rename the entry point"
        return
    try:
        pm.register(obtain(), name=name)
        owners[name] = info
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
        _add_error(info, f"{name}: {_describe(exc)}" if name != info.name else _describe(exc))


def _fill_registries(pm: pluggy.PluginManager, owners: dict[str, PluginInfo], infos: list[PluginInfo]) -> Registries:
    """Call every registration hook of every plugin that is not broken, kind by kind, plugins in registration
    order (the built-ins first). A hook that raises breaks its plugin, which then loses everything it registered."""
    registries = Registries()
    for kind in KINDS:
        registry = registries[kind]
        for impl in getattr(pm.hook, hookspecs.REGISTER_HOOKS[kind]).get_hookimpls():
            info = owners.get(impl.plugin_name)
            if info is None or info.broken:
                continue

            def register(name, factory, config, *, description="", _provider=info.name):
                return registry.register(name, factory, config, provider=_provider, description=description)

            before = set(registry.names())
            try:
                impl.function(register=register)
            except Exception as exc:  # noqa: BLE001
                info.error = _describe(exc)
            info.components.setdefault(kind, []).extend(set(registry.names()) - before)
    for info in infos:
        if info.broken:  # a plugin that broke in a later kind loses what it registered in earlier kinds too
            for kind, names in info.components.items():
                for name in names:
                    registries[kind].unregister(name)
            info.components = {}
        info.components = {kind: sorted(names) for kind, names in info.components.items() if names}
    return registries


def _reject_unknown_hooks(pm: pluggy.PluginManager, owners: dict[str, PluginInfo]) -> None:
    """pluggy's ``check_pending``, one plugin at a time: a plugin with a hook implementation that no hook
    specification names (``alignzoo_register_algo`` for ``alignzoo_register_algos``) would otherwise be silently
    ignored. It is reported as broken, naming each such hook and the closest real one, and unregistered before
    any of its hooks run, so none of its other hooks half-registers."""
    for _ in range(len(pm.get_plugins())):
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or ""
            unknown = sorted(c.name for c in pm.get_hookcallers(exc.plugin) or [] if not c.has_spec())
            pm.unregister(exc.plugin)
            info = owners[name]
            where = f"{name}: " if name != info.name else ""  # which built-in module, for the built-ins
            _add_error(info, where + _unknown_hooks_message(unknown))


def _add_error(info: PluginInfo, problem: str) -> None:
    info.error = f"{info.error}; {problem}" if info.error else problem


def _unknown_hooks_message(hooks: list[str]) -> str:
    """``unknown hook alignzoo_register_algo (did you mean alignzoo_register_algos?); rename ...``"""
    prefix = f"{hookspecs.PROJECT}_"
    known = sorted(n for n in vars(hookspecs.AlignzooSpecs) if n.startswith(prefix))

    def closest(hook: str) -> str:  # compared without the shared prefix, which makes every alignzoo_* name close
        close = difflib.get_close_matches(hook.removeprefix(prefix), [k.removeprefix(prefix) for k in known], n=1,
                                          cutoff=0.6)
        return f"did you mean {prefix}{close[0]}?" if close else f"the hooks are {', '.join(known)}"

    named = ", ".join(f"{hook} ({closest(hook)})" for hook in hooks)
    if len(hooks) == 1:
        return f"unknown hook {named}; rename the function to a hook of alignzoo.hookspecs"
    return f"unknown hooks {named}; rename the functions to hooks of alignzoo.hookspecs"


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"

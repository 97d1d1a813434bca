"""The plugin manager: built-ins, entry points (group ``alignzoo``), env gating, broken-plugin report.

``load()`` is lazy and idempotent (the CLI calls it; ``import alignzoo`` never does):

1. register ``alignzoo.builtins`` (the built-in components, through the same hooks plugins use);
2. load every entry point of the group ``alignzoo``, each in its own try/except: a plugin that fails to import
   is reported as broken (name, version, error) and the others still load;
3. call each registration hook once per plugin, again isolating failures: a plugin whose hook raises is
   reported as broken and whatever it registered before failing is removed.

Environment: ``ALIGNZOO_PLUGINS=a,b`` loads only these entry points (empty: built-ins only);
``ALIGNZOO_DISABLE_PLUGINS=a,b`` skips these.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import traceback
from dataclasses import dataclass, field
from typing import Any

import pluggy

from alignzoo import hookspecs
from alignzoo.registry import KINDS, Registries

GROUP = "alignzoo"
BUILTIN = "alignzoo"


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

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.broken]


_STATE: PluginState | None = None


def _env_list(var: str) -> list[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return [x.strip() for x in raw.split(",") if x.strip()]


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
    infos: list[PluginInfo] = []

    from alignzoo import builtins

    pm.register(builtins, name=BUILTIN)
    from alignzoo import __version__

    infos.append(PluginInfo(BUILTIN, __version__, builtins.__name__, builtin=True))

    only = _env_list("ALIGNZOO_PLUGINS")
    disabled = set(_env_list("ALIGNZOO_DISABLE_PLUGINS") or [])
    for ep in _entry_points():
        if (only is not None and ep.name not in only) or ep.name in disabled:
            continue
        version = ep.dist.version if ep.dist is not None else None
        info = PluginInfo(ep.name, version, ep.value)
        infos.append(info)
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
            info.error = _describe(exc)
    for name, obj in extra_plugins or []:
        info = PluginInfo(name, None, getattr(obj, "__name__", type(obj).__name__))
        infos.append(info)
        try:
            pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001
            info.error = _describe(exc)

    registries = Registries()
    by_name = {i.name: i for i in infos}
    for kind in KINDS:
        hook = getattr(pm.hook, hookspecs.REGISTER_HOOKS[kind])
        for impl in hook.get_hookimpls():
            info = by_name.get(impl.plugin_name)
            if info is None or info.broken:
                continue
            registry = registries[kind]

            def register(name, factory, config, *, description="", _p=impl.plugin_name, _r=registry):
                return _r.register(name, factory, config, provider=_p, description=description)

            before = set(registry.names())
            try:
                impl.function(register=register)
            except Exception as exc:  # noqa: BLE001
                info.error = _describe(exc)
                for added in set(registry.names()) - before:
                    registry._entries.pop(added, None)
                continue
            added = sorted(set(registry.names()) - before)
            if added:
                info.components.setdefault(kind, []).extend(added)
    # a plugin that broke in a later kind loses what it registered in earlier kinds too
    for info in infos:
        if info.broken:
            for kind, names in info.components.items():
                for n in names:
                    registries[kind]._entries.pop(n, None)
            info.components = {}
    _STATE = PluginState(pm, registries, infos)
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


def _describe(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"

"""Registries: one per component kind, filled by the ``alignzoo_register_*`` hooks.

A registry maps a name to a factory and its config dataclass, and stores the dataclass in Hydra's ConfigStore
(group = the kind) so that ``algo=<name>`` composes without a YAML file.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from alignzoo.errors import DuplicateComponentError, UnknownComponentError

KINDS = ("algo", "task", "model", "reward", "critic", "evaluator", "logger", "labeler")
#: kinds selected as a list (``logger=[console,jsonl]``): each entry lives at ``<kind>.<name>`` in the config
MULTI_KINDS = ("evaluator", "logger")


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    factory: Callable[..., Any]
    config: Any  # a dataclass type, or an instance for presets
    provider: str
    description: str = ""

    @property
    def config_class(self) -> type:
        return self.config if isinstance(self.config, type) else type(self.config)


class Registry:
    """Components of one kind: ``register`` / ``get`` / ``build`` / ``names``."""

    def __init__(self, kind: str, *, store_configs: bool = True):
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._store_configs = store_configs

    def register(self, name: str, factory: Callable[..., Any], config: Any, *, provider: str = "?",
                 description: str = "") -> Entry:
        if not dataclasses.is_dataclass(config):
            raise TypeError(f"{self.kind} {name!r} from {provider}: config must be a dataclass or an instance of one")
        if name in self._entries:
            other = self._entries[name].provider
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by {other!r} and by {provider!r}; "
                f"uninstall one of them or disable it with ALIGNZOO_DISABLE_PLUGINS={provider}")
        if "name" not in {f.name for f in dataclasses.fields(config)}:
            raise TypeError(f"{self.kind} {name!r} from {provider}: its config dataclass needs a `name: str` field")
        entry = Entry(self.kind, name, factory, config, provider, description or _first_line(factory))
        self._entries[name] = entry
        if self._store_configs:
            _store(entry)
        return entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownComponentError(unknown_message(self.kind, name, self.names())) from None

    def unregister(self, name: str) -> None:
        """Forget ``name`` (no error when absent): the plugin manager removes what a broken plugin registered."""
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def build(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        """Build the component a config node names (``node.name``): converts the node to its dataclass and
        calls the factory with it."""
        name = node["name"] if not dataclasses.is_dataclass(node) else node.name
        entry = self.get(name)
        config = node if dataclasses.is_dataclass(node) else to_dataclass(node, entry)
        return entry.factory(config, *args, **kwargs)


def to_dataclass(node: Any, entry: Entry) -> Any:
    """A composed config node as an instance of the entry's dataclass (runs its ``__post_init__``)."""
    from omegaconf import OmegaConf

    if dataclasses.is_dataclass(node):
        return node
    if OmegaConf.is_config(node) and OmegaConf.get_type(node) is entry.config_class:
        return OmegaConf.to_object(node)  # keeps nested dataclasses; raises on missing mandatory values
    data = OmegaConf.to_container(node, resolve=True, throw_on_missing=True) if not isinstance(node, dict) else dict(node)
    cls = entry.config_class
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in data.items() if k in known})


#: where a user finds every name: registered components, and the config groups of YAML files
COMPONENTS_HINT = "(`alignzoo plugins` lists every component.)"
GROUPS_HINT = "(`alignzoo run --help` lists every config group and its options.)"


def unknown_message(kind: str, name: str, known: list[str], *, hint: str = COMPONENTS_HINT) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    did_you_mean = f" Did you mean {kind}={close[0]}?" if close else ""
    listing = ", ".join(known) if known else "(none registered)"
    return f"unknown {kind} {name!r}.{did_you_mean} Known {kind} names: {listing}. {hint}"


#: a config-group override: ``algo=dpo``, ``+logger=[jsonl]``, ``~reward=...``, ``critic/constitution=hh``
_OVERRIDE = re.compile(r"^[+~]{0,2}([A-Za-z_][\w/]*)=(.*)$")


def check_component_overrides(args: list[str], registries: Registries,
                              group_options: Optional[Mapping[str, list[str]]] = None) -> list[str]:
    """Problems with the names chosen on the command line for a component kind or config group, like ``algo=dpx``,
    ``logger=[jsonl,wandbb]`` or ``experiment=zo``, checked before Hydra composes so that a typo gets "did you mean"
    instead of Hydra's stack trace. A name is known when a plugin registered it or when the group has a config file
    of that name on the search path (``group_options``: a plugin's YAML preset such as ``algo=kto_strong``, the
    shipped ``budget`` and ``experiment`` files)."""
    options = dict(group_options or {})
    problems = []
    for arg in args:
        m = _OVERRIDE.match(arg)
        if not m or m.group(1) not in (*KINDS, *options) or "(" in m.group(2) or "$" in m.group(2):
            continue  # other keys, sweep functions and interpolations are left to Hydra
        group, value = m.group(1), m.group(2).strip("[] ")
        registered = registries[group].names() if group in KINDS else []
        known = sorted({*registered, *options.get(group, [])})
        for name in filter(None, (v.strip() for v in value.split(","))):
            if name != "null" and name not in known:
                hint = COMPONENTS_HINT if group in KINDS else GROUPS_HINT
                problems.append(unknown_message(group, name, known, hint=hint))
    return problems


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _store(entry: Entry) -> None:
    from hydra.core.config_store import ConfigStore

    package = f"{entry.kind}.{entry.name}" if entry.kind in MULTI_KINDS else None
    ConfigStore.instance().store(group=entry.kind, name=entry.name, node=entry.config, package=package,
                                 provider=entry.provider)


class Registries(dict):
    """All registries by kind, e.g. ``registries["algo"].get("dpo")``."""

    def __init__(self, *, store_configs: bool = True):
        super().__init__({k: Registry(k, store_configs=store_configs) for k in KINDS})

    def __missing__(self, kind: str) -> Registry:
        raise KeyError(f"no registry of kind {kind!r}; kinds are {', '.join(KINDS)}")

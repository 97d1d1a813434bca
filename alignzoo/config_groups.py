"""The plugins' YAML presets on Hydra's search path, and the options of every config group on it.

Plugins' config folders (hook ``alignzoo_config_searchpath``) join the search path through a Hydra search-path
plugin registered in this process (``install``) rather than a ``hydra.searchpath=`` override on the command line:
Hydra's parser takes the overrides as one run of positionals, so an override the CLI added broke whichever order
of flags it did not expect (``algo=ipo --cfg job``). Hydra builds every search path through these plugins
(``create_config_search_path``), so ``hydra.main``, the config guard, ``--help``'s group listing and ``--info`` all
see the same path, and a user's own ``hydra.searchpath=`` adds to the plugins' folders instead of replacing them.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from alignzoo.conf import CONFIG_NAME, CONFIG_PATH

PROVIDER = "alignzoo plugins"


class PluginConfigFolders(SearchPathPlugin):
    """Appends each loaded plugin's config folders, after alignzoo's own configs and before the registered
    dataclasses (``structured://``), so a preset file can name a registered component in its defaults."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from alignzoo import plugins

        for entry in plugins.config_searchpath():
            search_path.append(provider=PROVIDER, path=entry)


def install() -> None:
    """Register the search-path plugin with Hydra (idempotent: Hydra keeps one entry per class)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(PluginConfigFolders)


def group_options(ns: argparse.Namespace, *, config_path: Optional[str], config_name: Optional[str],
                  task_function: Callable[..., Any]) -> dict[str, list[str]]:
    """Every config group outside Hydra's own (``algo``, ``budget``, ``critic/constitution``, ...) and the config
    names it offers (registered dataclasses and YAML files, the plugins' included), on the search path Hydra will use
    for these flags (``-cp/-cn/-cd``, ``hydra.searchpath``). Empty when the search path is refused or cannot be read:
    the config guard then reports why."""
    from hydra import version
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    from alignzoo.hydra_configs import _hydra, _vet_search_path

    version.setbase("1.3")
    GlobalHydra.instance().clear()
    try:
        hydra, name = _hydra(ns, config_path, config_name, task_function)
        _vet_search_path(hydra, name, ns.overrides)  # reading a pkg:// folder imports its package: vet it first
        # one repository for the whole listing (Hydra's get_group_options builds one, and reloads the primary
        # config, per call): the one get_group_options and composition use, with hydra.searchpath applied
        _, repo = hydra.config_loader._parse_overrides_and_create_caching_repo(name, list(ns.overrides))

        def options(group: str, kind: ObjectType) -> list[str]:
            return repo.get_group_options(group, kind)

        found: dict[str, list[str]] = {}
        pending = [g for g in options("", ObjectType.GROUP) if g != "hydra"]
        while pending:
            group = pending.pop()
            found[group] = sorted(options(group, ObjectType.CONFIG))
            pending += [f"{group}/{sub}" for sub in options(group, ObjectType.GROUP)]
        return {g: names for g, names in found.items() if names}
    except Exception:  # noqa: BLE001 - an unreadable search path or primary config: the guard says why, in one line
        return {}
    finally:
        GlobalHydra.instance().clear()


def options_for(overrides: list[str]) -> dict[str, list[str]]:
    """``group_options`` for a command that takes overrides only and composes alignzoo's primary config
    (``alignzoo label``), with the plugins' folders installed."""
    from hydra._internal.utils import get_args_parser

    install()
    ns = get_args_parser().parse_args([])
    ns.overrides = list(overrides)
    return group_options(ns, config_path=CONFIG_PATH, config_name=CONFIG_NAME, task_function=_compose_only)


def _compose_only(cfg: Any) -> None:
    """A task function in alignzoo's package, so Hydra finds the primary config where ``alignzoo run`` does; only
    composed, never run."""

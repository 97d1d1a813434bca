"""The config files shipped inside the installed package (``alignzoo/conf``), by name relative to that folder.

accelerate reads its launch configs (``accelerate/ddp.yaml``) by path, and a repository-relative ``conf/...`` only
works from a checkout's root; ``alignzoo config path NAME`` prints the installed file's absolute path instead.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from alignzoo.errors import AlignzooError


def conf_root() -> Path:
    """The package's config folder (a real folder: alignzoo is installed unzipped, its YAML files as package data)."""
    return Path(str(resources.files("alignzoo") / "conf"))


def shipped() -> list[str]:
    """Every shipped config file, as ``group/name.yaml`` relative to the config folder, sorted."""
    root = conf_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml") if p.is_file())


def shipped_path(name: str) -> Path:
    """The absolute path of the shipped config file ``name`` (e.g. ``accelerate/ddp.yaml``); only names that
    ``shipped`` lists are answered, so nothing outside the folder can be named."""
    names = shipped()
    wanted = name.removeprefix("conf/")
    if wanted in names:
        return conf_root() / wanted
    close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise AlignzooError(f"no shipped config file {name!r}; {hint}`alignzoo config list` lists them "
                        "(names are relative to the package's conf/ folder, e.g. accelerate/ddp.yaml)")

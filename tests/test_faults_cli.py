"""Catalogue rows for the command line itself: Hydra's flags in combinations Hydra ends in a traceback, flags its
parser refuses, typos of presets and config files, a plugin's config folder that names code, and the other commands
(``alignzoo config``, a closed stdout pipe). ``FAULTS`` go through ``alignzoo run`` over the golden job, which must
come out byte-identical; ``ROWS`` run other commands. The kit is tests/faultkit.py."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from alignzoo import hookimpl, plugins
from faultkit import Env, Fault, _fresh_plugins, _kept_intact, data, golden, run_fault  # noqa: F401 (fixtures)


def _over_golden(*args: str, plugins_env: Optional[str] = None) -> Callable[[Env], list[str]]:
    """The finished golden job in place (it must come out byte-identical), optionally the example plugins loaded,
    then ``args`` after every override of the row: flags where the kit puts nothing but overrides."""
    def setup(env: Env) -> list[str]:
        env.from_golden()
        if plugins_env is not None:
            env.monkeypatch.setenv("ALIGNZOO_PLUGINS", plugins_env)
            plugins.load(reload=True)
        return list(args)
    return setup


def _plugin_folder_with_code(env: Env) -> list[str]:
    """A plugin whose config folder (hook alignzoo_config_searchpath) holds an experiment that names os.system: the
    guard composes with the same search path Hydra will use, so it sees the file."""
    env.from_golden()
    folder = env.tmp / "plugin_conf"
    (folder / "experiment").mkdir(parents=True)
    (folder / "experiment" / "evil.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n    evil:\n      _target_: os.system\n"
        "      command: touch MARKER\n")

    class Folder:
        @hookimpl
        def alignzoo_config_searchpath(self):
            return [f"file://{folder}"]

    env.plugin("folder", Folder())
    return ["+experiment=evil"]


def _nothing_ran(env: Env) -> None:
    assert not Path("MARKER").exists() and not (env.tmp / "MARKER").exists()
    _kept_intact(env)


FAULTS = [
    Fault("cli-multirun-with-cfg", "config", [], 2,
          ("-m/--multirun and --cfg cannot be combined", "keep --cfg job to print the config"),
          setup=_over_golden("-m", "--cfg", "hydra"), check=_kept_intact),
    Fault("cli-multirun-with-info", "config", [], 2,
          ("-m/--multirun and --info cannot be combined", "-m to run the sweep"),
          setup=_over_golden("--info", "-m"), check=_kept_intact),
    Fault("cli-resolve-without-cfg", "config", [], 2,
          ("--resolve only applies to a printed config: add --cfg job",),
          setup=_over_golden("--resolve"), check=_kept_intact),
    Fault("cli-package-without-cfg", "config", [], 2,
          ("--package (-p) only selects the part of the config that --cfg prints", "`alignzoo run --cfg job -p algo`"),
          setup=_over_golden("-p", "algo"), check=_kept_intact),
    Fault("cli-cfg-invalid-choice", "config", [], 2,
          ("argument --cfg/-c: invalid choice: 'jb' (choose from 'job', 'hydra', 'all')",
           "`alignzoo run --help` lists the options"),
          setup=_over_golden("--cfg", "jb"), check=_kept_intact),
    Fault("cli-unknown-flag", "config", [], 2,
          ("unrecognized arguments: --frobnicate", "`--hydra-help` Hydra's flags"),
          setup=_over_golden("--frobnicate"), check=_kept_intact),
    Fault("cli-plugin-preset-typo", "config", [], 2,
          ("unknown algo 'kto_strnog'. Did you mean algo=kto_strong?", "kto, kto_rlvr, kto_strong,"),
          setup=_over_golden("algo=kto_strnog", plugins_env="kto"), check=_kept_intact),
    Fault("cli-experiment-typo", "config", [], 2,
          ("unknown experiment 'zo'. Did you mean experiment=zoo?", "`alignzoo run --help` lists every config group"),
          setup=_over_golden("+experiment=zo", "--cfg", "job"), check=_kept_intact),
    Fault("cli-budget-typo", "config", ["budget=quik"], 2,
          ("unknown budget 'quik'. Did you mean budget=quick? Known budget names: quick, smoke, standard.",),
          setup=_over_golden(), check=_kept_intact),
    Fault("cli-plugin-folder-names-code", "config", [], 2,
          ("hydra.callbacks.evil._target_='os.system'",),
          setup=_plugin_folder_with_code, check=_nothing_ran),
    Fault("cli-cfg-after-overrides-with-both-plugins", "config", [], 0, (),
          setup=_over_golden("--cfg", "job", plugins_env="kto,grpo"), check=_kept_intact),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.id for f in FAULTS])
def test_fault(fault: Fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache):
    run_fault(fault, tmp_path, data, golden, capsys, monkeypatch, stage_cache)


# -- other commands ------------------------------------------------------------------------------------------------

@dataclass
class Row:
    id: str
    args: list[str]  # after `alignzoo`; RUN_DIR stands for the golden job, OUT for a fresh output folder
    exit: int
    says: tuple[str, ...] = ()  # fragments of stderr
    closed_stdout: bool = False  # the reader of stdout is gone before the command writes
    check: Optional[Callable[[Path], None]] = None  # on OUT


def _board_written(out: Path) -> None:
    assert {"leaderboard.json", "runs.csv", "LEADERBOARD.md", "index.html"} <= {p.name for p in out.iterdir()}


ROWS = [
    Row("cli-config-path-typo", ["config", "path", "accelerate/dpp.yaml"], 2,
        ("alignzoo: error: no shipped config file 'accelerate/dpp.yaml'; did you mean accelerate/ddp.yaml?",
         "`alignzoo config list` lists them")),
    Row("cli-config-path-outside-the-package", ["config", "path", "../../pyproject.toml"], 2,
        ("no shipped config file '../../pyproject.toml'", "names are relative to the package's conf/ folder")),
    Row("cli-config-unknown-action", ["config", "show"], 2, ("invalid choice: 'show' (choose from 'path', 'list')",)),
    Row("cli-closed-pipe-plugins-json", ["plugins", "--json"], 141, closed_stdout=True),
    Row("cli-closed-pipe-config-path", ["config", "path", "accelerate/cpu.yaml"], 141, closed_stdout=True),
    Row("cli-closed-pipe-board-build", ["board", "build", "RUN_DIR", "--out", "OUT"], 141, closed_stdout=True,
        check=_board_written),  # the board is finished before the summary line that nobody reads
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_row(row: Row, tmp_path, golden):
    out = tmp_path / "out"
    args = [{"RUN_DIR": str(golden), "OUT": str(out)}.get(a, a) for a in row.args]
    env = {**os.environ, "ALIGNZOO_PLUGINS": ""}
    read_end, write_end = os.pipe()
    if row.closed_stdout:
        os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "alignzoo", *args], cwd=tmp_path, env=env, text=True,
                              stdout=write_end if row.closed_stdout else subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=300)
    finally:
        os.close(write_end)
        if not row.closed_stdout:
            os.close(read_end)
    assert done.returncode == row.exit, done.stderr
    assert "Traceback" not in done.stderr
    if row.closed_stdout:
        assert done.stderr == ""
    for fragment in row.says:
        assert fragment in done.stderr, (fragment, done.stderr)
    if row.exit == 2:  # one error line (argparse's own says `alignzoo config: error:`)
        assert len([ln for ln in done.stderr.splitlines() if ": error:" in ln]) == 1, done.stderr
    if row.check:
        row.check(out)

"""The command line as a newcomer and a plugin author type it: plugin presets run and are listed, Hydra's flags go
anywhere among the overrides with plugins installed, a closed stdout pipe ends quietly, and the shipped config files
(accelerate's launch configs) are found from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignzoo import plugins
from alignzoo.hydra_args import CommandLineError, parse
from alignzoo.record import read_record
from alignzoo.registry import check_component_overrides
from alignzoo.testing import TINY_OVERRIDES, make_preference_dataset

EXAMPLES = "kto,grpo"  # both example plugins (tests/conftest.py loads none by default)


def cli(args: list[str], cwd: Path, *, plugins_env: str = EXAMPLES, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "ALIGNZOO_PLUGINS": plugins_env}
    return subprocess.run([sys.executable, "-m", "alignzoo", *args], cwd=cwd, env=env, text=True, timeout=300,
                          **({"capture_output": True} if "stdout" not in kwargs else {"stderr": subprocess.PIPE}),
                          **kwargs)


def in_process(args: list[str], capsys, monkeypatch) -> tuple[int, str, str]:
    """``alignzoo ARGS`` in this process: (exit code, stdout, stderr)."""
    from alignzoo.cli import main

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    out = capsys.readouterr()
    return exit_.value.code, out.out, out.err


@pytest.fixture
def examples(monkeypatch):
    """Both example plugins loaded, as after `pip install` of each; the default plugin state again afterwards."""
    monkeypatch.setenv("ALIGNZOO_PLUGINS", EXAMPLES)
    plugins.load(reload=True)
    yield
    monkeypatch.setenv("ALIGNZOO_PLUGINS", "")
    plugins.load(reload=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_preference_dataset(tmp_path_factory.mktemp("flags") / "prefs", 120)


# -- plugin presets ---------------------------------------------------------------------------------------------

def test_plugin_preset_runs_from_the_cli(examples, tmp_path, data, stage_cache, capsys, monkeypatch):
    job = tmp_path / "job"
    code, _, err = in_process(["run", *TINY_OVERRIDES, "algo=kto_strong", "task=hf_preferences", f"task.path={data}",
                               f"run.cache_dir={stage_cache}", f"hydra.run.dir={job}"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    record = read_record(job)
    assert record.status == "ok" and record.algo == "kto"
    assert (record.config["algo"]["beta"], record.config["algo"]["lr"]) == (0.3, 1e-3)  # the preset's, not kto's


def test_help_lists_plugin_presets_in_their_group(examples, capsys, monkeypatch):
    code, out, _ = in_process(["run", "--help"], capsys, monkeypatch)
    algos = next(line for line in out.splitlines() if line.startswith("algo: "))[6:].split(", ")
    assert code == 0 and {"kto", "kto_strong", "grpo", "rloo", "dpo"} <= set(algos) and algos == sorted(algos)
    assert "experiment: frontier, frontier_rl, verifiable, zoo" in out


def test_help_without_the_plugin_has_no_preset(capsys, monkeypatch):
    plugins.load(reload=True)
    code, out, _ = in_process(["run", "--help"], capsys, monkeypatch)
    algos = next(line for line in out.splitlines() if line.startswith("algo: "))[6:].split(", ")
    assert code == 0 and "dpo" in algos and "kto_strong" not in algos


def test_a_typo_of_a_preset_suggests_it(examples, capsys, monkeypatch):
    code, _, err = in_process(["run", "algo=kto_strnog", "--cfg", "job"], capsys, monkeypatch)
    assert code == 2 and "unknown algo 'kto_strnog'. Did you mean algo=kto_strong?" in err
    assert ", kto, kto_rlvr, kto_strong, ppo," in err  # the plugin's presets are listed among the names


def test_label_knows_plugin_presets_too(examples, tmp_path, capsys, monkeypatch):
    code, _, err = in_process(["label", "--out", str(tmp_path / "labels"), "algo=kto_strnog"], capsys, monkeypatch)
    assert code == 2 and "unknown algo 'kto_strnog'. Did you mean algo=kto_strong?" in err
    assert not (tmp_path / "labels").exists()


def test_check_component_overrides_knows_config_files_of_every_group():
    registries = plugins.load(reload=True).registries
    options = {"algo": ["dpo", "my_preset"], "experiment": ["frontier", "zoo"], "critic/constitution": ["hh"]}
    args = ["algo=my_preset", "experiment=zoo", "+experiment=zo", "critic/constitution=hx", "seed=1", "train.steps=3",
            "algo=dpo,ipo", "logger=[jsonl,consol]"]
    assert check_component_overrides(args, registries, options) == [
        "unknown experiment 'zo'. Did you mean experiment=zoo? Known experiment names: frontier, zoo. "
        "(`alignzoo run --help` lists every config group and its options.)",
        "unknown critic/constitution 'hx'. Did you mean critic/constitution=hh? Known critic/constitution names: hh. "
        "(`alignzoo run --help` lists every config group and its options.)",
        f"unknown logger 'consol'. Did you mean logger=console? Known logger names: "
        f"{', '.join(registries['logger'].names())}. (`alignzoo plugins` lists every component.)",
    ]
    assert check_component_overrides(["algo=my_preset"], registries)[0].startswith("unknown algo 'my_preset'.")


# -- flags anywhere, with plugins installed ----------------------------------------------------------------------

def test_cfg_job_after_the_overrides_with_both_plugins(tmp_path):
    out = cli(["run", "algo=ipo", "--cfg", "job"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "name: ipo" in out.stdout and "variant: ipo" in out.stdout and "Traceback" not in out.stderr


#: (command line, fragments of what it prints): every order of Hydra's flags and the overrides
PERMUTATIONS = [
    (["algo=ipo", "--cfg", "job"], ["  name: ipo", "  variant: ipo"]),
    (["--cfg", "job", "algo=ipo"], ["  name: ipo"]),
    (["-c", "job", "algo=ipo", "seed=7"], ["  name: ipo", "seed: 7"]),
    (["algo=ipo", "--cfg", "job", "seed=7"], ["  name: ipo", "seed: 7"]),  # overrides on both sides of a flag
    (["algo=kto_strong", "--cfg", "job", "--resolve", "budget=quick"],
     ["  beta: 0.3", "  steps: 50\n  batch_size: 32"]),
    (["--cfg", "job", "algo=ipo"], ["steps: ${budget.steps}"]),  # without --resolve, interpolations stay
    (["algo=ipo", "-p", "algo", "--cfg", "job"], ["name: ipo"]),
    (["--package", "algo", "algo=kto_strong", "--cfg", "job"], ["beta: 0.3"]),
    (["algo=ipo", "--cfg", "hydra"], ["  job:\n    name: alignzoo"]),
    (["--help", "algo=kto_strong"], ["== Config groups ==", "algo: a2c,", "kto_strong"]),
    (["algo=ipo", "--help"], ["== Config groups ==", "  name: ipo"]),
    (["--hydra-help"], ["Hydra (1.3.8)"]),
    (["--version"], ["Hydra 1.3.8"]),
]


@pytest.mark.parametrize("args,says", PERMUTATIONS, ids=[" ".join(a) for a, _ in PERMUTATIONS])
def test_flags_in_any_order(args, says, examples, capsys, monkeypatch):
    code, out, err = in_process(["run", *args], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert "Traceback" not in err
    for fragment in says:
        assert fragment in out, (fragment, out[:3000])
    if "-p" in args or "--package" in args:
        assert "seed:" not in out  # only the package was printed


def test_info_after_overrides_shows_the_plugin_folders(examples, tmp_path):
    out = cli(["run", "algo=kto_strong", "--info", "searchpath"], tmp_path)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "alignzoo_kto.conf" in line)
    assert row.split("|")[1:3] == [" alignzoo plugins ", " pkg://alignzoo_kto.conf "]


def test_a_sweep_with_the_flag_after_the_overrides(examples, tmp_path, data, stage_cache, capsys, monkeypatch):
    sweep = tmp_path / "sweep"
    code, _, err = in_process(["run", *TINY_OVERRIDES, "algo=kto_strong,ipo", "task=hf_preferences",
                               f"task.path={data}", f"run.cache_dir={stage_cache}", f"hydra.sweep.dir={sweep}",
                               "hydra.callbacks.board.enabled=false", "-m"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    records = [read_record(p.parent) for p in sorted(sweep.glob("*/record.json"))]
    assert [(r.status, r.algo, r.config["algo"]["beta"]) for r in records] == [("ok", "kto", 0.3), ("ok", "ipo", 0.1)]


def test_parse_puts_the_cli_overrides_where_hydra_takes_them():
    extra = ("hydra.output_subdir=null",)
    assert parse(["algo=ipo", "--cfg", "job", "seed=1"], extra).args == \
        ["algo=ipo", "seed=1", "hydra.output_subdir=null", "--cfg", "job"]
    assert parse(["--info"], extra).args == ["hydra.output_subdir=null", "--info"]  # not taken as --info's value
    assert parse(["-m", "algo=dpo,ipo"], extra).ns.overrides == ["algo=dpo,ipo", "hydra.output_subdir=null"]
    with pytest.raises(CommandLineError, match=r"^argument --cfg/-c: invalid choice: 'jb'"):
        parse(["--cfg", "jb"])


# -- a closed stdout pipe ------------------------------------------------------------------------------------------

CLOSED_PIPE = [["--help"], ["plugins", "--json"], ["plugins"], ["config", "list"],
               ["run", "--cfg", "job", "algo=kto_strong"], ["run", "algo=ipo", "--help"], ["run", "--info", "all"]]


@pytest.mark.parametrize("args", CLOSED_PIPE, ids=[" ".join(a) for a in CLOSED_PIPE])
def test_a_closed_pipe_ends_quietly(args, tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head -1`) is gone before the command writes anything
    try:
        out = cli(args, tmp_path, stdout=write_end)
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (141, "")


# -- shipped config files ------------------------------------------------------------------------------------------

def test_config_path_prints_the_installed_file_from_anywhere(tmp_path):
    import alignzoo

    out = cli(["config", "path", "accelerate/ddp.yaml"], tmp_path, plugins_env="")
    path = Path(out.stdout.strip())
    assert out.returncode == 0 and path.is_absolute()
    assert path == Path(alignzoo.__file__).parent / "conf" / "accelerate" / "ddp.yaml"
    assert "distributed_type: MULTI_GPU" in path.read_text()


def test_config_list_names_every_shipped_file(capsys, monkeypatch):
    code, out, _ = in_process(["config", "list"], capsys, monkeypatch)
    names = out.split()
    assert code == 0 and names == sorted(names)
    assert {"accelerate/cpu.yaml", "accelerate/ddp.yaml", "budget/quick.yaml", "experiment/zoo.yaml",
            "config.yaml"} <= set(names)

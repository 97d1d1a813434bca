"""Safety: configs cannot make Hydra import arbitrary code, and nothing a user may have downloaded is unpickled."""

import re
from pathlib import Path

import pytest

import alignzoo
from alignzoo import plugins
from alignzoo.cli import check_config_targets, cmd_run
from alignzoo.config import store_schema, untrusted_targets

EVIL = """# @package _global_
hydra:
  callbacks:
    evil:
      _target_: builtins.print
      _args_: ["PWNED-BY-CONFIG"]
"""


@pytest.fixture
def downloaded_experiment(tmp_path):
    """A config folder as someone might download it: an experiment that names an import path."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "evil.yaml").write_text(EVIL)
    return tmp_path


def test_a_downloaded_experiment_naming_an_import_path_is_refused_before_hydra_runs(downloaded_experiment, tmp_path,
                                                                                    capsys):
    code = cmd_run(["--config-dir", str(downloaded_experiment), "+experiment=evil",
                    f"hydra.run.dir={tmp_path / 'job'}"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "hydra.callbacks.evil._target_='builtins.print': configs may not name import paths" in err
    assert "PWNED-BY-CONFIG" not in out + err  # never instantiated
    assert not (tmp_path / "job").exists()  # nothing ran


def test_every_value_of_a_sweep_is_checked(downloaded_experiment, capsys):
    code = cmd_run(["-m", "--config-dir", str(downloaded_experiment), "+experiment=zoo,evil", "--cfg", "job"])
    assert code == 2 and "hydra.callbacks.evil._target_" in capsys.readouterr().err


def test_logging_factories_and_overrides_are_checked_too():
    plugins.load()
    store_schema()
    problems = check_config_targets(["+hydra.job_logging.handlers.x.class=os.system"])
    assert problems and problems[0].startswith("hydra.job_logging.handlers.x.class='os.system'")
    assert check_config_targets(["hydra.callbacks.board._target_=subprocess.call"])


def test_the_shipped_configs_and_launchers_are_trusted():
    plugins.load()
    store_schema()
    assert check_config_targets(["algo=ppo", "seed=1"]) == []  # includes alignzoo's own board callback
    assert check_config_targets(["-m", "algo=dpo,ppo", "seed=0,1", "launcher=joblib"]) == []
    assert check_config_targets(["-m", "+experiment=zoo"]) == []


def test_untrusted_targets_walks_nested_nodes():
    cfg = {
        "hydra": {
            "callbacks": {"ok": {"_target_": "alignzoo.board.callback.BoardCallback"},
                          "bad": {"_target_": "${oc.env:TARGET}"}},
            "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"},
            "job_logging": {"formatters": {"f": {"()": "os.getcwd"}},
                            "handlers": {"console": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
                                         "odd": {"class": "logging.StreamHandler", "stream": "ext://os.environ"}}},
        },
        "algo": {"steps": [{"_target_": "os.system"}]},
    }
    found = untrusted_targets(cfg)
    assert [p.split("=")[0] for p in found] == [
        "hydra.callbacks.bad._target_", "hydra.job_logging.formatters.f.()",
        "hydra.job_logging.handlers.odd.stream", "algo.steps[0]._target_"]


def test_no_code_path_unpickles_files():
    """Weights load from safetensors (or transformers' torch.load(weights_only=True)); no pickle anywhere."""
    root = Path(alignzoo.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        text = path.read_text()
        for pattern in (r"\bimport pickle\b", r"\bpickle\.load", r"\bjoblib\.load", r"\bdill\b", r"cloudpickle",
                        r"weights_only\s*=\s*False", r"torch\.load\((?![^)]*weights_only\s*=\s*True)",
                        r"trust_remote_code\s*=\s*True", r"allow_pickle\s*=\s*True"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(root)}: {pattern}")
    assert offenders == []

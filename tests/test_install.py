"""`pip install .` ships the configs: a non-editable install runs from another directory."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_installed_package_composes_config_from_another_directory(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    # reuse this environment's dependencies (no network, no minutes of installing torch) but not alignzoo itself
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                              "--target", str(tmp_path / "pkg"), str(REPO)], capture_output=True, text=True, env=env,
                             timeout=300)
    assert install.returncode == 0, install.stderr
    (site / "alignzoo_pkg.pth").write_text(str(tmp_path / "pkg") + "\n")
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "import alignzoo, sys; sys.argv=['alignzoo','run','--cfg','job','algo=dpo']; print(alignzoo.__file__); " \
           "from alignzoo.cli import main; main()"
    out = subprocess.run([str(py), "-I", "-c", code], capture_output=True, text=True, cwd=elsewhere, timeout=300,
                         env={**env, "ALIGNZOO_PLUGINS": ""})
    assert out.returncode == 0, out.stderr
    first, rest = out.stdout.split("\n", 1)
    assert first.startswith(str(tmp_path / "pkg")), first  # the installed copy, not the checkout
    assert "name: dpo" in rest and "beta: 0.1" in rest and "variant: sigmoid" in rest
    assert (tmp_path / "pkg" / "alignzoo" / "conf" / "config.yaml").exists()
    assert (tmp_path / "pkg" / "alignzoo" / "conf" / "budget" / "quick.yaml").exists()

"""The example plugins use only alignzoo's public API (docs/plugins.md §4)."""

from pathlib import Path

import pytest

from alignzoo.testing import check_public_imports, private_imports

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = sorted((ROOT / "plugins").glob("*/"))


def test_example_plugins_exist():
    assert {p.name for p in PLUGINS} >= {"alignzoo-kto", "alignzoo-grpo"}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_example_plugin_imports_only_public_api(plugin):
    assert check_public_imports(plugin)


def test_the_checker_catches_private_imports(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("from alignzoo.run import _build_components\nfrom alignzoo.algos.dpo import dpo_loss\n")
    assert len(private_imports(src)) == 3

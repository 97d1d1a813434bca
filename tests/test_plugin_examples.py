"""The example plugins use only alignzoo's public API (docs/plugins.md §4)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {"alignzoo", "alignzoo.errors", "alignzoo.ops", "alignzoo.rollout", "alignzoo.training", "alignzoo.record",
          "alignzoo.registry", "alignzoo.models.base", "alignzoo.testing", "alignzoo.plugins",
          "alignzoo.checkpoint", "alignzoo.distributed", "alignzoo.algos.group"}
PLUGINS = sorted((ROOT / "plugins").glob("*/"))


def private_imports(path: Path) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "alignzoo":
            if node.module not in PUBLIC:
                bad.append(f"{path.name}: from {node.module} import ...")
            bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            if node.module == "alignzoo":  # `from alignzoo import ops` imports a module: it must be public too
                bad += [f"{path.name}: alignzoo.{a.name}" for a in node.names
                        if a.name != "hookimpl" and f"alignzoo.{a.name}" not in PUBLIC]
        elif isinstance(node, ast.Import):
            bad += [f"{path.name}: import {a.name}" for a in node.names
                    if a.name.split(".")[0] == "alignzoo" and a.name not in PUBLIC]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in ("alignzoo", "ro", "ops", "training"):
                bad.append(f"{path.name}: {node.value.id}.{node.attr}")
    return bad


def test_example_plugins_exist():
    assert {p.name for p in PLUGINS} >= {"alignzoo-kto", "alignzoo-grpo"}


@pytest.mark.parametrize("plugin", PLUGINS, ids=lambda p: p.name)
def test_example_plugin_imports_only_public_api(plugin):
    sources = [p for p in plugin.rglob("*.py")]
    assert sources
    bad = [b for src in sources for b in private_imports(src)]
    assert not bad, f"private alignzoo imports: {bad}"


def test_the_checker_catches_private_imports(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("from alignzoo.run import _build_components\nfrom alignzoo.algos.dpo import dpo_loss\n")
    assert len(private_imports(src)) == 3

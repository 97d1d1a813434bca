"""The project's own docs stay true to the code: citations resolve inside the repository, every path and test they
name exists, and the defaults tables of docs/algorithms.md equal the config dataclasses. No training: seconds."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ALGORITHMS = DOCS / "algorithms.md"
ARCHITECTURE = DOCS / "architecture.md"
THIS = Path(__file__).resolve()

#: what a citation of a file outside the repository looks like (the background notes a clone does not have)
OUTSIDE = [
    (re.compile(r"shared/reference|\.\./shared\b|shared/DESIGN|shared folder"), "the project's shared folder"),
    (re.compile(r"\bDESIGN\.md\b"), "DESIGN.md, which is not in the repository"),
    (re.compile(r"\b(?:environment|feasibility|style-anchors|ecosystem|offline-assets|anchors-2026|anchors-features|"
                r"science-audit|architecture-review|vllm-cpu)\.md\b"), "a background note outside the repository"),
    # the repository's own docs are cited with their folder, so a bare name means someone else's file
    (re.compile(r"(?<![\w/])(?:algorithms|architecture)\.md\b"), "a bare algorithms.md/architecture.md (write docs/...)"),
]
SKIP_SUFFIXES = {".png", ".svg", ".jpg", ".ico", ".safetensors", ".gz", ".zip", ".whl"}


def tracked_files() -> list[Path]:
    """The repository's files: ``git ls-files`` in a checkout, else every file outside build and cache folders."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True)
        files = [ROOT / p for p in out.stdout.split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "outputs", ".alignzoo_cache", "__pycache__", "node_modules"}
        files = [p for p in ROOT.rglob("*") if not skip & set(p.relative_to(ROOT).parts)]
    return [p for p in files if p.is_file() and not p.is_symlink() and p.suffix not in SKIP_SUFFIXES]


def text_of(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (hyphens and underscores kept), spaces to
    hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a Markdown file (outside code fences), with GitHub's -1, -2 suffixes for repeats."""
    out: set[str] = set()
    repeats: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            base = slug(m.group(1))
            out.add(f"{base}-{repeats[base]}" if base in repeats else base)
            repeats[base] = repeats.get(base, 0) + 1
    return out


# -- (1) nothing cites a path outside the repository ---------------------------------------------------------------

def test_no_tracked_file_cites_a_path_outside_the_repository():
    found = []
    for path in tracked_files():
        if path.resolve() == THIS:
            continue
        text = text_of(path)
        in_docs = path.parent == DOCS  # docs/*.md link each other by bare name
        for n, line in enumerate((text or "").splitlines(), 1):
            for pattern, what in OUTSIDE[:-1] if in_docs else OUTSIDE:
                if pattern.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{n}: cites {what}: {line.strip()[:100]}")
    assert not found, ("cite docs/algorithms.md#<section> or docs/architecture.md#<section> instead:\n"
                       + "\n".join(found))


# -- (2) every docs/<file>.md#anchor resolves ----------------------------------------------------------------------

CITATION = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")
RELATIVE_LINK = re.compile(r"\]\((?!https?://|mailto:)([^)#\s]*)(?:#([\w-]+))?\)")


def test_every_cited_doc_and_anchor_exists():
    missing = []
    for path in tracked_files():
        text = text_of(path) or ""
        for n, line in enumerate(text.splitlines(), 1):
            for name, anchor in CITATION.findall(line):
                target = DOCS / name
                where = f"{path.relative_to(ROOT)}:{n}"
                if not target.is_file():
                    missing.append(f"{where}: docs/{name} does not exist")
                elif anchor and anchor not in anchors(target.read_text()):
                    missing.append(f"{where}: docs/{name} has no heading with the anchor #{anchor}")
    assert not missing, "fix the citation or add the heading:\n" + "\n".join(missing)


def test_links_inside_docs_resolve():
    missing = []
    for doc in sorted(DOCS.glob("*.md")):
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for target, anchor in RELATIVE_LINK.findall(line):
                file = (doc.parent / target).resolve() if target else doc
                if not file.exists():
                    missing.append(f"docs/{doc.name}:{n}: link to {target} (no such file)")
                elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
                    missing.append(f"docs/{doc.name}:{n}: link to {target}#{anchor} (no such heading)")
    assert not missing, "\n".join(missing)


def test_slug_follows_github():
    assert slug("DPO family") == "dpo-family"
    assert slug("GRPO and RLOO") == "grpo-and-rloo"
    assert slug("Training, normalisation and quality") == "training-normalisation-and-quality"
    assert slug("The `algo=sft` row") == "the-algosft-row"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


# -- (3) every test and path the docs name exists ------------------------------------------------------------------

TOKEN = re.compile(r"`([^`\n]+)`")
TEST_FILE = re.compile(r"^(?:tests|plugins/[\w.-]+/tests)/test_\w+\.py$")
REPO_PATH = re.compile(r"^(?:alignzoo|tests|plugins|bench|conf|docs)/[\w./-]+$")


def _defines(path: Path, name: str) -> bool:
    return re.search(rf"^\s*def {re.escape(name)}\(", path.read_text(), re.M) is not None


@pytest.mark.parametrize("doc", [ALGORITHMS, ARCHITECTURE], ids=lambda p: p.name)
def test_every_test_the_docs_cite_exists_in_the_file_cited_before_it(doc):
    """A test name belongs to the test file cited last before it (``tests/test_x.py``: ``test_a``, ``test_b``)."""
    all_tests = [*ROOT.glob("tests/test_*.py"), *ROOT.glob("plugins/*/tests/test_*.py")]
    current: Path | None = None
    missing = []
    for token in TOKEN.findall(doc.read_text()):
        if TEST_FILE.match(token):
            current = ROOT / token
            if not current.is_file():
                missing.append(f"{token} does not exist")
        elif re.fullmatch(r"test_\w+", token):
            where = [current] if current is not None and current.is_file() else all_tests
            if not any(_defines(f, token) for f in where):
                missing.append(f"{token} is not defined in {current.relative_to(ROOT) if current else 'tests/'}")
    assert not missing, f"docs/{doc.name} cites tests that do not exist:\n" + "\n".join(missing)


@pytest.mark.parametrize("doc", [ALGORITHMS, ARCHITECTURE], ids=lambda p: p.name)
def test_every_repository_path_the_docs_name_exists(doc):
    missing = [t for t in TOKEN.findall(doc.read_text())
               if REPO_PATH.match(t) and not re.search(r"[<>*{}]", t) and not (ROOT / t).exists()]
    assert not missing, f"docs/{doc.name} names paths that do not exist: {missing}"


def test_every_module_is_in_the_architecture_module_map():
    """One line per module: a module added (or deleted) without updating docs/architecture.md fails here."""
    text = ARCHITECTURE.read_text()
    modules = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "alignzoo").rglob("*.py")
                     if p.stat().st_size > 0 and "__pycache__" not in p.parts)
    unlisted = [m for m in modules if f"`{m}`" not in text]
    assert not unlisted, f"add a line for each to the module map of docs/architecture.md: {unlisted}"


def test_every_built_in_algorithm_is_documented():
    from alignzoo import plugins

    names = plugins.load().registries["algo"].names()  # tests load the built-ins only (tests/conftest.py)
    text = ALGORITHMS.read_text()
    undocumented = [n for n in names if f"algo={n}" not in text]
    assert not undocumented, f"docs/algorithms.md never mentions algo=<name> for: {undocumented}"


# -- (4) the defaults tables equal the dataclasses -----------------------------------------------------------------

MARKER = re.compile(r"<!-- defaults( \(some\))?: ([\w.]+):([\w.]+) -->")


@dataclasses.dataclass
class DefaultsTable:
    target: str  # module:object path, e.g. alignzoo.algos.dpo:PRESETS.cdpo
    complete: bool  # every field is listed (except name, Hydra defaults and nested configs)
    rows: dict[str, str]  # field -> the default cell's text
    line: int


def defaults_tables(markdown: str) -> list[DefaultsTable]:
    lines = markdown.splitlines()
    tables = []
    for i, line in enumerate(lines):
        m = MARKER.search(line)
        if not m:
            continue
        rows: dict[str, str] = {}
        for row in lines[i + 3:]:  # skip the header and the separator
            if not row.startswith("|"):
                break
            cells = [c.strip() for c in row.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells[1].strip("`")
        tables.append(DefaultsTable(f"{m.group(2)}:{m.group(3)}", not m.group(1), rows, i + 1))
    return tables


def resolve(target: str):
    module, path = target.split(":")
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    return obj


def default_of(obj, field: str):
    if not isinstance(obj, type):
        return getattr(obj, field)
    f = {f.name: f for f in dataclasses.fields(obj)}[field]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise AssertionError(f"{obj.__name__}.{field} has no default")


def cell_value(text: str):
    """A cell is a Python literal (``0.1``, ``'k1'``, ``None``); anything else (``${budget.x}``) is its text."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def documented_fields(obj) -> set[str]:
    """The fields a complete table lists: all but ``name``, Hydra's ``defaults`` and nested config dataclasses."""
    out = set()
    for f in dataclasses.fields(obj):
        value = default_of(obj, f.name) if (f.default is not dataclasses.MISSING
                                            or f.default_factory is not dataclasses.MISSING) else None
        if f.name not in ("name", "defaults") and not dataclasses.is_dataclass(value):
            out.add(f.name)
    return out


TABLES = defaults_tables(ALGORITHMS.read_text())


def test_the_defaults_tables_are_found():
    assert len(TABLES) >= 15
    assert {"alignzoo.algos.dpo:DPOConfig", "alignzoo.algos.ppo:PPOConfig", "alignzoo.algos.ilql:ILQLConfig",
            "alignzoo_kto:KTOConfig", "alignzoo.algos.group:GroupConfig"} <= {t.target for t in TABLES}
    assert all(t.rows for t in TABLES), [t.target for t in TABLES if not t.rows]


@pytest.mark.parametrize("table", TABLES, ids=lambda t: f"{t.target}@{t.line}")
def test_defaults_table_equals_the_dataclass(table):
    obj = resolve(table.target)
    cls = obj if isinstance(obj, type) else type(obj)
    fields = {f.name for f in dataclasses.fields(cls)}
    wrong = []
    for field, text in table.rows.items():
        if field not in fields:
            wrong.append(f"{field}: not a field of {cls.__name__}")
        elif cell_value(text) != default_of(obj, field):
            wrong.append(f"{field}: the table says {text}, the code says {default_of(obj, field)!r}")
    if table.complete:
        wrong += [f"{f}: missing from the table" for f in sorted(documented_fields(obj if isinstance(obj, type) else cls)
                                                                 - set(table.rows))]
    assert not wrong, f"docs/algorithms.md line {table.line} ({table.target}):\n" + "\n".join(wrong)


def test_a_wrong_default_in_a_table_is_caught():
    (table,) = defaults_tables("<!-- defaults: alignzoo.algos.dpo:DPOConfig -->\n| field | default | meaning |\n"
                               "|---|---|---|\n| `beta` | `0.2` | |\n\nafter\n")
    assert table.rows == {"beta": "0.2"} and table.complete
    assert cell_value(table.rows["beta"]) != default_of(resolve(table.target), "beta")
    assert cell_value("${budget.rm_min_accuracy}") == "${budget.rm_min_accuracy}"

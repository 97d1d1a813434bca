"""Test helpers for alignzoo and for plugin authors (``pytest_plugins = ["alignzoo.testing"]``).

- ``compose_config(overrides)``: the composed Hydra config, exactly as ``alignzoo run`` would build it;
- ``run_tiny(overrides, job_dir)``: run one tiny job in-process and return its ``RunRecord``;
- ``run_algo(name, job_dir, cache_dir)``: one seconds-long job of a named algorithm on the embedded task;
- ``make_preference_dataset(path, n)``: a small local preference dataset (prompt / chosen / rejected);
- ``check_algorithm(name, tmp_path, cache_dir, bad_override=...)``: the conformance suite for an algorithm plugin
  (registered, config composes and validates, a smoke run writes a valid ``ok`` record, the same seed gives the
  same metrics, a bad config gives a clear error);
- ``check_public_imports(folder)``: a plugin's code uses only alignzoo's public API (``PUBLIC_MODULES``);
- fixtures ``preference_dataset`` (a dataset directory), ``tiny_overrides`` (overrides for a seconds-long job),
  ``stage_cache`` (one pipeline cache per test session), ``tiny_policy`` (a small GPT-2 and its tokenizer) and
  ``tiny_task`` (the embedded task at the smoke budget, with its SFT policy and simulated feedback).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

#: a seconds-long job: smoke budget, few steps, small evaluation, metrics to metrics.jsonl only
TINY_RUN = ["budget=smoke", "train.steps=4", "train.batch_size=8", "eval.num_prompts=8", "eval.max_new_tokens=8",
            "logger=[jsonl]"]
#: the smallest useful model=tiny
TINY_MODEL = ["model=tiny", "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.n_positions=64",
              "model.vocab_size=300"]
TINY_OVERRIDES = TINY_MODEL + TINY_RUN

_SUBJECTS = ["the movie", "the plot", "the acting", "the music", "the ending", "the cast", "the story", "the film",
             "the script", "the score", "the pacing", "the dialogue"]
_OPENERS = ["honestly", "overall", "in short", "to be fair", "frankly", "sadly", "luckily", "i think"]
_GOOD = ["great", "wonderful", "lovely", "brilliant", "superb", "moving", "fun", "charming", "fresh", "delightful"]
_BAD = ["awful", "boring", "dull", "terrible", "bad", "weak", "messy", "tedious", "flat", "clumsy"]


def make_preference_dataset(path: str | Path, n: int = 200, *, seed: int = 0) -> Path:
    """Save ``n`` pairs where the chosen completion is positive and the rejected one negative."""
    import datasets

    rng = random.Random(seed)
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n):
        rows["prompt"].append(f"{rng.choice(_OPENERS)} {rng.choice(_SUBJECTS)} was")
        rows["chosen"].append(f" {rng.choice(_GOOD)} and {rng.choice(_GOOD)}")
        rows["rejected"].append(f" {rng.choice(_BAD)} and {rng.choice(_BAD)}")
    path = Path(path)
    datasets.Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def compose_config(overrides: list[str]) -> Any:
    """Compose the config for ``overrides`` as the CLI would (plugins and their YAML search paths loaded first)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from alignzoo import plugins
    from alignzoo.config import store_schema

    plugins.load()
    store_schema()
    extra = []
    searchpath = plugins.config_searchpath()
    if searchpath:
        extra = ["hydra.searchpath=[" + ",".join(searchpath) + "]"]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="alignzoo.conf", version_base="1.3"):
        return compose("config", overrides=list(overrides) + extra)


def run_tiny(overrides: list[str], job_dir: str | Path, *, tiny: bool = True) -> Any:
    """Run one job in-process (tiny settings first, then ``overrides``) and return its ``RunRecord``."""
    from alignzoo.run import run_job

    all_overrides = (TINY_OVERRIDES if tiny else []) + list(overrides)
    return run_job(compose_config(all_overrides), Path(job_dir), overrides=all_overrides)


def build_context(overrides: list[str], job_dir: str | Path) -> Any:
    """A ``RunContext`` with task, policy, reference, reward and evaluators built (no training, no records)."""
    import torch

    from alignzoo import context, plugins
    from alignzoo.config import validate
    from alignzoo.record import RunRecord
    from alignzoo.run import _build_components

    cfg = compose_config(list(overrides))
    state = plugins.load()
    built, problems = validate(cfg, state.registries)
    if problems:
        raise ValueError(f"invalid overrides: {problems}")
    torch.manual_seed(int(cfg.seed))
    ctx = context.build_context(cfg, built, state.registries, job_dir=job_dir, record=RunRecord("test", "running"),
                                device=torch.device("cpu"))
    _build_components(ctx)
    return ctx


#: a seconds-long job on the embedded task (stages at the smoke budget)
SMOKE_TASK = ["task=sentiment", "budget=smoke", "logger=[jsonl]"]


def run_algo(name: str, job_dir: str | Path, cache_dir: str | Path, extra: Optional[list[str]] = None) -> Any:
    """One smoke-budget job of algorithm ``name`` on the embedded task; returns its ``RunRecord``."""
    return run_tiny([*SMOKE_TASK, f"algo={name}", f"run.cache_dir={cache_dir}", *(extra or [])], job_dir, tiny=False)


def check_algorithm(name: str, tmp_path: str | Path, cache_dir: str | Path, *, bad_override: str,
                    bad_message: str, extra: Optional[list[str]] = None) -> Any:
    """The conformance suite for an algorithm plugin; raises AssertionError naming what does not conform.

    ``bad_override`` is an override your config must reject (e.g. ``"algo.beta=-1"``) and ``bad_message`` a
    fragment of the message it must produce. Returns the record of the smoke run.
    """
    from alignzoo import plugins
    from alignzoo.config import validate
    from alignzoo.record import read_record

    tmp_path, extra = Path(tmp_path), list(extra or [])
    state = plugins.load()
    assert name in state.registries["algo"], f"algo {name!r} is not registered: {state.registries['algo'].names()}"
    cfg = compose_config([*SMOKE_TASK, f"algo={name}", *extra])
    _, problems = validate(cfg, state.registries)
    assert not problems, f"algo={name} composes with problems: {problems}"
    first = run_algo(name, tmp_path / "first", cache_dir, extra)
    assert first.status == "ok", f"algo={name} smoke run failed: {first.error}"
    on_disk = read_record(tmp_path / "first")
    assert on_disk.status == "ok" and on_disk.algo == name and "eval/gold_reward" in on_disk.metrics
    again = run_algo(name, tmp_path / "again", cache_dir, extra)
    assert again.metrics == first.metrics, f"algo={name}: the same seed gave different metrics"
    bad = run_algo(name, tmp_path / "bad", cache_dir, [*extra, bad_override])
    assert bad.status == "failed" and bad.error.get("user_error"), f"{bad_override} was not rejected as a user error"
    assert bad_message in bad.error["message"], f"{bad_override}: message {bad.error['message']!r} lacks {bad_message!r}"
    return first


#: the modules a plugin may import (docs/plugins.md, "Public API"); their names that start with ``_`` are private
PUBLIC_MODULES = frozenset({
    "alignzoo", "alignzoo.errors", "alignzoo.ops", "alignzoo.rollout", "alignzoo.training", "alignzoo.record",
    "alignzoo.registry", "alignzoo.models.base", "alignzoo.testing", "alignzoo.plugins", "alignzoo.checkpoint",
    "alignzoo.distributed", "alignzoo.context", "alignzoo.algos.group"})


def private_imports(path: str | Path) -> list[str]:
    """Every use of alignzoo's private API in one Python file: an import of a module outside ``PUBLIC_MODULES``, a
    ``_name`` imported from alignzoo, or ``module._name`` on a name bound to an alignzoo module."""
    import ast

    path = Path(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = {"alignzoo"}  # local names bound to alignzoo modules (``from alignzoo import rollout as ro``)
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "alignzoo":
            if node.module not in PUBLIC_MODULES:
                bad.append(f"{path.name}: from {node.module} import ...")
            bad += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if node.module == "alignzoo" and a.name != "hookimpl" and full not in PUBLIC_MODULES:
                    bad.append(f"{path.name}: {full}")  # `from alignzoo import x` imports a module: public too
                if full in PUBLIC_MODULES:
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "alignzoo":
                    if a.name not in PUBLIC_MODULES:
                        bad.append(f"{path.name}: import {a.name}")
                    modules.add(a.asname or a.name.split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            if isinstance(node.value, ast.Name) and node.value.id in modules:
                bad.append(f"{path.name}: {node.value.id}.{node.attr}")
    return bad


def check_public_imports(root: str | Path) -> list[Path]:
    """Assert that every ``.py`` file under ``root`` (a plugin's package folder, its tests) uses only alignzoo's
    public API, naming each private use; returns the files checked. Call it from your plugin's tests:
    ``check_public_imports(Path(my_plugin.__file__).parent)``."""
    root = Path(root)
    sources = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert sources, f"no Python files under {root}"
    bad = [b for src in sources for b in private_imports(src)]
    assert not bad, f"private alignzoo API used (see docs/plugins.md, Public API): {bad}"
    return sources


try:  # fixtures, when pytest is there
    import pytest

    @pytest.fixture
    def preference_dataset(tmp_path_factory: Any) -> Path:
        return make_preference_dataset(tmp_path_factory.mktemp("prefs") / "data", 120)

    @pytest.fixture
    def tiny_overrides() -> list[str]:
        return list(TINY_OVERRIDES)

    @pytest.fixture(scope="session")
    def stage_cache(tmp_path_factory: Any) -> Path:
        """One pipeline-stage cache per test session (or ``$ALIGNZOO_TEST_STAGE_CACHE``, to share it between
        test sessions): the embedded task's smoke-budget stages are built once."""
        import os

        shared = os.environ.get("ALIGNZOO_TEST_STAGE_CACHE")
        return Path(shared) if shared else tmp_path_factory.mktemp("alignzoo-stage-cache")

    @pytest.fixture
    def tiny_policy() -> Any:
        """A randomly initialised 1-layer GPT-2 with a BPE tokenizer (pad distinct from EOS)."""
        from transformers import GPT2Config, GPT2LMHeadModel

        from alignzoo.models.base import Policy
        from alignzoo.models.tokenizer import train_bpe_tokenizer

        texts = [f"{s} was {g}" for s in _SUBJECTS for g in _GOOD + _BAD]
        tok = train_bpe_tokenizer(texts * 4, 300)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                           resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                                           eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
        return Policy(model.eval(), tok, name="tiny")

    @pytest.fixture
    def tiny_task(stage_cache: Path, tmp_path: Path) -> Any:
        """The embedded task at the smoke budget, prepared: ``.policy`` is its SFT policy, ``.task`` the task
        (``ctx.preference_data()``, ``ctx.ranking_data()``, ``ctx.task.gold``)."""
        return build_context([*SMOKE_TASK, f"run.cache_dir={stage_cache}"], tmp_path)
except ImportError:  # pragma: no cover
    pass

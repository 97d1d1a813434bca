"""The comparisons to label: K completions per prompt, read from a dataset or sampled from the configured policy.

An item is ``{"id", "prompt", "completions": [K texts], "gold": [K floats] | None, "ended": [K bools] | None}``.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any, Optional

from alignzoo.errors import DataError
from alignzoo.label.store import item_id, make_source


def _items(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each comparison its content id (a repeated comparison gets a numbered suffix)."""
    seen: dict[str, int] = {}
    for row in rows:
        base = item_id(row["prompt"], row["completions"])
        seen[base] = seen.get(base, 0) + 1
        row["id"] = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return [{"id": r["id"], **{k: v for k, v in r.items() if k != "id"}} for r in rows]


def _decoded(data: Any, path: str | Path) -> Any:
    """The rows of ``data``; a text cell that is not UTF-8 (the json reader keeps such bytes, and fails only when a
    row is read) stops with the file's line and the fix instead of a traceback."""
    from alignzoo.tasks.hf_preferences import unreadable_line

    rows = iter(data)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except UnicodeDecodeError:
            where = unreadable_line(Path(path).expanduser()) or "a text cell is not valid UTF-8"
            raise DataError(f"--from {path}: {where}") from None
        yield row


def items_from_file(path: str | Path, *, limit: Optional[int] = None, seed: int = 0) -> tuple[list[dict], dict]:
    """Comparisons from a dataset file or directory (anything ``task=hf_preferences`` reads): rows with
    ``prompt`` and ``completions`` (K texts; ``gold`` / ``ended`` lists are kept), or with ``prompt``, ``chosen``
    and ``rejected`` (shown in a random order per row, so the position does not give the answer away)."""
    import datasets

    from alignzoo.tasks.hf_preferences import load_any

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"--from {path}: no such file or directory; give a .jsonl/.json/.csv/.parquet file or a "
                        "saved dataset folder")
    data = load_any(str(p))
    if isinstance(data, datasets.DatasetDict):
        data = data["train"] if "train" in data else next(iter(data.values()))
    cols = set(data.column_names)
    if "prompt" not in cols or not ({"completions"} <= cols or {"chosen", "rejected"} <= cols):
        raise DataError(f"--from {path}: needs a prompt column and either completions (a list of texts) or chosen "
                        f"and rejected; its columns are {sorted(cols)}")
    rng = random.Random(seed)
    rows = []
    for n, ex in enumerate(_decoded(data, path), start=1):
        if limit is not None and len(rows) >= limit:
            break
        if "completions" in cols:
            comps, gold, ended = ex["completions"], ex.get("gold"), ex.get("ended")
        else:
            if not ex["chosen"] and not ex["rejected"]:
                continue  # a tie or both-bad row of a labels file: nothing to show
            comps = [ex["chosen"], ex["rejected"]]
            gold = ([ex["chosen_gold"], ex["rejected_gold"]] if {"chosen_gold", "rejected_gold"} <= cols else None)
            ended = ([ex["chosen_ended"], ex["rejected_ended"]] if {"chosen_ended", "rejected_ended"} <= cols
                     else None)
            if rng.random() < 0.5:
                comps, gold, ended = comps[::-1], gold[::-1] if gold else gold, ended[::-1] if ended else ended
        if not isinstance(ex["prompt"], str) or not isinstance(comps, list) or len(comps) < 2 \
                or not all(isinstance(c, str) for c in comps):
            raise DataError(f"--from {path}: row {n} needs a text prompt and at least two text completions "
                            "(conversational rows are not supported by the labeling page)")
        rows.append({"prompt": ex["prompt"], "completions": list(comps),
                     "gold": [float(g) for g in gold] if gold else None,
                     "ended": [bool(e) for e in ended] if ended else None})
    ks = {len(r["completions"]) for r in rows}
    if len(ks) > 1:
        raise DataError(f"--from {path}: every row must have the same number of completions (got {sorted(ks)})")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else ""
    return _items(rows), make_source("file", path=str(p.resolve()), config_hash=digest)


def items_from_policy(overrides: list[str], *, k: Optional[int], limit: int, seed: Optional[int],
                      out: Path) -> tuple[list[dict], dict]:
    """K completions per prompt sampled from the policy the config names (for ``task=sentiment``: the cached SFT
    stage policy, built like a run would), on the task's feedback prompts (else its training prompts)."""
    import torch
    from omegaconf import OmegaConf

    from alignzoo import plugins
    from alignzoo import rollout as ro
    from alignzoo.config import validate
    from alignzoo.errors import ConfigError
    from alignzoo.record import RunRecord
    from alignzoo.context import build_context
    from alignzoo.run import _quiet_libraries, _seed_everything
    from alignzoo.stages.cache import stage_key
    from alignzoo.testing import compose_config

    cfg = compose_config(list(overrides))
    state = plugins.load()
    built, problems = validate(cfg, state.registries)
    problems = [p for p in problems if not p.startswith("labeler.")]
    if problems:
        raise ConfigError(problems)
    seed = int(cfg.seed) if seed is None else seed
    _seed_everything(seed, built["run"].threads)
    _quiet_libraries()
    ctx = build_context(cfg, built, state.registries, job_dir=out, record=RunRecord("label", "running"), seed=seed,
                        policy=True)
    task, policy = ctx.task, ctx.policy
    prompts = list(ctx.pipeline.feedback_prompts or task.train_prompts(policy))[:limit]
    if not prompts:
        raise DataError(f"task={task.name} gave no prompts to label")
    k = k or built["pipeline"].completions_per_prompt
    max_new = built["pipeline"].max_new_tokens
    repeated = [p for p in prompts for _ in range(k)]
    gen = torch.Generator(device=policy.device).manual_seed(seed)
    texts, ended = [], []
    policy.model.eval()
    encoded = policy.encode_prompts(repeated)
    with ctx.progress(total=len(encoded), desc="sampling completions") as bar:
        for i in range(0, len(encoded), 64):
            r = ro.generate(policy.model, encoded[i:i + 64], eos_id=policy.eos_id, pad_id=policy.pad_id,
                            max_new_tokens=max_new, generator=gen)
            texts += r.texts(policy.tokenizer)
            ended += [bool(e) for e in r.ended.tolist()]
            bar.update(len(encoded[i:i + 64]))
    gold = None
    if hasattr(task, "gold"):
        gold = [float(g) for g in task.gold.score(repeated, texts, ended).tolist()]
    rows = [{"prompt": p, "completions": texts[i * k:(i + 1) * k],
             "gold": gold[i * k:(i + 1) * k] if gold else None, "ended": ended[i * k:(i + 1) * k]}
            for i, p in enumerate(prompts)]
    resolved = OmegaConf.to_container(cfg, resolve=True)
    policy_desc = json.dumps({"name": policy.name, **policy.info}, sort_keys=True, default=str)
    source = make_source("policy", policy=policy_desc, config=" ".join(overrides),
                         config_hash=stage_key("label", {"config": resolved, "k": k, "seed": seed}))
    return _items(rows), source

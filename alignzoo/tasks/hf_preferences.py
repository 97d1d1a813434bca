"""``task=hf_preferences``: any ``datasets`` preference dataset with prompt / chosen / rejected columns.

Loads a local dataset directory (``save_to_disk``), a directory of data files, a single data file
(.json/.jsonl/.csv/.parquet), or a Hub name when online, all through ``datasets``. Columns may be plain text or
conversational (lists of ``{"role", "content"}`` messages), rendered with the tokenizer's chat template.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from alignzoo.errors import DataError

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


@dataclass
class HFPreferencesConfig:
    name: str = "hf_preferences"
    path: str = "???"  # dataset directory, data file, or Hub name
    split: str = "train"  # split to train on
    eval_split: Optional[str] = None  # split for eval prompts; None: hold out eval_fraction of `split`
    eval_fraction: float = 0.1  # share of `split` held out for eval prompts when eval_split is None
    max_examples: Optional[int] = None  # cap on training pairs (None: all)
    prompt_column: str = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    pretrain: bool = True  # a randomly initialised model (model=tiny) is first pretrained on the dataset's text
    sft: Optional[bool] = None  # fine-tune on the chosen responses; None: when the pipeline pretrained the model

    def problems(self) -> list[str]:
        out = []
        if not 0.0 <= self.eval_fraction < 1.0:
            out.append(f"eval_fraction must be in [0, 1) (got {self.eval_fraction})")
        if self.max_examples is not None and self.max_examples < 1:
            out.append(f"max_examples must be >= 1 or null (got {self.max_examples})")
        local = self.path.startswith((".", "/", "~"))
        if local and not Path(self.path).expanduser().exists():
            out.append(f"path {self.path!r} does not exist; give a dataset directory, a data file or a Hub name")
        return out


def load_any(path: str) -> Any:
    """A ``Dataset`` or ``DatasetDict`` from a saved directory, a data file, a data directory or a Hub name."""
    import datasets

    p = Path(path).expanduser()
    try:
        if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists()
                           or (p / "state.json").exists()):
            return datasets.load_from_disk(str(p))
        if p.is_file():
            builder = FILE_BUILDERS.get(p.suffix.lower())
            if builder is None:
                raise DataError(f"dataset file {path!r}: unsupported extension {p.suffix!r}; use one of "
                                f"{', '.join(FILE_BUILDERS)}")
            return datasets.load_dataset(builder, data_files=str(p))
        return datasets.load_dataset(str(p) if p.exists() else path)
    except DataError:
        raise
    except (IndexError, StopIteration):
        # what `datasets` raises when a saved dataset or a data file holds zero rows
        raise DataError(f"dataset {path!r} has no rows; give a non-empty dataset") from None
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; the user needs the path and the cause
        raise DataError(f"could not load dataset {path!r}: {type(exc).__name__}: {str(exc)[:300]}") from None


class HFPreferencesTask:
    def __init__(self, cfg: HFPreferencesConfig, seed: int):
        import datasets

        self.cfg = cfg
        self.name = cfg.name
        loaded = load_any(cfg.path)
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        if cfg.split not in loaded:
            raise DataError(f"dataset {cfg.path!r} has no split {cfg.split!r}; it has {sorted(loaded)} "
                            f"(set task.split=...)")
        train = loaded[cfg.split]
        self._check(train, cfg.split)
        if cfg.eval_split is not None:
            if cfg.eval_split not in loaded:
                raise DataError(f"dataset {cfg.path!r} has no split {cfg.eval_split!r}; it has {sorted(loaded)} "
                                f"(set task.eval_split=... or null)")
            evals = loaded[cfg.eval_split]
            self._check(evals, cfg.eval_split)
        elif cfg.eval_fraction > 0 and len(train) >= 2:
            parts = train.train_test_split(test_size=cfg.eval_fraction, seed=seed)
            train, evals = parts["train"], parts["test"]
        else:
            evals = train
        if cfg.max_examples is not None:
            train = train.select(range(min(cfg.max_examples, len(train))))
        self.train, self.evals = train, evals

    def _check(self, ds: Any, split: str) -> None:
        cols = (self.cfg.prompt_column, self.cfg.chosen_column, self.cfg.rejected_column)
        missing = [c for c in cols if c not in ds.column_names]
        if missing:
            raise DataError(
                f"dataset {self.cfg.path!r} (split {split!r}) has no column {', '.join(map(repr, missing))}; its "
                f"columns are {ds.column_names}. A preference dataset needs prompt, chosen and rejected columns "
                f"(rename them, or set task.prompt_column / task.chosen_column / task.rejected_column)")
        if len(ds) == 0:
            raise DataError(f"dataset {self.cfg.path!r} (split {split!r}) has no rows; give a non-empty dataset")

    # -- text rendering -------------------------------------------------------------------------------------
    def _render(self, tokenizer: Any, prompt: Any, completion: Any) -> tuple[str, str]:
        if isinstance(prompt, str) and isinstance(completion, str):
            return prompt, completion
        if isinstance(prompt, list) and isinstance(completion, list):
            if not getattr(tokenizer, "chat_template", None):
                raise DataError(f"dataset {self.cfg.path!r} is conversational but the model's tokenizer has no chat "
                                "template; use a chat model or a tokenizer with `chat_template`")
            p = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
            if not full.startswith(p):
                raise DataError(f"dataset {self.cfg.path!r}: the chat template renders prompt+completion with a "
                                "different prefix than the prompt alone; cannot split the completion off")
            return p, full[len(p):]
        raise DataError(f"dataset {self.cfg.path!r}: prompt and completions must both be strings or both be lists "
                        f"of messages (got {type(prompt).__name__} and {type(completion).__name__})")

    def preference_data(self, policy: Any) -> Any:
        import datasets

        tok = policy.tokenizer
        rows = {"prompt": [], "chosen": [], "rejected": []}
        c = self.cfg
        for ex in self.train:
            p, ch = self._render(tok, ex[c.prompt_column], ex[c.chosen_column])
            _, rj = self._render(tok, ex[c.prompt_column], ex[c.rejected_column])
            if not ch.strip() or not rj.strip():
                continue  # an empty response carries no preference; skipped rows are counted below
            rows["prompt"].append(p)
            rows["chosen"].append(ch)
            rows["rejected"].append(rj)
        if not rows["prompt"]:
            raise DataError(f"dataset {c.path!r} (split {c.split!r}): every row has an empty chosen or rejected "
                            "response; nothing to train on")
        self.skipped_rows = len(self.train) - len(rows["prompt"])  # RunContext.preference_data notes them
        return datasets.Dataset.from_dict(rows)

    def eval_prompts(self, policy: Any, n: int) -> list[str]:
        seen, out = set(), []
        for ex in self.evals:
            prompt = ex[self.cfg.prompt_column]
            if isinstance(prompt, list):
                prompt = policy.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            if prompt not in seen:
                seen.add(prompt)
                out.append(prompt)
            if len(out) >= n:
                break
        return out

    def train_prompts(self, policy: Any) -> list[str]:
        return list(self.preference_data(policy)["prompt"])

    def tokenizer_texts(self):
        c = self.cfg
        for ex in self.train:
            for col in (c.prompt_column, c.chosen_column, c.rejected_column):
                v = ex[col]
                yield v if isinstance(v, str) else " ".join(m.get("content", "") for m in v)

    # -- the data the pipeline reads (alignzoo.tasks.base) ----------------------------------------------------
    def corpus(self) -> Optional[dict[str, list[str]]]:
        """Pretraining text (``task.pretrain``): each prompt followed by each of its responses from the training
        split; the eval split's (first 200 rows) for the held-out perplexity."""
        c = self.cfg
        if not c.pretrain:
            return None

        def texts(rows: Any) -> list[str]:
            return [_text(ex[c.prompt_column]) + _text(ex[col]) for ex in rows
                    for col in (c.chosen_column, c.rejected_column)]

        return {"train": texts(self.train), "val": texts(self.evals.select(range(min(200, len(self.evals)))))}

    def demonstrations(self) -> Optional[tuple[list[str], list[str]]]:
        """SFT demonstrations (``task.sft``): each text prompt with its chosen response (empty ones left out)."""
        c = self.cfg
        if c.sft is False:
            return None
        prompts, completions = [], []
        for ex in self.train:
            p, ch = ex[c.prompt_column], ex[c.chosen_column]
            if isinstance(p, str) and isinstance(ch, str) and ch.strip():
                prompts.append(p)
                completions.append(ch)
        return prompts, completions

    @property
    def sft_on_given_models(self) -> bool:
        """A given model (model=hf) is fine-tuned on the chosen responses only when asked (task.sft=true)."""
        return self.cfg.sft is True

    def data_key(self) -> dict[str, Any]:
        """The dataset's identity in stage keys: where it came from and a hash of the rows the task uses."""
        from alignzoo.pipeline import texts_key

        c = self.cfg
        cols = [self.train[col] for col in (c.prompt_column, c.chosen_column, c.rejected_column)]
        return {"hf_preferences": {"path": c.path, "split": c.split, "rows": len(self.train),
                                   "content": texts_key(*cols, self.evals[c.prompt_column])}}


def _text(value: Any) -> str:
    """A column value as plain text (messages: their contents joined)."""
    return value if isinstance(value, str) else " ".join(m.get("content", "") for m in value)


def build_hf_preferences(cfg: HFPreferencesConfig, ctx: Any) -> HFPreferencesTask:
    """Preference pairs from any `datasets` dataset (local directory, data files, or Hub name)."""
    return HFPreferencesTask(cfg, ctx.seed)

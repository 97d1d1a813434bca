"""``task=hf_preferences``: any ``datasets`` preference dataset, in every format TRL documents.

Loads a local dataset directory (``save_to_disk``, a ``Dataset`` or a ``DatasetDict``), a directory of data files,
a single data file (.json/.jsonl/.csv/.parquet), or a Hub name when online, all through ``datasets``. Cells may be
plain text or conversational (lists of ``{"role", "content"}`` messages, rendered with the tokenizer's chat
template), with a prompt column or without one: then chosen and rejected are whole conversations (or texts, or
HH-RLHF ``"\n\nHuman: ... \n\nAssistant: ..."`` turns) and the prompt is what they share (``hf_formats``). The
dataset's ``test`` split, when it has one, is the evaluation split unless ``task.eval_split`` names another; else
``task.eval_fraction`` of the training split is held out. A note says the format and the splits.

Every cell of the prompt / chosen / rejected columns is checked when the task is built (both the training split and
the evaluation split), so bad data stops the run before any model is built, with one message that names the
dataset, the split, the row (0-based, as in ``dataset[i]``), the column and the fix: nulls, numbers, lists that are
not chat messages, messages without a role or content or with an unknown role, an empty prompt, a row that mixes
text and messages, a dataset whose rows mix the two, and a row of an implicit-prompt dataset whose chosen and
rejected share no prompt. An empty chosen or rejected response is not an error: the row carries no preference and
is skipped (the run notes how many); every row empty is. A data file that is not UTF-8 (or a .jsonl line that is
not JSON) is reported with its line. Conversational data needs a tokenizer with a chat template, checked wherever
messages are rendered (training pairs, evaluation prompts, held-out pairs): one error names the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from alignzoo.errors import DataError
from alignzoo.hookspecs import hookimpl
from alignzoo.tasks.base import PREFERENCE_COLUMNS
from alignzoo.tasks.hf_formats import BY_NAME, Format, RowMismatch, detect_format, extract_prompt

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
TEXT_SUFFIXES = (".json", ".jsonl", ".csv", ".txt")  # data files that must be UTF-8 text
ROLES = ("system", "user", "assistant", "tool")  # the roles chat templates know
MESSAGES_FIX = 'give a list of messages like [{"role": "user", "content": "..."}]'
DEFAULT_EVAL_SPLIT = "test"  # a dataset's own held-out split, evaluated on unless task.eval_split says otherwise
TEXT_FIX = 'give text (a string) in every row, or chat messages in every row ([{"role": "user", "content": "..."}])'


@dataclass
class HFPreferencesConfig:
    name: str = "hf_preferences"
    path: str = "???"  # dataset directory, data file, or Hub name
    split: str = "train"  # split to train on
    eval_split: Optional[str] = None  # split to evaluate on; None: the `test` split if any, else a hold-out of `split`
    eval_fraction: float = 0.1  # share of `split` held out for evaluation when there is no eval split
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
        where = unreadable_line(p)  # the cause `datasets` names without a line (bad UTF-8, a bad .jsonl line)
        cause = where or f"{type(exc).__name__}: {str(exc)[:300]}"
        raise DataError(f"could not load dataset {path!r}: {cause}") from None


def _text_files(p: Path) -> list[Path]:
    if p.is_file():
        return [p] if p.suffix.lower() in TEXT_SUFFIXES else []
    return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES) if p.is_dir() else []


def unreadable_line(p: Path) -> Optional[str]:
    """Where a failed load went wrong, when it is a line of a data file: the first line that is not UTF-8, or (in a
    .jsonl file) not JSON, with the fix; ``None`` when no line is to blame. Only run after a load failed."""
    for f in _text_files(p):
        with open(f, "rb") as lines:
            for n, raw in enumerate(lines, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    return (f"{f} is not UTF-8 text: line {n} (1-based) has byte 0x{raw[exc.start]:02x} at column "
                            f"{exc.start + 1}; save the file as UTF-8 (Latin-1 text: iconv -f latin1 -t utf-8 "
                            f"{f.name} > fixed{f.suffix})")
                if f.suffix.lower() == ".jsonl" and line.strip():
                    try:
                        json.loads(line)
                    except ValueError as exc:
                        return f"{f}: line {n} (1-based) is not valid JSON ({exc}); fix or delete that line"
    return None


# -- what a cell may hold ----------------------------------------------------------------------------------------
def _message_problem(i: int, m: Any) -> Optional[tuple[str, str]]:
    if not isinstance(m, dict):
        return f"message {i} is {_a(m)}, not a message", MESSAGES_FIX
    role, content = m.get("role"), m.get("content")
    if role is None:
        return f"message {i} has no 'role'", f"give every message a role ({', '.join(ROLES)})"
    if role not in ROLES:
        return f"message {i} has role {_short(role)}", f"use one of the roles {', '.join(ROLES)}"
    if content is None:
        return f"message {i} ({role}) has no 'content'", "give every message its text as 'content'"
    if not isinstance(content, str):
        return f"message {i} ({role}) has content that is {_a(content)}, not text", "give the content as a string"
    return None


def _list_problem(value: list) -> Optional[tuple[str, str]]:
    if value and all(isinstance(v, str) for v in value):
        return "is a list of strings, not text or chat messages", f"join them into one text, or {MESSAGES_FIX}"
    return next((p for i, m in enumerate(value) if (p := _message_problem(i, m))), None)


def _dict_problem(value: dict) -> tuple[str, str]:
    if {"role", "content"} <= set(value):
        return "is a single message, not a list of messages", "wrap it in a list: [{...}]"
    return f"is an object with keys {sorted(value)[:6]}, not text or chat messages", TEXT_FIX


#: what a cell of a type other than text or a list of messages is, and the fix (checked in this order)
CELL_TYPES: tuple[tuple[type | tuple[type, ...], Any], ...] = (
    (bool, lambda v: (f"is a boolean ({v}), not text", TEXT_FIX)),
    ((int, float), lambda v: (f"is a number ({v!r}), not text", TEXT_FIX)),
    ((bytes, bytearray), lambda v: ("is bytes, not text", "decode the column to UTF-8 text")),
    (list, _list_problem),
    (dict, _dict_problem),
)


def cell_problem(value: Any) -> Optional[tuple[str, str]]:
    """What is wrong with one prompt / chosen / rejected cell and the fix, or ``None`` for text or chat messages."""
    if isinstance(value, str):
        return None
    if value is None:
        return ("is null (missing; in a CSV file, an empty cell)",
                'fill it in or drop the row (an empty string "" marks an empty response, which is skipped)')
    for types, problem in CELL_TYPES:
        if isinstance(value, types):
            return problem(value)
    return f"is {_a(value)}, not text", TEXT_FIX


def cell_kind(value: Any) -> Optional[str]:
    """``text`` or ``messages`` for a valid, non-empty cell; ``None`` for an empty one ("" or [])."""
    if isinstance(value, str):
        return "text" if value.strip() else None
    return "messages" if value else None


_KINDS = {str: "text", list: "a list", dict: "an object", type(None): "null", bool: "a boolean", int: "a number",
          float: "a number"}


def _a(value: Any) -> str:
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _short(value: Any, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else text[:n] + "..."


def row_problems(rows: Iterator[tuple[int, dict[str, Any]]], columns: dict[str, str]
                 ) -> Iterator[tuple[int, str, str, str]]:
    """``(row, column, problem, fix)`` for each bad row of ``rows`` (``(index, {column: value})``), first problem
    of a row only. ``columns`` maps each column to its role (prompt, chosen, rejected). A row must not mix text
    and chat messages, nor may the rows: the first non-empty row sets the dataset's format."""
    seen: Optional[tuple[int, str, str]] = None  # (row, column, kind) of the first non-empty cell
    for i, row in rows:
        found = None
        for col, role in columns.items():
            value = row[col]
            bad = cell_problem(value)
            if bad is None and role == "prompt" and cell_kind(value) is None:
                bad = "is empty", "every pair needs a prompt; fill it in or drop the row"
            if bad is not None:
                found = (col, *bad)
                break
            kind = cell_kind(value)
            if kind is None:
                continue  # an empty response: skipped later, whatever the format
            if seen is None:
                seen = (i, col, kind)
            elif kind != seen[2]:
                where = f"column {seen[1]!r}" if seen[0] == i else f"row {seen[0]}"
                found = (col, f"is {_FORMATS[kind]} but {where} is {_FORMATS[seen[2]]}",
                         "use one format for every prompt, chosen and rejected cell of the dataset")
                break
        if found:
            yield (i, *found)


_FORMATS = {"text": "text", "messages": "a list of chat messages"}


class HFPreferencesTask:
    def __init__(self, cfg: HFPreferencesConfig, seed: int, note: Optional[Callable[[str], None]] = None,
                 model: Optional[str] = None):
        import datasets

        self.cfg = cfg
        self.name = cfg.name
        self._note = note or (lambda message: None)
        self._model = model  # the run's model name, for the note on a randomly initialised one
        self.formats: dict[str, Format] = {}  # split -> the format its rows were read as
        loaded = load_any(cfg.path)
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({"train": loaded})
        if cfg.split not in loaded:
            raise DataError(f"dataset {cfg.path!r} has no split {cfg.split!r}; it has {sorted(loaded)} "
                            f"(set task.split=...)")
        train = self._normalized(loaded[cfg.split], cfg.split)
        eval_split = cfg.eval_split
        if eval_split is None and DEFAULT_EVAL_SPLIT in loaded and cfg.split != DEFAULT_EVAL_SPLIT:
            eval_split = DEFAULT_EVAL_SPLIT  # a dataset's own test split is what its users report on
        if eval_split is not None:
            if eval_split not in loaded:
                raise DataError(f"dataset {cfg.path!r} has no split {eval_split!r}; it has {sorted(loaded)} "
                                f"(set task.eval_split=... or null)")
            evals = self._normalized(loaded[eval_split], eval_split)
            self.eval_source = f"split {eval_split!r} ({len(evals)} rows)"
        elif cfg.eval_fraction > 0 and len(train) >= 2:
            parts = train.train_test_split(test_size=cfg.eval_fraction, seed=seed)
            train, evals = parts["train"], parts["test"]
            self.eval_source = (f"{len(evals)} rows held out of split {cfg.split!r} (task.eval_fraction="
                                f"{cfg.eval_fraction}; the dataset has no {DEFAULT_EVAL_SPLIT!r} split)")
        else:
            evals = train
            self.eval_source = f"the training rows themselves (task.eval_fraction={cfg.eval_fraction})"
        if cfg.max_examples is not None:
            train = train.select(range(min(cfg.max_examples, len(train))))
        self.train, self.evals = train, evals
        self.eval_split = eval_split
        fmt = self.formats[cfg.split]
        self._note(f"task={self.name}: {cfg.path} read as {fmt.description}; training on split {cfg.split!r} "
                   f"({len(train)} rows), evaluating on {self.eval_source}")

    # -- reading a split into prompt / chosen / rejected ------------------------------------------------------
    def _normalized(self, ds: Any, split: str) -> Any:
        """The split checked (columns, rows, every cell) and read in its format (``hf_formats.FORMATS``) as a
        dataset with the columns prompt / chosen / rejected; a row that fits no format stops the run here."""
        c = self.cfg
        missing = [col for col in (c.chosen_column, c.rejected_column) if col not in ds.column_names]
        if missing:
            raise DataError(
                f"dataset {c.path!r} (split {split!r}) has no column {', '.join(map(repr, missing))}; its columns "
                f"are {ds.column_names}. A preference dataset needs chosen and rejected columns, and a prompt "
                f"column unless chosen and rejected are whole conversations that share the prompt (rename them, "
                f"or set task.chosen_column / task.rejected_column / task.prompt_column)")
        if len(ds) == 0:
            raise DataError(f"dataset {c.path!r} (split {split!r}) has no rows; give a non-empty dataset")
        has_prompt = c.prompt_column in ds.column_names
        roles = {c.prompt_column: "prompt"} if has_prompt else {}
        roles.update({c.chosen_column: "chosen", c.rejected_column: "rejected"})
        self._check_cells(ds, split, roles)
        if has_prompt:
            self.formats[split] = BY_NAME["explicit"]
            ds = ds.select_columns(list(roles))
            renames = {col: role for col, role in roles.items() if col != role}
            return ds.rename_columns(renames) if renames else ds
        return self._extract_prompts(ds, split)

    def _extract_prompts(self, ds: Any, split: str) -> Any:
        """An implicit-prompt split (no prompt column) as prompt / chosen / rejected, in the format of its first
        non-empty row; every row that does not fit is counted, the first one named."""
        import datasets

        c = self.cfg
        chosen_cells, rejected_cells = ds[c.chosen_column], ds[c.rejected_column]  # each column read once
        first = next((cell for cell in chosen_cells if cell_kind(cell)), "")
        fmt = self.formats[split] = detect_format(None, first)
        out: dict[str, list[Any]] = {col: [] for col in PREFERENCE_COLUMNS}
        bad: list[tuple[int, RowMismatch]] = []
        for i, (chosen, rejected) in enumerate(zip(chosen_cells, rejected_cells)):
            try:
                pair = extract_prompt(fmt, chosen, rejected)
            except RowMismatch as exc:
                bad.append((i, exc))
                continue
            for col, value in zip(PREFERENCE_COLUMNS, pair):
                out[col].append(value)
        if bad:
            i, exc = bad[0]
            also = f" ({len(bad) - 1} more row(s) do not fit either)" if len(bad) > 1 else ""
            raise DataError(f"dataset {c.path!r} (split {split!r}) row {i} (0-based): {exc.problem}; "
                            f"{exc.expected}{also}")
        return datasets.Dataset.from_dict(out)

    def _check_cells(self, ds: Any, split: str, columns: dict[str, str]) -> None:
        """Every prompt / chosen / rejected cell is text or chat messages (see ``row_problems``); else one error
        that names the first bad row and column, and how many rows are bad."""
        c = self.cfg

        def rows() -> Iterator[tuple[int, dict[str, Any]]]:
            start = 0
            first = next(iter(columns))
            for batch in ds.select_columns(list(columns)).iter(batch_size=1000):
                n = len(batch[first])
                for j in range(n):
                    yield start + j, {col: batch[col][j] for col in columns}
                start += n

        problems = row_problems(rows(), columns)
        try:
            found = next(problems, None)
            more = sum(1 for _ in problems)
        except UnicodeDecodeError:  # the json reader keeps bytes that are not UTF-8; reading the cells finds them
            where = unreadable_line(Path(c.path).expanduser()) or "a text cell is not valid UTF-8"
            raise DataError(f"dataset {c.path!r} (split {split!r}): {where}") from None
        if found is None:
            return
        i, col, problem, fix = found
        also = f" ({more} more row(s) have problems)" if more else ""
        raise DataError(f"dataset {c.path!r} (split {split!r}) row {i} (0-based), column {col!r}: {problem}; "
                        f"{fix}{also}")

    # -- text rendering -------------------------------------------------------------------------------------
    def _chat(self, tokenizer: Any, messages: list, *, generation_prompt: bool) -> str:
        """Messages rendered with the tokenizer's chat template: the one check every path (training, the step-0
        evaluation, the held-out pairs) goes through."""
        if not getattr(tokenizer, "chat_template", None):
            raise DataError(f"dataset {self.cfg.path!r} is conversational (chat messages) but the model's tokenizer "
                            "has no chat template; use a chat model whose tokenizer has one (model=hf "
                            "model.path=...), set `chat_template` in the tokenizer's tokenizer_config.json, or "
                            "give the dataset as text")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)

    def _render(self, tokenizer: Any, prompt: Any, completion: Any) -> tuple[str, str]:
        if isinstance(prompt, str) and isinstance(completion, str):
            return prompt, completion
        if isinstance(prompt, list) and isinstance(completion, list):
            p = self._chat(tokenizer, prompt, generation_prompt=True)
            full = self._chat(tokenizer, prompt + completion, generation_prompt=False)
            if not full.startswith(p):
                raise DataError(f"dataset {self.cfg.path!r}: the chat template renders prompt+completion with a "
                                "different prefix than the prompt alone; cannot split the completion off")
            return p, full[len(p):]
        raise DataError(f"dataset {self.cfg.path!r}: prompt and completions must both be strings or both be lists "
                        f"of messages (got {type(prompt).__name__} and {type(completion).__name__})")

    def _pairs(self, rows: Any, tokenizer: Any, limit: Optional[int] = None) -> dict[str, list[str]]:
        """Rendered text pairs of ``rows`` (at most ``limit``); rows with an empty response are left out."""
        out: dict[str, list[str]] = {col: [] for col in PREFERENCE_COLUMNS}
        for ex in rows:
            if limit is not None and len(out["prompt"]) >= limit:
                break
            if cell_kind(ex["chosen"]) is None or cell_kind(ex["rejected"]) is None:
                continue  # an empty response ("" or no messages) carries no preference
            p, ch = self._render(tokenizer, ex["prompt"], ex["chosen"])
            _, rj = self._render(tokenizer, ex["prompt"], ex["rejected"])
            if not ch.strip() or not rj.strip():
                continue
            for col, value in zip(PREFERENCE_COLUMNS, (p, ch, rj)):
                out[col].append(value)
        return out

    def preference_data(self, policy: Any) -> Any:
        import datasets

        rows = self._pairs(self.train, policy.tokenizer)
        if not rows["prompt"]:
            raise DataError(f"dataset {self.cfg.path!r} (split {self.cfg.split!r}): every row has an empty chosen "
                            "or rejected response; nothing to train on")
        self.skipped_rows = len(self.train) - len(rows["prompt"])  # RunContext.preference_data notes them
        return datasets.Dataset.from_dict(rows)

    def heldout_pairs(self, policy: Any, n: int) -> dict[str, list[str]]:
        """Up to ``n`` rendered held-out pairs (the evaluation rows): what ``evaluator=preference_accuracy``
        scores."""
        return self._pairs(self.evals, policy.tokenizer, limit=n)

    def eval_prompts(self, policy: Any, n: int) -> list[str]:
        seen, out = set(), []
        for ex in self.evals:
            prompt = ex["prompt"]
            if cell_kind(prompt) is None:
                continue  # a row with an empty response has no prompt (implicit formats)
            if isinstance(prompt, list):
                prompt = self._chat(policy.tokenizer, prompt, generation_prompt=True)
            if prompt not in seen:
                seen.add(prompt)
                out.append(prompt)
            if len(out) >= n:
                break
        return out

    def train_prompts(self, policy: Any) -> list[str]:
        return list(self.preference_data(policy)["prompt"])

    def tokenizer_texts(self):
        for ex in self.train:
            for col in PREFERENCE_COLUMNS:
                yield _text(ex[col])

    # -- the data the pipeline reads (alignzoo.tasks.base) ----------------------------------------------------
    def corpus(self) -> Optional[dict[str, list[str]]]:
        """Pretraining text (``task.pretrain``): each prompt followed by each of its responses from the training
        split; the eval split's (first 200 rows) for the held-out perplexity. The pipeline asks for it only for a
        randomly initialised model, which the note below warns about."""
        c = self.cfg
        if not c.pretrain:
            return None

        def texts(rows: Any) -> list[str]:
            return [_text(ex["prompt"]) + _text(ex[col]) for ex in rows for col in ("chosen", "rejected")]

        train = texts(self.train)
        model = f"model={self._model}" if self._model else "the model"
        self._note(f"{model} starts from random weights: the pipeline pretrains it on this dataset's own text "
                   f"({len(train)} prompt+response texts of split {c.split!r}), then fine-tunes it on the chosen "
                   "responses, which is a weak start for real data; for results that mean something start from a "
                   "pretrained model (model=hf model.path=<a local model directory>)")
        return {"train": train, "val": texts(self.evals.select(range(min(200, len(self.evals)))))}

    def demonstrations(self) -> Optional[tuple[list[str], list[str]]]:
        """SFT demonstrations (``task.sft``): each text prompt with its chosen response (empty ones left out)."""
        if self.cfg.sft is False:
            return None
        prompts, completions = [], []
        for ex in self.train:
            p, ch = ex["prompt"], ex["chosen"]
            if isinstance(p, str) and isinstance(ch, str) and p.strip() and ch.strip():
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
        cols = [self.train[col] for col in PREFERENCE_COLUMNS]
        return {"hf_preferences": {"path": c.path, "split": c.split, "rows": len(self.train),
                                   "content": texts_key(*cols, self.evals["prompt"])}}


def _text(value: Any) -> str:
    """A column value as plain text (messages: their contents joined)."""
    return value if isinstance(value, str) else " ".join(m.get("content", "") for m in value)


def build_hf_preferences(cfg: HFPreferencesConfig, ctx: Any) -> HFPreferencesTask:
    """Preference pairs from any `datasets` dataset (local directory, data files, or Hub name)."""
    model = getattr(ctx, "built", {}).get("model")
    return HFPreferencesTask(cfg, ctx.seed, note=ctx.note, model=getattr(model, "name", None))


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_tasks(register):
    register("hf_preferences", build_hf_preferences, HFPreferencesConfig)

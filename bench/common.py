"""The shapes every benchmark shares (docs/architecture.md#benchmarks) and the tiny model, tokenizer and data.

- model: a GPT-2 of 2 layers, 4 heads, width 128, vocabulary 4096 (about 1M parameters), random init from a seed,
  dropout off, fp32;
- tokenizer: a word-level tokenizer whose 4094 words are English words of the VADER lexicon (plus EOS and pad),
  so every word is exactly one token, alignzoo and TRL tokenize a text to the same ids, and the VADER reward
  scores real words;
- DPO: batches of 8 pairs, prompt 16 tokens, chosen and rejected 32 tokens + EOS;
- online RL: 16 completions of 64 new tokens per step from 16-token prompts, VADER reward, beta 0.04.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EOS, PAD = "<|endoftext|>", "<|pad|>"


@dataclass(frozen=True)
class Shapes:
    n_layer: int = 2  # transformer blocks
    n_head: int = 4  # attention heads
    n_embd: int = 128  # hidden width
    vocab: int = 4096  # tokenizer words, EOS and pad included
    model_vocab: int = 0  # rows of the model's embedding / LM head; 0: the tokenizer's vocabulary
    n_positions: int = 256  # context length
    dpo_pairs: int = 8  # preference pairs per DPO step
    prompt_len: int = 16  # prompt tokens (DPO and online)
    response_len: int = 32  # DPO completion tokens before EOS
    completions: int = 16  # completions per online step
    new_tokens: int = 64  # tokens sampled per completion
    beta_dpo: float = 0.1  # DPO beta
    beta_online: float = 0.04  # KL coefficient of PPO / A2C / GRPO / RLOO
    lr: float = 5e-4  # learning rate of every implementation (AdamW, constant, clip 1.0)
    dataset_pairs: int = 64  # pairs in the DPO dataset (8 batches per epoch)
    dataset_prompts: int = 64  # prompts in the online dataset


SHAPES = Shapes()


def pin_threads() -> None:
    """One torch thread, fp32: the benchmark's fixed conditions (docs/architecture.md#benchmarks: threads spin
    under contention)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)


def vocabulary(size: int = SHAPES.vocab) -> list[str]:
    """EOS, pad, then ``size - 2`` lowercase words of the VADER lexicon (a seeded sample, sorted)."""
    import vaderSentiment

    path = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    words = sorted({line.split("\t")[0] for line in path.read_text(encoding="utf-8").splitlines()})
    words = [w for w in words if re.fullmatch("[a-z]+", w)]
    if len(words) < size - 2:
        raise ValueError(f"the VADER lexicon has {len(words)} plain words; a vocabulary of {size} needs {size - 2}")
    return [EOS, PAD] + sorted(random.Random(0).sample(words, size - 2))


def build_tokenizer(size: int = SHAPES.vocab) -> Any:
    """A word-level fast tokenizer (whitespace split, no BOS, pad distinct from EOS, left padding)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(vocabulary(size))}
    core = Tokenizer(models.WordLevel(vocab, unk_token=PAD))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, pad_token=PAD, padding_side="left")


def build_model(seed: int = 0, shapes: Shapes = SHAPES, tokenizer: Any = None) -> Any:
    """The tiny GPT-2, randomly initialised from ``seed`` (the same seed gives the same weights everywhere)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    eos = tokenizer.eos_token_id if tokenizer is not None else 0
    pad = tokenizer.pad_token_id if tokenizer is not None else 1
    config = GPT2Config(vocab_size=shapes.model_vocab or shapes.vocab, n_positions=shapes.n_positions, n_embd=shapes.n_embd,
                        n_layer=shapes.n_layer, n_head=shapes.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                        attn_pdrop=0.0, bos_token_id=eos, eos_token_id=eos, pad_token_id=pad,
                        tie_word_embeddings=True)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config).eval()


def _words(rng: random.Random, words: list[str], n: int) -> str:
    return " ".join(rng.choice(words) for _ in range(n))


def preference_rows(shapes: Shapes = SHAPES, *, n: int | None = None, response_len: int | None = None,
                    seed: int = 0) -> dict[str, list[str]]:
    """``n`` pairs of text: prompts of ``prompt_len`` words, completions of ``response_len`` words with a leading
    space (so prompt + completion splits into the same words); EOS is added by each library's own tokenization."""
    words = vocabulary(shapes.vocab)[2:]
    rng = random.Random(seed)
    n = n or shapes.dataset_pairs
    length = response_len or shapes.response_len
    rows: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
    for _ in range(n):
        rows["prompt"].append(_words(rng, words, shapes.prompt_len))
        rows["chosen"].append(" " + _words(rng, words, length))
        rows["rejected"].append(" " + _words(rng, words, length))
    return rows


def prompt_texts(shapes: Shapes = SHAPES, *, n: int | None = None, seed: int = 1) -> list[str]:
    words = vocabulary(shapes.vocab)[2:]
    rng = random.Random(seed)
    return [_words(rng, words, shapes.prompt_len) for _ in range(n or shapes.dataset_prompts)]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class StepClock:
    """Timestamps at the end of every training step; the step time is the interval between two consecutive ends,
    so it covers everything the loop does (data, sampling, forward, backward, optimizer, logging)."""

    def __init__(self, warmup: int, sync: Any = None):
        import time

        self._now, self._cpu = time.perf_counter, time.process_time
        self._sync = sync  # e.g. torch.cuda.synchronize: wait for queued GPU work before reading the clock
        self.warmup = warmup  # intervals dropped at the start
        self.marks: list[float] = []  # wall clock
        self.cpu_marks: list[float] = []  # CPU time of the whole process (all threads)

    def mark(self) -> None:
        if self._sync is not None:
            self._sync()
        self.marks.append(self._now())
        self.cpu_marks.append(self._cpu())

    @staticmethod
    def _intervals(marks: list[float], warmup: int) -> list[float]:
        return [b - a for a, b in zip(marks, marks[1:])][warmup:]

    @property
    def step_times(self) -> list[float]:
        """Wall-clock seconds per timed step."""
        return self._intervals(self.marks, self.warmup)

    @property
    def cpu_step_times(self) -> list[float]:
        """CPU seconds per timed step (what the step costs whatever else holds the cores)."""
        return self._intervals(self.cpu_marks, self.warmup)


def steps_needed(warmup: int, measure: int) -> int:
    """Training steps that yield ``measure`` timed intervals after ``warmup`` dropped ones."""
    return warmup + measure + 1


def rss_mib() -> float:
    """Current resident memory of this process in MiB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)

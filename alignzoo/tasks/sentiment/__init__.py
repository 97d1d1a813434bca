"""``task=sentiment``: the embedded default. The full RLHF recipe offline on a CPU, with a gold reward.

The setup of the DPO paper's IMDb experiment and of Gao et al.'s over-optimization study at toy scale, as data:
a corpus of review-like sentences generated from a seed (``corpus``), a BPE tokenizer trained on it (a cached
stage of its own), demonstrations (prompt, rest of the sentence), feedback / RL / eval prompts (the first 2-4
words of held-out sentences; the train, SFT, feedback, RL, validation and eval sets are disjoint) and the gold reward
(``gold``) the simulated annotators prefer by. The pipeline (``alignzoo.pipeline``) pretrains, fine-tunes and
collects feedback from these. ``corpus`` is the sentence generator, ``gold`` the gold reward.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import II

from alignzoo.hookspecs import hookimpl
from alignzoo.stages.cache import StageResult, run_stage
from alignzoo.tasks.sentiment.gold import GoldConfig, GoldReward, build_gold

__all__ = ["CORPUS_VERSION", "GoldConfig", "GoldReward", "HELD_OUT", "SentimentConfig", "SentimentTask",
           "build_gold", "build_sentiment"]

log = logging.getLogger("alignzoo")
CORPUS_VERSION = 1
HELD_OUT = {"val": 1000, "sft": 2000, "rl": 1000, "eval": 500}


@dataclass
class SentimentConfig:
    name: str = "sentiment"
    corpus_size: int = II("pipeline.corpus_size")  # generated sentences (>= 20,000)
    feedback_prompts: int = II("pipeline.feedback_prompts")  # the feedback split's size (cut before training)
    corpus_seed: int = 0  # seed of the corpus and its splits (the stages' own is pipeline.stage_seed)
    missing_eos_penalty: float = 0.5  # gold penalty for a completion that never ends

    def problems(self) -> list[str]:
        out = []
        if self.corpus_size < 20000:
            out.append(f"corpus_size must be >= 20000 (got {self.corpus_size})")
        if self.feedback_prompts < 0:
            out.append(f"feedback_prompts must be >= 0 (got {self.feedback_prompts})")
        return out


class SentimentTask:
    def __init__(self, cfg: SentimentConfig, ctx: Any):
        from alignzoo.tasks.sentiment.corpus import corpus_vocabulary, generate_corpus, make_prompts, split_corpus

        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        corpus = generate_corpus(cfg.corpus_size, cfg.corpus_seed)
        self.vocabulary = corpus_vocabulary(corpus)
        sizes = {**HELD_OUT, "feedback": cfg.feedback_prompts}
        self.splits = split_corpus(corpus, seed=cfg.corpus_seed, sizes=sizes)
        self.prompts = {name: make_prompts(self.splits[name], seed=cfg.corpus_seed + i)
                        for i, name in enumerate(("sft", "feedback", "rl", "eval", "val"))}  # new splits last
        self.gold = GoldReward(self.vocabulary, cfg.missing_eos_penalty)
        # the split sizes belong in every stage's key: the feedback part's size moves the training remainder, which
        # the tokenizer and the base model learn from
        self._corpus_key = {"corpus": {"size": cfg.corpus_size, "seed": cfg.corpus_seed, "version": CORPUS_VERSION,
                                       "splits": sizes}}

    # -- the data the pipeline reads (alignzoo.tasks.base) ----------------------------------------------------
    def data_key(self) -> dict[str, Any]:
        return self._corpus_key

    def corpus(self) -> dict[str, list[str]]:
        """Text for pretraining: the training remainder, and the validation split for perplexity."""
        return {"train": self.splits["train"], "val": self.splits["val"]}

    def demonstrations(self) -> tuple[list[str], list[str]]:
        """The SFT demonstrations as (prompts, completions) (also used by PPO-ptx)."""
        prompts = self.prompts["sft"]
        return prompts, [s[len(p):] for p, s in zip(prompts, self.splits["sft"])]

    def feedback_prompts(self) -> list[str]:
        return list(self.prompts["feedback"])

    def eval_prompts(self, policy: Any, n: int) -> list[str]:
        return self.prompts["eval"][:n]

    def validation_prompts(self, policy: Any, n: int) -> list[str]:
        """The first words of the held-out ``val`` sentences (never trained on, none of them an eval sentence), drawn
        as the eval prompts are: what checkpoints are picked on, so the eval prompts only report. Disjoint by
        sentence, as every split is: a short prefix such as "the writing" begins sentences of both, and dropping
        those would leave the validation prompts rarer (longer) than the eval prompts they stand in for."""
        return self.prompts["val"][:n]

    def train_prompts(self, policy: Any) -> list[str]:
        return list(self.prompts["rl"])

    # -- its own tokenizer (a cached stage) -------------------------------------------------------------------
    def tokenizer_texts(self):
        return iter(self.splits["train"])

    def tokenizer(self, vocab_size: int):
        from transformers import AutoTokenizer

        from alignzoo.models.tokenizer import train_bpe_tokenizer

        def build(out: Path) -> dict[str, Any]:
            tok = train_bpe_tokenizer(self.splits["train"], vocab_size)
            tok.save_pretrained(out)
            return {"vocab_size": len(tok)}

        stage: StageResult = run_stage(self.ctx.cache_dir, "tokenizer", {**self._corpus_key, "vocab_size": vocab_size},
                                       build, note=self.ctx.note)
        return AutoTokenizer.from_pretrained(stage.path)


def build_sentiment(cfg: SentimentConfig, ctx: Any) -> SentimentTask:
    """The embedded default: generated review sentences, pretrain -> SFT -> simulated feedback, gold reward."""
    return SentimentTask(cfg, ctx)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_tasks(register):
    register("sentiment", build_sentiment, SentimentConfig)


@hookimpl
def alignzoo_register_rewards(register):
    register("gold", build_gold, GoldConfig, description="the sentiment task's gold reward")

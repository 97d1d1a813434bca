"""``task=sentiment``: the embedded default. The full RLHF recipe offline on a CPU, with a gold reward.

The setup of the DPO paper's IMDb experiment and of Gao et al.'s over-optimization study at toy scale: a corpus
of review-like sentences generated from a seed, a BPE tokenizer trained on it, a tiny GPT-2 pretrained on it
(stage ``pretrain``), fine-tuned on demonstrations (``sft``), and simulated annotators whose true preference is
the gold reward (``feedback``). Prompts are the first 2-4 words of held-out sentences; the train, SFT, feedback,
RL and eval sets are disjoint. Every stage is cached by the hash of its config and inputs and shared by all the
seeds of a sweep (stages use ``task.stage_seed``, not the run's seed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from omegaconf import II

from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.stages.cache import StageResult, run_stage

log = logging.getLogger("alignzoo")
CORPUS_VERSION = 1
HELD_OUT = {"val": 1000, "sft": 2000, "rl": 1000, "eval": 500}


@dataclass
class SentimentConfig:
    name: str = "sentiment"
    corpus_size: int = II("budget.corpus_size")  # generated sentences (>= 20,000)
    stage_seed: int = 0  # seed of the corpus, splits and every pipeline stage (shared by the run seeds)
    pretrain_steps: int = II("budget.pretrain_steps")  # base-model pretraining steps (32 rows x 64 tokens each)
    pretrain_lr: float = 2e-3
    sft_steps: int = II("budget.sft_steps")  # supervised fine-tuning steps on demonstrations (batch 32)
    sft_lr: float = 5e-4
    feedback_prompts: int = II("budget.feedback_prompts")  # prompts sent to the simulated annotators
    completions_per_prompt: int = 2  # K completions ranked per prompt (K = 2: pairs)
    max_new_tokens: int = II("budget.eval_max_new_tokens")  # tokens per feedback completion
    annotators: int = 3  # size of the simulated annotator pool
    annotator_temperature: float = 0.1  # Bradley-Terry noise: P(a > b) = sigmoid((gold_a - gold_b) / T)
    annotator_noise: float = 0.0  # log-normal spread of the annotators' temperatures
    annotator_length_bias: float = 0.0  # std of per-annotator length preference (gold units per 10 words)
    flip_rate: float = 0.0  # share of labels each annotator reverses
    overlap_share: float = 0.1  # share of prompts labelled by a second annotator (for agreement)
    missing_eos_penalty: float = 0.5  # gold penalty for a completion that never ends

    def problems(self) -> list[str]:
        out = []
        if self.corpus_size < 20000:
            out.append(f"corpus_size must be >= 20000 (got {self.corpus_size})")
        if self.completions_per_prompt < 2:
            out.append(f"completions_per_prompt must be >= 2 (got {self.completions_per_prompt})")
        if not 0.0 <= self.flip_rate <= 0.5:
            out.append(f"flip_rate must be in [0, 0.5] (got {self.flip_rate})")
        if self.annotators < 1 or self.annotator_temperature < 0:
            out.append("annotators must be >= 1 and annotator_temperature >= 0")
        for k in ("pretrain_steps", "sft_steps", "feedback_prompts", "max_new_tokens"):
            if getattr(self, k) < 0:
                out.append(f"{k} must be >= 0 (got {getattr(self, k)})")
        return out


class GoldReward:
    """The simulated human's true preference: VADER of the finished completion, scaled by its share of real
    words, minus penalties for repeated words and for never ending (``alignzoo.rewards.sentiment.gold_scores``)."""

    def __init__(self, vocabulary: frozenset[str], missing_eos_penalty: float = 0.5):
        self.vocabulary = vocabulary
        self.missing_eos_penalty = missing_eos_penalty

    def score(self, prompts: list[str], completions: list[str], ended: Any) -> torch.Tensor:
        from alignzoo.rewards.sentiment import gold_scores

        ended = [bool(e) for e in (ended.tolist() if hasattr(ended, "tolist") else ended)]
        return torch.tensor(gold_scores(list(completions), ended, self.vocabulary,
                                        missing_eos_penalty=self.missing_eos_penalty), dtype=torch.float32)


class SentimentTask:
    def __init__(self, cfg: SentimentConfig, ctx: Any):
        from alignzoo.tasks.sentiment_corpus import corpus_vocabulary, generate_corpus, make_prompts, split_corpus

        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        corpus = generate_corpus(cfg.corpus_size, cfg.stage_seed)
        self.vocabulary = corpus_vocabulary(corpus)
        sizes = {**HELD_OUT, "feedback": cfg.feedback_prompts}
        self.splits = split_corpus(corpus, seed=cfg.stage_seed, sizes=sizes)
        self.prompts = {name: make_prompts(self.splits[name], seed=cfg.stage_seed + i)
                        for i, name in enumerate(("sft", "feedback", "rl", "eval"))}
        self.gold = GoldReward(self.vocabulary, cfg.missing_eos_penalty)
        # the split sizes belong in every stage's key: the feedback part's size moves the training remainder, which
        # the tokenizer and the base model learn from
        self._corpus_key = {"corpus": {"size": cfg.corpus_size, "seed": cfg.stage_seed, "version": CORPUS_VERSION,
                                       "splits": sizes}}
        self._sft: StageResult | None = None
        self._feedback: StageResult | None = None

    def _stage(self, name: str, config: dict[str, Any], build) -> StageResult:
        return run_stage(self.ctx.cache_dir, name, config, build, note=self.ctx.note)

    # -- tokenizer and policy stages --------------------------------------------------------------------------
    def tokenizer_texts(self):
        return iter(self.splits["train"])

    def tokenizer(self, vocab_size: int):
        from transformers import AutoTokenizer

        from alignzoo.models.tokenizer import train_bpe_tokenizer

        def build(out: Path) -> dict[str, Any]:
            tok = train_bpe_tokenizer(self.splits["train"], vocab_size)
            tok.save_pretrained(out)
            return {"vocab_size": len(tok)}

        self._tok_stage = self._stage("tokenizer", {**self._corpus_key, "vocab_size": vocab_size}, build)
        return AutoTokenizer.from_pretrained(self._tok_stage.path)

    def prepare(self, ctx: Any, policy: Any) -> Any:
        """Pretrain (random-init models only) and SFT; returns the SFT policy, loaded from the cache."""
        from alignzoo.models.base import load_policy

        base_key: dict[str, Any]
        if policy.info.get("init") == "random":
            pre = self._pretrain(policy)
            base_dir, base_key = pre.path, {"pretrain": pre.key}
            ctx.record.notes.append(f"base model: held-out perplexity {pre.meta['val_perplexity']:.1f} "
                                    f"(uniform over the vocabulary: {pre.meta['uniform_perplexity']})")
        else:
            base_dir, base_key = None, {"model": policy.info.get("source", policy.name)}
        base = load_policy(base_dir, device=ctx.device) if base_dir is not None else policy
        self._sft = self._finetune(base, base_key)
        sft = load_policy(self._sft.path, name="sft", device=ctx.device)
        sft.info.update({"sft_stage": self._sft.key, **base_key})
        return sft

    def _pretrain(self, policy: Any) -> StageResult:
        from alignzoo.stages.lm import LMTrainSettings, pack_rows, perplexity, train_lm

        c, tok = self.cfg, policy.tokenizer
        arch = {k: getattr(policy.model.config, k) for k in ("n_layer", "n_head", "n_embd", "n_positions",
                                                               "vocab_size", "resid_pdrop")}
        config = {"tokenizer": self._tok_stage.key, "arch": arch, "steps": c.pretrain_steps, "lr": c.pretrain_lr,
                  "seed": c.stage_seed, "rows": 64}

        def build(out: Path) -> dict[str, Any]:
            from alignzoo.models.base import Policy

            torch.manual_seed(c.stage_seed)  # a fresh init from the stage seed, whatever the run's seed
            model = type(policy.model)(policy.model.config).to(policy.device)
            seqs = tok(self.splits["train"], add_special_tokens=True)["input_ids"]
            rows = pack_rows(seqs, 64, tok.pad_token_id)
            attn = (rows != tok.pad_token_id).long()
            val = [s + [tok.eos_token_id] for s in tok(self.splits["val"], add_special_tokens=True)["input_ids"]]
            with self.ctx.progress(total=c.pretrain_steps, desc="pretrain") as bar:
                settings = LMTrainSettings(c.pretrain_steps, c.pretrain_lr, seed=c.stage_seed,
                                           warmup_steps=min(50, c.pretrain_steps // 5))
                losses = train_lm(model, rows, attn, attn, settings,
                                  progress=lambda s, l: (bar.update(1), bar.set_postfix(loss=f"{l:.3f}")))
            ppl = perplexity(model, val, tok.pad_token_id)
            Policy(model, tok).save(out)
            return {"val_perplexity": round(ppl, 3), "uniform_perplexity": len(tok), "final_loss": losses[-1]
                    if losses else None, "train_rows": int(rows.size(0)), "val_sentences": len(val)}

        return self._stage("pretrain", config, build)

    def _finetune(self, base: Any, base_key: dict[str, Any]) -> StageResult:
        from alignzoo.stages.lm import LMTrainSettings, sft_batch, train_lm

        c = self.cfg
        config = {**base_key, **self._corpus_key, "steps": c.sft_steps, "lr": c.sft_lr, "seed": c.stage_seed}

        def build(out: Path) -> dict[str, Any]:
            prompts = self.prompts["sft"]
            completions = [s[len(p):] for p, s in zip(prompts, self.splits["sft"])]
            ids, loss_mask, attn = sft_batch(base.encode_prompts(prompts), base.encode_completions(completions),
                                             base.pad_id, base.max_length)
            with self.ctx.progress(total=c.sft_steps, desc="sft") as bar:
                losses = train_lm(base.model, ids, loss_mask, attn,
                                  LMTrainSettings(c.sft_steps, c.sft_lr, warmup_steps=0, seed=c.stage_seed),
                                  progress=lambda s, l: bar.update(1))
            base.save(out)
            return {"demonstrations": len(prompts), "final_loss": losses[-1] if losses else None}

        return self._stage("sft", config, build)

    # -- data for algorithms and evaluators -------------------------------------------------------------------
    def feedback(self, policy: Any) -> StageResult:
        """The simulated-annotator dataset for the SFT policy (cached)."""
        from alignzoo.rollout import SAMPLER
        from alignzoo.stages.feedback import annotator_pool, build_feedback

        if self._feedback is not None:
            return self._feedback
        if self._sft is None:
            raise AlignzooError("task=sentiment: feedback needs the SFT stage; call prepare() first")
        labeler = self.ctx.built["labeler"]
        if labeler.name == "critic":  # RLAIF: the critic's AI labels replace the annotators
            from alignzoo.stages.ai_feedback import critic_feedback

            result = self._feedback = critic_feedback(self, policy)
            return result
        if labeler.name == "human":  # judgments collected with `alignzoo label`
            from alignzoo.stages.human_feedback import human_feedback

            result = self._feedback = human_feedback(self, policy, labeler.path)
            return result
        c = self.cfg
        pool = annotator_pool(c.annotators, temperature=c.annotator_temperature, flip_rate=c.flip_rate,
                              noise=c.annotator_noise, length_bias=c.annotator_length_bias, seed=c.stage_seed)
        config = {"sft": self._sft.key, **self._corpus_key, "prompts": c.feedback_prompts,
                  "k": c.completions_per_prompt, "max_new_tokens": c.max_new_tokens,
                  "annotators": [a.__dict__ for a in pool], "overlap": c.overlap_share,
                  "missing_eos_penalty": c.missing_eos_penalty, "seed": c.stage_seed, "sampler": SAMPLER}

        def build(out: Path) -> dict[str, Any]:
            total = len(self.prompts["feedback"]) * c.completions_per_prompt
            with self.ctx.progress(total=total, desc="feedback") as bar:
                return build_feedback(out, policy, self.prompts["feedback"],
                                      gold_fn=lambda t, e: self.gold.score([], t, e).tolist(),
                                      k=c.completions_per_prompt, max_new_tokens=c.max_new_tokens, pool=pool,
                                      overlap_share=c.overlap_share, seed=c.stage_seed,
                                      progress=lambda n: bar.update(n - bar.n))

        result = self._feedback = self._stage("feedback", config, build)
        self.ctx.record.notes.append(
            f"feedback: {result.meta['pairs']} pairs, agreement with gold {result.meta['agreement_with_gold']:.3f}, "
            f"inter-annotator agreement {result.meta['inter_annotator_agreement']:.3f}")
        return result

    @cached_property
    def _feedback_data(self) -> Any:
        import datasets

        return datasets.load_from_disk(str(self.feedback(self.ctx.policy).path / "data"))

    def preference_data(self, policy: Any) -> Any:
        return self._feedback_data.select_columns(["prompt", "chosen", "rejected"])

    def ranking_data(self, policy: Any) -> Any:
        """The full K-wise rankings: prompt, completions, gold, ended, ranking (best first)."""
        return self._feedback_data

    def demonstrations(self) -> tuple[list[str], list[str]]:
        """The SFT demonstrations as (prompts, completions) (used by PPO-ptx)."""
        prompts = self.prompts["sft"]
        return prompts, [s[len(p):] for p, s in zip(prompts, self.splits["sft"])]

    def eval_prompts(self, policy: Any, n: int) -> list[str]:
        return self.prompts["eval"][:n]

    def train_prompts(self, policy: Any) -> list[str]:
        return list(self.prompts["rl"])


def build_sentiment(cfg: SentimentConfig, ctx: Any) -> SentimentTask:
    """The embedded default: generated review sentences, pretrain -> SFT -> simulated feedback, gold reward."""
    return SentimentTask(cfg, ctx)


@dataclass
class GoldConfig:
    name: str = "gold"
    missing_eos_penalty: float = 0.5  # subtracted when a completion never ends


def build_gold(cfg: GoldConfig, ctx: Any) -> GoldReward:
    """The gold reward of a task that has one (task=sentiment), used as a reward (an oracle ablation)."""
    vocab = getattr(ctx.task, "vocabulary", None)
    if vocab is None:
        raise AlignzooError(f"reward=gold needs a task with a gold reward (task=sentiment); task={ctx.task.name} "
                            "has none")
    return GoldReward(vocab, cfg.missing_eos_penalty)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_tasks(register):
    register("sentiment", build_sentiment, SentimentConfig)


@hookimpl
def alignzoo_register_rewards(register):
    register("gold", build_gold, GoldConfig, description="the sentiment task's gold reward")

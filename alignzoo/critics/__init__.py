"""Constitutional critics (``critic=<name>``): judge responses against the principles of a constitution.

``build_critic(ctx)`` builds the run's critic (``critic=rule`` with the sentiment constitution when none is
selected and a default is allowed, as ``algo=rlaif`` does).
"""

from __future__ import annotations

from typing import Any

from alignzoo.errors import AlignzooError

DEFAULT_CRITIC = "rule"


def build_critic(ctx: Any, *, default: bool = False) -> Any:
    """The run's critic, built once per run and kept on the context (``ctx.critic``)."""
    if ctx.critic is not None:
        return ctx.critic
    conf = ctx.built.get("critic")
    if conf is None:
        if not default:
            raise AlignzooError("labeler=critic needs a critic: add critic=rule (rule-based scorers) or "
                                "critic=lm_judge (an LM judge)")
        from omegaconf import OmegaConf

        entry = ctx.registries["critic"].get(DEFAULT_CRITIC)
        conf = OmegaConf.to_object(OmegaConf.structured(entry.config))
        ctx.built["critic"] = conf
    critic = ctx.registries["critic"].build(conf, ctx)
    ctx.set_critic(critic)  # the record shows the critic that labelled, not `null`
    return critic

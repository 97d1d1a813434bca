"""Override keys that moved when the pipeline became its own part: the stage sizes left ``budget`` (now compute
only) for ``pipeline``, the feedback settings left the sentiment task for ``pipeline`` and the simulated labeler.
An old key gets one line naming its new place, instead of Hydra's "Key not in BudgetConfig"."""

from __future__ import annotations

#: old key -> new key
MOVED = {
    **{f"budget.{k}": f"pipeline.{k}" for k in ("corpus_size", "pretrain_steps", "sft_steps", "feedback_prompts",
                                                 "model_width", "model_layers", "vocab_size")},
    **{f"task.{k}": f"pipeline.{k}" for k in ("pretrain_steps", "pretrain_lr", "sft_steps", "sft_lr",
                                               "completions_per_prompt", "max_new_tokens", "stage_seed")},
    **{f"task.{k}": f"labeler.{k}" for k in ("annotators", "annotator_temperature", "annotator_noise",
                                              "annotator_length_bias", "flip_rate", "overlap_share")},
}


def moved_key_problems(args: list[str]) -> list[str]:
    """One problem per override (``key=value``, ``+key=value``) whose key moved, with the override to write."""
    out = []
    for arg in args:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key in MOVED:
            out.append(f"{key} moved to {MOVED[key]} (budget is compute only; the pipeline's stages and labelers "
                       f"have their own sections): write {MOVED[key]}={value}")
    return out

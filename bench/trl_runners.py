"""TRL 1.16 on the same model, tokenizer, data and optimizer settings (``pip install 'alignzoo[bench]'``).

Quirks handled here (docs/architecture.md#benchmarks): TRL 1.16 has no PPOTrainer, so PPO and A2C are compared
with GRPOTrainer and RLOOTrainer on equal work (16 completions of 64 tokens per step, one optimizer step per
batch, beta 0.04, the VADER reward); these trainers rebuild the reference model from ``_name_or_path``, so they get
a saved model directory; DPOTrainer gets an explicit reference model and runs with bf16 and gradient
checkpointing off (fp32, as everything else). TRL is imported only here: importing its trainers costs 11-12 s.
Every trainer logs at TRL's default interval; the clock marks the end of every optimizer step (a callback).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.common import SHAPES, Shapes, StepClock, build_model, build_tokenizer, preference_rows, prompt_texts


def _clock_callback(clock: StepClock) -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.mark()

    return Clock()


def _common_args(steps: int, out: str, shapes: Shapes, device: str = "cpu") -> dict[str, Any]:
    """What every TRL trainer shares with alignzoo and the bare loops: AdamW at a constant LR with no warm-up or
    weight decay, clipping at 1.0, fp32 on the CPU (bf16 on a GPU), no checkpoints, no reporting, no progress bar."""
    gpu = device != "cpu"
    return dict(output_dir=out, max_steps=steps, learning_rate=shapes.lr, lr_scheduler_type="constant",
                warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0, bf16=gpu, fp16=False,
                gradient_checkpointing=False, use_cpu=not gpu, report_to=[], save_strategy="no", disable_tqdm=True,
                dataloader_num_workers=0, seed=0, gradient_accumulation_steps=1)


def dpo_trainer(steps: int, shapes: Shapes = SHAPES, *, batch: int | None = None, response_len: int | None = None,
                policy: Any = None, reference: Any = None, callbacks: list[Any] | None = None,
                rows: dict[str, list[str]] | None = None, device: str = "cpu") -> Any:
    """A DPOTrainer on the benchmark's pairs (sigmoid loss, beta 0.1) with an explicit reference model."""
    import datasets
    from trl import DPOConfig, DPOTrainer

    batch = batch or shapes.dpo_pairs
    tokenizer = build_tokenizer(shapes.vocab)
    policy = policy if policy is not None else build_model(0, shapes, tokenizer)
    reference = reference if reference is not None else build_model(0, shapes, tokenizer)
    rows = rows or preference_rows(shapes, n=max(shapes.dataset_pairs, 8 * batch), response_len=response_len)
    args = DPOConfig(**_common_args(steps, tempfile.mkdtemp(prefix="trl-dpo-"), shapes, device),
                     per_device_train_batch_size=batch, beta=shapes.beta_dpo, loss_type=["sigmoid"],
                     max_length=None)
    return DPOTrainer(model=policy.to(device).train(), ref_model=reference.to(device), args=args,
                      train_dataset=datasets.Dataset.from_dict(rows), processing_class=tokenizer,
                      callbacks=callbacks or [])


def dpo(steps: int, clock: StepClock, *, shapes: Shapes = SHAPES, batch: int | None = None,
        response_len: int | None = None, device: str = "cpu") -> dict[str, Any]:
    trainer = dpo_trainer(steps, shapes, batch=batch, response_len=response_len, callbacks=[_clock_callback(clock)],
                          device=device)
    out = trainer.train()
    return {"final_loss": float(out.training_loss)}


def _vader_reward(lengths: list[int]) -> Callable[..., list[float]]:
    """TRL's reward-function interface around alignzoo's VADER scorer; records completion lengths in tokens."""
    from alignzoo.rewards.sentiment import vader_scores

    def vader(prompts: list[str], completions: list[str], completion_ids: list[list[int]] | None = None,
              **kwargs: Any) -> list[float]:
        if completion_ids is not None:
            lengths.append(sum(len(ids) for ids in completion_ids))
        return vader_scores(completions)

    return vader


def online(trainer_name: str, steps: int, clock: StepClock, *, shapes: Shapes = SHAPES) -> dict[str, Any]:
    """GRPOTrainer or RLOOTrainer: 4 prompts x 4 generations = 16 completions of up to 64 tokens per step, one
    optimizer step per generation batch, beta 0.04 (so the reference model runs every step)."""
    import datasets
    import trl

    tokenizer = build_tokenizer(shapes.vocab)
    model_dir = Path(tempfile.mkdtemp(prefix="trl-model-"))
    build_model(0, shapes, tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    config_cls, trainer_cls = {"grpo": (trl.GRPOConfig, trl.GRPOTrainer),
                               "rloo": (trl.RLOOConfig, trl.RLOOTrainer)}[trainer_name]
    args = config_cls(**_common_args(steps, tempfile.mkdtemp(prefix=f"trl-{trainer_name}-"), shapes),
                      per_device_train_batch_size=shapes.completions, num_generations=4,
                      max_completion_length=shapes.new_tokens, beta=shapes.beta_online, temperature=1.0,
                      top_p=1.0, top_k=0, num_iterations=1)
    lengths: list[int] = []
    trainer = trainer_cls(model=str(model_dir), reward_funcs=[_vader_reward(lengths)], args=args,
                          train_dataset=datasets.Dataset.from_dict({"prompt": prompt_texts(shapes)}),
                          processing_class=tokenizer, callbacks=[_clock_callback(clock)])
    trainer.train()
    timed = lengths[clock.warmup + 1:] or lengths
    return {"completion_tokens_per_step": sum(timed) / max(1, len(timed))}


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "trl_dpo": dpo,
    "trl_grpo": lambda steps, clock, **kw: online("grpo", steps, clock, **kw),
    "trl_rloo": lambda steps, clock, **kw: online("rloo", steps, clock, **kw),
}

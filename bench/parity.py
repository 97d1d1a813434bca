"""DPO loss parity: alignzoo's DPO loss and TRL DPOTrainer's on the same weights and the same batch.

The policy and the reference are two different random initialisations (so the loss is not the trivial log 2),
the batch is the benchmark's first 8 pairs, tokenized by each library its own way (the token ids must agree,
and are checked), and both losses are the sigmoid DPO loss with beta 0.1 in fp32.
``python -m bench.parity`` prints the result as JSON.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bench.common import SHAPES, Shapes, build_model, build_tokenizer, pin_threads, preference_rows


def alignzoo_loss(policy_model: Any, reference_model: Any, tokenizer: Any, rows: dict[str, list[str]], *,
                  beta: float) -> tuple[float, list[list[int]]]:
    """alignzoo's DPO loss through its own tokenization, collate, log-prob and loss functions."""
    import datasets
    import torch

    from alignzoo.algos.dpo import collate_pairs, dpo_loss, pair_logps, tokenize_pairs
    from alignzoo.models.base import Policy

    policy = Policy(policy_model, tokenizer)
    pairs = tokenize_pairs(policy, datasets.Dataset.from_dict(rows), max_length=policy.max_length,
                           max_prompt_length=policy.max_length // 2)
    batch = collate_pairs(pairs, list(range(len(pairs))), policy.pad_id, torch.device("cpu"))
    with torch.no_grad():
        pc, pr = pair_logps(policy_model, batch, False)
        rc, rr = pair_logps(reference_model, batch, False)
        loss, _ = dpo_loss(pc, pr, rc, rr, beta=beta)
    return float(loss), [p + c for p, c, _ in pairs]


def trl_loss(policy_model: Any, reference_model: Any, rows: dict[str, list[str]], shapes: Shapes) -> tuple[float, Any]:
    """TRL DPOTrainer's loss (``compute_loss``) on its collated first batch of the same rows."""
    import torch

    from bench.trl_runners import dpo_trainer

    n = len(rows["prompt"])
    trainer = dpo_trainer(1, shapes, batch=n, policy=policy_model, reference=reference_model, rows=rows)
    examples = [trainer.train_dataset[i] for i in range(n)]
    inputs = trainer.data_collator(examples)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, inputs)
    return float(loss), [e["prompt_ids"] + e["chosen_ids"] for e in examples]


def dpo_loss_parity(shapes: Shapes = SHAPES, pairs: int = 8) -> dict[str, Any]:
    pin_threads()
    tokenizer = build_tokenizer(shapes.vocab)
    policy, reference = build_model(1, shapes, tokenizer), build_model(0, shapes, tokenizer)
    rows = preference_rows(shapes, n=pairs)
    ours, our_ids = alignzoo_loss(policy, reference, tokenizer, rows, beta=shapes.beta_dpo)
    theirs, their_ids = trl_loss(policy, reference, rows, shapes)
    import trl

    return {"alignzoo_loss": ours, "trl_loss": theirs, "abs_diff": abs(ours - theirs),
            "same_token_ids": our_ids == their_ids, "pairs": pairs, "beta": shapes.beta_dpo, "trl": trl.__version__}


if __name__ == "__main__":
    json.dump(dpo_loss_parity(), sys.stdout)
    print()

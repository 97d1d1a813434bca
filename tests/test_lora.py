"""LoRA (model.lora.r): only adapter weights train, and the reference is the policy with its adapters off (one copy
of the base weights)."""

import pytest
import torch

from alignzoo import training
from alignzoo.models.lora import adapters_off, has_adapters
from alignzoo.testing import TINY_OVERRIDES, build_context, compose_config

R = 4


def _ctx(tmp_path, preference_dataset, algo, *extra):
    return build_context([*TINY_OVERRIDES, "task=hf_preferences", f"task.path={preference_dataset}", f"algo={algo}",
                          "reward=vader", "evaluator=[kl]", "train.steps=2", f"model.lora.r={R}", *extra], tmp_path)


def _storages(model):
    return {p.untyped_storage().data_ptr() for p in model.parameters()}


@pytest.mark.parametrize("algo", ["dpo", "ppo"])
def test_lora_trains_only_adapters_and_holds_one_copy_of_the_base_weights(tmp_path, preference_dataset, monkeypatch,
                                                                          algo):
    ctx = _ctx(tmp_path, preference_dataset, algo)
    policy, reference = ctx.policy, ctx.reference
    cfg = policy.model.config
    # PEFT's GPT-2 default adapts the fused attention projection c_attn (d -> 3d): r * (d + 3d) per layer
    expected = R * (cfg.n_embd + 3 * cfg.n_embd) * cfg.n_layer
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert sum(p.numel() for p in trainable.values()) == expected == policy.info["lora"]["trainable"]

    # one copy: the reference's parameters are the policy's own tensors
    assert {id(p) for p in reference.model.parameters()} == {id(p) for p in policy.model.parameters()}
    assert _storages(reference.model) == _storages(policy.model)

    seen = []
    create = training.Stepper.create.__func__

    def spy(cls, params, *args, **kwargs):
        stepper = create(cls, params, *args, **kwargs)
        seen.extend(stepper.params)
        return stepper

    monkeypatch.setattr(training.Stepper, "create", classmethod(spy))
    base = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_" not in n}
    lora_b = {n: p.detach().clone() for n, p in trainable.items() if "lora_B" in n}
    ctx.registries["algo"].build(ctx.built["algo"], ctx)

    optimized = {id(p) for p in seen}
    policy_params = {id(p): n for n, p in policy.model.named_parameters()}
    in_policy = [policy_params[i] for i in optimized if i in policy_params]
    assert sorted(in_policy) == sorted(trainable)  # the optimizer gets the adapters and nothing else of the policy
    extra = sum(p.numel() for p in seen if id(p) not in policy_params)
    assert extra == (cfg.n_embd + 1 if algo == "ppo" else 0)  # PPO's value head (a d -> 1 linear layer)
    after = dict(policy.model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in base.items())  # base weights untouched
    assert any(not torch.equal(after[n], v) for n, v in lora_b.items())  # adapters trained (B left zero)


def test_reference_is_the_base_model_and_the_policy_starts_equal_to_it(tmp_path, preference_dataset):
    ctx = _ctx(tmp_path, preference_dataset, "dpo")
    policy, reference = ctx.policy, ctx.reference
    ids = torch.tensor([[0, 5, 9, 17, 3, 8]])
    with torch.no_grad():
        start_policy = policy.model(input_ids=ids).logits
        start_ref = reference.model(input_ids=ids).logits
        for n, p in policy.model.named_parameters():  # move the adapters away from B = 0
            if "lora_B" in n:
                p.add_(0.05)
        moved = policy.model(input_ids=ids).logits
        ref = reference.model(input_ids=ids).logits
        with adapters_off(policy.model):
            base = policy.model(input_ids=ids).logits
    assert torch.equal(start_policy, start_ref)  # B = 0: DPO starts at log 2, PPO at ratio 1
    assert not torch.allclose(moved, ref)  # the policy moved, the reference did not
    assert torch.equal(ref, base) and torch.equal(ref, start_ref)
    # switching adapters off for the reference leaves the policy's adapters on and trainable
    assert all(p.requires_grad for n, p in policy.model.named_parameters() if "lora_" in n)
    assert torch.equal(policy.model(input_ids=ids).logits, moved)
    # eval()/train() on the reference never changes the policy's mode
    policy.model.train()
    reference.model.eval()
    assert policy.model.training
    # frozen_copy of a LoRA policy is the same view, not a copy
    again = policy.frozen_copy()
    assert _storages(again.model) == _storages(policy.model)


def test_without_lora_the_reference_is_a_separate_frozen_copy(tmp_path, preference_dataset):
    ctx = build_context([*TINY_OVERRIDES, "task=hf_preferences", f"task.path={preference_dataset}", "algo=dpo",
                         "evaluator=[kl]"], tmp_path)
    assert not has_adapters(ctx.policy.model)
    assert not (_storages(ctx.reference.model) & _storages(ctx.policy.model))
    assert all(p.requires_grad for p in ctx.policy.model.parameters())


def test_bad_lora_settings_are_reported_with_their_keys():
    from alignzoo import plugins
    from alignzoo.config import validate

    cfg = compose_config([*TINY_OVERRIDES, "model.lora.r=-2", "model.lora.dropout=1.5"])
    _, problems = validate(cfg, plugins.load().registries)
    assert any(p.startswith("model.lora.r must be >= 0 (got -2)") for p in problems), problems
    assert any(p.startswith("model.lora.dropout must be in [0, 1)") for p in problems), problems


def test_adapters_start_from_the_seed_alone_and_bad_targets_name_the_key(tiny_policy):
    import copy

    from alignzoo.errors import AlignzooError
    from alignzoo.models.lora import LoraConfig, add_adapters

    a, b = copy.deepcopy(tiny_policy), copy.deepcopy(tiny_policy)
    torch.manual_seed(1)
    add_adapters(a, LoraConfig(r=2), seed=5)
    torch.rand(100)  # a different global RNG state (e.g. stages built in this process, or reused)
    add_adapters(b, LoraConfig(r=2), seed=5)
    lora_a = {n: p for n, p in a.model.named_parameters() if "lora_A" in n}
    assert lora_a and all(torch.equal(p, dict(b.model.named_parameters())[n]) for n, p in lora_a.items())
    with pytest.raises(AlignzooError, match=r"model.lora.target_modules=\['nope'\]"):
        add_adapters(copy.deepcopy(tiny_policy), LoraConfig(r=2, target_modules=["nope"]))

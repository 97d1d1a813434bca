"""LoRA adapters on any model (``model.lora.r=8``), through PEFT.

The adapters are injected into the policy's own modules (``peft.inject_adapter_in_model``), after the pipeline
stages built the starting policy: the model keeps its class, so the rollout engine, the algorithms and ``save``
work unchanged, and only the adapter weights require gradients (the optimizer never sees the base weights). The
reference policy is the same module with its adapters switched off for each call (``AdapterOff``), not a second
copy: one copy of the base weights lives in memory. B starts at zero, so at step 0 the policy equals the reference
exactly (DPO's loss is log 2, PPO's ratio 1).

A model config takes LoRA by having a ``lora: LoraConfig`` field (the built-in ``tiny`` and ``hf`` do).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import torch

from alignzoo.errors import AlignzooError


@dataclass
class LoraConfig:
    r: int = 0  # adapter rank; 0: no adapters (every weight trains)
    alpha: float = 16.0  # scale numerator: the weight update is (alpha / r) * B @ A
    dropout: float = 0.0  # dropout on the adapters' input (0 keeps DPO's log 2 start and PPO's first ratio at 1)
    target_modules: Optional[list[str]] = None  # module names to adapt; None: PEFT's choice for the architecture,
    # or every linear layer but the output head when PEFT has none

    def problems(self) -> list[str]:
        out = []
        if self.r < 0:
            out.append(f"r must be >= 0 (got {self.r}); 0 turns LoRA off, e.g. model.lora.r=8")
        if self.alpha <= 0:
            out.append(f"alpha must be > 0 (got {self.alpha})")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1) (got {self.dropout})")
        return out


def _tuner_layers(model: Any) -> list[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in model.modules() if isinstance(m, BaseTunerLayer)]


def has_adapters(model: Any) -> bool:
    return any(hasattr(m, "lora_A") for m in model.modules())


def add_adapters(policy: Any, cfg: LoraConfig, *, seed: int = 0) -> Any:
    """Inject LoRA adapters into ``policy.model`` in place (base weights frozen) and return the reference policy:
    the same model with its adapters off. A is initialised from ``seed`` alone (not from the global RNG, whose state
    depends on whether pipeline stages were built or reused)."""
    try:
        from peft import LoraConfig as PeftLoraConfig
        from peft import inject_adapter_in_model
    except ImportError:  # pragma: no cover - peft is a core dependency
        raise AlignzooError("model.lora.r > 0 needs the package peft (pip install peft)") from None
    if has_adapters(policy.model):
        raise AlignzooError("model.lora: the policy already has LoRA adapters")
    model = policy.model
    kwargs = dict(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none")
    targets = list(cfg.target_modules) if cfg.target_modules else None
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        try:
            with warnings.catch_warnings():  # GPT-2's Conv1D layers: PEFT sets fan_in_fan_out itself, and says so
                warnings.filterwarnings("ignore", message="fan_in_fan_out")
                inject_adapter_in_model(PeftLoraConfig(target_modules=targets, **kwargs), model)
        except ValueError as exc:
            if targets is not None:
                raise AlignzooError(f"model.lora.target_modules={targets}: {str(exc).splitlines()[0]}; give module "
                                    "names the model has (e.g. its attention and MLP projections)") from None
            # PEFT knows no default targets for this architecture: every linear layer but the output head
            inject_adapter_in_model(PeftLoraConfig(target_modules="all-linear", **kwargs), model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    policy.info["lora"] = {"r": cfg.r, "alpha": cfg.alpha, "trainable": trainable_parameters(model)}
    return reference_of(policy)


def reference_of(policy: Any, name: str = "reference") -> Any:
    """The reference policy of a LoRA policy: its own module, called with the adapters off (no weight copy).
    Built as ``type(policy)`` so that this module needs nothing from ``alignzoo.models.base`` (which calls it)."""
    view = _view_class(type(policy.model))(policy.model)
    return type(policy)(view, policy.tokenizer, name=name, info=dict(policy.info))


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextlib.contextmanager
def adapters_off(model: Any) -> Iterator[None]:
    """Run ``model`` as its base model: every LoRA layer passes its input through the frozen weight alone."""
    layers = _tuner_layers(model)
    before = [layer._disable_adapters for layer in layers]
    try:
        for layer in layers:  # the flag itself: PEFT's enable_adapters() would also flip requires_grad
            layer._disable_adapters = True
        yield
    finally:
        for layer, was in zip(layers, before):
            layer._disable_adapters = was


class AdapterOff(torch.nn.Module):
    """A LoRA model seen with its adapters off, for the reference policy. It holds the model without registering
    it as a submodule, so ``eval()``/``train()`` here never change the policy's mode; parameters and attributes
    (``config``, ...) are the model's own."""

    def __init__(self, model: Any):
        super().__init__()
        self.__dict__["inner"] = model
        self.train(False)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with adapters_off(self.inner):
            return self.inner(*args, **kwargs)

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]:
        return self.inner.parameters(recurse)

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.nn.Parameter]]:
        return self.inner.named_parameters(*args, **kwargs)

    def train(self, mode: bool = True) -> "AdapterOff":
        self.training = mode  # the reference's mode only; dropout is off in the tiny models and the adapters
        return self

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["inner"], name)


@functools.lru_cache(maxsize=None)
def _view_class(model_cls: type) -> type:
    """An ``AdapterOff`` whose ``forward`` has the model's signature (the rollout engine reads it for the KV-cache
    argument's name)."""

    def forward(self: AdapterOff, *args: Any, **kwargs: Any) -> Any:
        return AdapterOff.forward(self, *args, **kwargs)

    forward.__signature__ = inspect.signature(model_cls.forward)  # type: ignore[attr-defined]
    return type(f"AdapterOff{model_cls.__name__}", (AdapterOff,), {"forward": forward})

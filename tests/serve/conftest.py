"""Fixtures of the serving tests: a second tiny policy whose answers differ from the first's."""

from __future__ import annotations

from pathlib import Path

import pytest


def untied_copy(checkpoint: Path, dest: Path) -> Path:
    """The tiny model with its own random LM head: a tied random model only repeats the prompt's
    last token, so champion and challenger would give the same answers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(checkpoint, tie_word_embeddings=False)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        head = model.lm_head.weight
        head.copy_(torch.randn(head.shape, generator=generator))
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(checkpoint).save_pretrained(dest)
    return dest


@pytest.fixture(scope="session")
def challenger_model_dir(tmp_path_factory, tiny_model_dir) -> Path:
    return untied_copy(tiny_model_dir, tmp_path_factory.mktemp("challenger") / "model")

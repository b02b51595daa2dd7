"""The reference log-prob cache key covers what the numbers depend on, and nothing else."""

from __future__ import annotations

import os
import shutil
from importlib import metadata

import pytest

from alignment.train import refcache


@pytest.fixture()
def model(tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "pairs.parquet"
    path.write_bytes(b"rows")
    return path


@pytest.mark.parametrize("library", ["torch", "transformers", "tokenizers"])
def test_the_key_changes_with_the_library_versions(model, data, monkeypatch, library):
    base = refcache.reference_key(model, data, 64)
    real = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "0.0.1" if name == library else real(name)
    )
    assert refcache.reference_key(model, data, 64) != base


@pytest.mark.parametrize(
    "name",
    ["tokenizer.model", "spiece.model", "added_tokens.json", "vocab.txt", "tokenizer.json"],
)
def test_the_key_changes_with_every_tokenizer_file(model, data, name):
    base = refcache.reference_key(model, data, 64)
    path = model / name
    path.write_bytes((path.read_bytes() if path.is_file() else b"") + b"\n")
    assert refcache.reference_key(model, data, 64) != base


def test_training_arguments_are_not_weights(model, data):
    base = refcache.reference_key(model, data, 64)
    (model / "training_args.bin").write_bytes(b"pickled arguments of the run that made it")
    assert refcache.reference_key(model, data, 64) == base
    (model / "pytorch_model.bin").write_bytes(b"weights")
    assert refcache.reference_key(model, data, 64) != base


def test_each_write_goes_through_its_own_temporary_file(tmp_path, monkeypatch):
    sources = []
    real_replace = os.replace

    def replace(src, dst):
        sources.append(str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path = tmp_path / "cache" / "key.parquet"
    refcache.save(path, ["a"], [-1.0], [-2.0])
    refcache.save(path, ["a"], [-3.0], [-4.0])
    assert len(sources) == 2 and sources[0] != sources[1]  # two writers never share a file
    assert all(os.path.dirname(s) == str(path.parent) for s in sources)  # rename stays atomic
    assert refcache.load(path, ["a"]) == ([-3.0], [-4.0])
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.parquet"]

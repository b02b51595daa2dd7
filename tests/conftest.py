"""Session-wide test settings and shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# DVC's and Prefect's log handlers follow the streams of the running test (tests/log_streams.py);
# the environment and MLflow's process-wide choices end with the module (tests/module_state.py);
# under pytest-xdist the real-server tests share a worker and the longest files start first
# (tests/spread.py)
pytest_plugins = ["log_streams", "module_state", "spread"]

# Offline and quiet: no hub, no telemetry (set before any of these libraries is imported).
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "GX_ANALYTICS_ENABLED": "false",
    # the embedded Prefect API migrates its database on first start: slow on busy cores
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
}.items():
    os.environ.setdefault(_name, _value)


# Under pytest-xdist each worker (and the training jobs it starts) takes its share of the cores:
# two workers each running a 2-thread job on 2 cores spend their time trading the cores.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT", "").isdigit():
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    _share = max(1, (_cores or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_share))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama (about 100k parameters) with a BPE tokenizer and chat template, built once."""
    from alignment.config import ModelConfig
    from alignment.models import resolve_base_model
    from alignment.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("tiny-model-ws"))
    corpus = [
        f"What is {a} plus {b}? {a} plus {b} is {a + b}." for a in range(10) for b in range(10)
    ]
    return resolve_base_model(ModelConfig(), ws, [*corpus, "I refuse to answer."])


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test API for the whole session (about 15 s to start, so started once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


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

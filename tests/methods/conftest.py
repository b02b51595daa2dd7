"""Shared by the RL method tests: a fixed tiny preference task and one reward model trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignment.config import PipelineConfig


def preference_rows(n: int = 64) -> list[dict]:
    """Arithmetic prompts; chosen answers them, rejected refuses. Every 4th row carries scores."""
    rows = []
    for i in range(n):
        a, b = i % 7, (i * 3) % 5
        scored = i % 4 == 0
        rows.append(
            {
                "id": f"r{i}",
                "prompt": [{"role": "user", "content": f"What is {a} plus {b}?"}],
                "chosen": [{"role": "assistant", "content": f"{a} plus {b} is {a + b}."}],
                "rejected": [{"role": "assistant", "content": "I refuse to answer."}],
                "source": "fixture",
                "row": i,
                "score_chosen": 1.0 if scored else None,
                "score_rejected": 0.5 if scored else None,
                "meta": "{}",
            }
        )
    return rows


def rl_config(**train) -> PipelineConfig:
    """2 processes, ZeRO-2 on CPU, plus per-method overrides."""
    return PipelineConfig.model_validate(
        {"train": {"distributed": {"num_processes": 2, "zero_stage": 2, "device": "cpu"}, **train}}
    )


@pytest.fixture(name="rl_config")
def rl_config_fixture():
    """The config builder, for tests (this folder is not a package)."""
    return rl_config


@pytest.fixture(scope="session")
def preference_parquet(tmp_path_factory) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("rl-prefs") / "train.parquet"
    pq.write_table(pa.Table.from_pylist(preference_rows()), path)
    return path


@pytest.fixture(scope="session")
def reward_run(tiny_model_dir, preference_parquet, tmp_path_factory):
    """One 2-process ZeRO-2 reward-model run (with score margins), shared by the RL tests."""
    from alignment.train.launch import launch_training

    cfg = rl_config(reward={"num_train_epochs": 2, "learning_rate": 3e-3, "use_score_margin": True})
    return launch_training(
        "reward",
        cfg,
        tiny_model_dir,
        preference_parquet,
        tmp_path_factory.mktemp("reward-run"),
        eval_path=preference_parquet,
        on_progress=lambda event: None,
    )

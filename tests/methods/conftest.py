"""Shared by the RL method tests: a fixed tiny preference task and one reward model trained on it."""

from __future__ import annotations

from pathlib import Path

import pytest
from preference_task import preference_rows, write_rows

from alignment.config import PipelineConfig


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
    return write_rows(tmp_path_factory.mktemp("rl-prefs") / "train.parquet", preference_rows())


@pytest.fixture(scope="session")
def heldout_parquet(tmp_path_factory) -> Path:
    """40 pairs on the 20 prompts training never sees, half of each kind of rejected answer."""
    path = tmp_path_factory.mktemp("rl-prefs-heldout") / "eval.parquet"
    return write_rows(path, preference_rows(40, heldout=True))


@pytest.fixture(scope="session")
def reward_run(tiny_model_dir, preference_parquet, heldout_parquet, tmp_path_factory):
    """One 2-process ZeRO-2 reward-model run (with score margins), shared by the RL tests."""
    from alignment.train.launch import launch_training

    cfg = rl_config(reward={"num_train_epochs": 2, "learning_rate": 3e-3, "use_score_margin": True})
    return launch_training(
        "reward",
        cfg,
        tiny_model_dir,
        preference_parquet,
        tmp_path_factory.mktemp("reward-run"),
        eval_path=heldout_parquet,
        on_progress=lambda event: None,
    )

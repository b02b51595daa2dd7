"""GRPO with TRL's GRPOTrainer against the learned reward model (see `alignment.methods.rloo`)."""

from __future__ import annotations

from alignment.methods.rloo import train_online
from alignment.train.entry import Job


def train(job: Job) -> dict:
    """GRPO from job.model_path against job.reward_model_path; return the final metrics."""
    from trl import GRPOConfig, GRPOTrainer

    return train_online(job, job.cfg.train.grpo, GRPOConfig, GRPOTrainer)

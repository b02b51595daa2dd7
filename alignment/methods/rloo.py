"""RLOO with TRL's RLOOTrainer against the learned reward model: a critic-free alternative to PPO.

Each prompt of the canonical records is sampled num_generations times; the reward model (a
sequence-classification checkpoint, job.reward_model_path) scores every sample, and each sample's
baseline is the mean reward of the others (leave one out). GRPO (`alignment.methods.grpo`) runs
the same way with group-normalised advantages, so both share `train_online` here, with the
over-optimisation guard (`train.<method>.guard`, `alignment.methods.online_guard`).
"""

from __future__ import annotations

import json

from alignment.errors import ConfigError
from alignment.methods.online_guard import guard_callback
from alignment.train.entry import (
    Job,
    finish,
    load_preferences,
    progress_callback,
    training_arguments,
)
from alignment.workspace import atomic_write_text


def train_online(job: Job, method_cfg, config_cls, trainer_cls) -> dict:
    """Sample, score with the reward model and update, with a TRL online trainer; final metrics."""
    from transformers import AutoTokenizer

    if job.reward_model_path is None:
        raise ConfigError(f"{job.method} needs a reward model: pass reward_model_path")
    common = training_arguments(job, method_cfg)
    common.pop("max_length")  # online trainers bound the completion instead
    args = config_cls(
        **common,
        num_generations=method_cfg.num_generations,
        max_completion_length=method_cfg.max_completion_length,
        temperature=method_cfg.temperature,
        beta=method_cfg.beta,
    )
    train_ds = load_preferences(job, job.train_path, args, columns=("prompt",))
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    reward_tokenizer = AutoTokenizer.from_pretrained(job.reward_model_path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    progress = progress_callback()
    guard = guard_callback(job, method_cfg, tokenizer, progress)
    trainer = trainer_cls(
        model=str(job.model_path),
        reward_funcs=str(job.reward_model_path),
        args=args,
        train_dataset=train_ds,
        processing_class=tokenizer,
        reward_processing_classes=reward_tokenizer,
        callbacks=[progress] if guard is None else [progress, guard],
    )
    output = trainer.train(resume_from_checkpoint=job.last_checkpoint())
    metrics = finish(job, trainer, output, progress)
    if guard is not None and trainer.is_world_process_zero():
        # after the final save: the kept checkpoint replaces it, its figures join metrics.json
        metrics |= guard.finish(output.global_step)
        atomic_write_text(job.output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def train(job: Job) -> dict:
    """RLOO from job.model_path against job.reward_model_path; return the final metrics."""
    from trl import RLOOConfig, RLOOTrainer

    return train_online(job, job.cfg.train.rloo, RLOOConfig, RLOOTrainer)

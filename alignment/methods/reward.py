"""Bradley-Terry reward model on the preference pairs with TRL's RewardTrainer.

The model is the starting checkpoint with a one-output sequence-classification head; the loss is
-log sigmoid(r(chosen) - r(rejected) - margin), the margin being score_chosen - score_rejected
when configured (and 0 on pairs without both scores). Held-out accuracy (r(chosen) > r(rejected)
on the eval split) is reported as `eval_accuracy`.
"""

from __future__ import annotations

from pathlib import Path

from alignment.train.entry import (
    Job,
    finish,
    load_preferences,
    progress_callback,
    training_arguments,
)


def load_pairs(job: Job, path: Path, args, with_margin: bool):
    """prompt/chosen/rejected (and `margin` when asked) from canonical Parquet records."""
    if not with_margin:
        return load_preferences(job, path, args)
    scored = ("prompt", "chosen", "rejected", "score_chosen", "score_rejected")
    dataset = load_preferences(job, path, args, columns=scored)
    with args.main_process_first(desc=f"margins {path.name}"):
        return dataset.map(score_margin, remove_columns=["score_chosen", "score_rejected"])


def score_margin(row: dict) -> dict:
    """margin = score_chosen - score_rejected, or 0 when either score is missing."""
    chosen, rejected = row.get("score_chosen"), row.get("score_rejected")
    if chosen is None or rejected is None:
        return {"margin": 0.0}
    return {"margin": float(chosen) - float(rejected)}


def train(job: Job) -> dict:
    """Train a reward model from job.model_path on the pairs; return the final metrics."""
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    method_cfg = job.cfg.train.reward
    args = RewardConfig(
        **training_arguments(job, method_cfg),
        center_rewards_coefficient=method_cfg.center_rewards_coefficient,
    )
    margin = method_cfg.use_score_margin
    train_ds = load_pairs(job, job.train_path, args, margin)
    eval_ds = load_pairs(job, job.eval_path, args, margin) if job.eval_path else None
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    progress = progress_callback()
    # A model path: TRL builds AutoModelForSequenceClassification(num_labels=1) and sets the
    # model's pad_token_id, which the head needs to find each sequence's last token.
    trainer = RewardTrainer(
        model=str(job.model_path),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[progress],
    )
    output = trainer.train(resume_from_checkpoint=job.last_checkpoint())
    return finish(job, trainer, output, progress)

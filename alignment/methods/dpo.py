"""Direct preference optimisation with TRL's DPOTrainer; the reference is the starting model."""

from __future__ import annotations

from alignment.train.entry import (
    Job,
    finish,
    load_preferences,
    progress_callback,
    training_arguments,
)


def train(job: Job) -> dict:
    """Train job.model_path on prompt/chosen/rejected pairs; return the final metrics."""
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    method_cfg = job.cfg.train.dpo
    args = DPOConfig(
        **training_arguments(job, method_cfg),
        beta=method_cfg.beta,
        loss_type=[method_cfg.loss_type],
        label_smoothing=method_cfg.label_smoothing,
        precompute_ref_log_probs=method_cfg.precompute_ref_log_probs,
    )
    train_ds = load_preferences(job, job.train_path, args)
    eval_ds = load_preferences(job, job.eval_path, args) if job.eval_path else None
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    progress = progress_callback()
    # ref_model=None: TRL loads a frozen copy of the same starting checkpoint as the reference.
    trainer = DPOTrainer(
        model=str(job.model_path),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[progress],
    )
    output = trainer.train(resume_from_checkpoint=job.last_checkpoint())
    return finish(job, trainer, output, progress)

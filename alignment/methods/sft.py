"""Supervised fine-tuning on the chosen responses with TRL's SFTTrainer.

Each preference record becomes a conversational prompt/completion pair (prompt turns, chosen
answer), so the loss falls on the assistant's answer only, with any chat template.
"""

from __future__ import annotations

from alignment.methods import lora
from alignment.train.entry import (
    Job,
    finish,
    load_preferences,
    progress_callback,
    training_arguments,
)


def to_sft_rows(dataset):
    """Canonical records -> TRL conversational prompt/completion rows (prompt turns, chosen answer)."""
    return dataset.remove_columns("rejected").rename_column("chosen", "completion")


def train(job: Job) -> dict:
    """Fine-tune job.model_path on prompt + chosen; return the final metrics."""
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    method_cfg = job.cfg.train.sft
    args = SFTConfig(
        **training_arguments(job, method_cfg),
        packing=False,
        completion_only_loss=True,
    )
    train_ds = to_sft_rows(load_preferences(job, job.train_path, args))
    eval_ds = to_sft_rows(load_preferences(job, job.eval_path, args)) if job.eval_path else None
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    progress = progress_callback()
    trainer = SFTTrainer(
        model=str(job.model_path),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[progress],
        peft_config=lora.peft_config(method_cfg.lora),
    )
    output = trainer.train(resume_from_checkpoint=job.last_checkpoint())
    return finish(job, trainer, output, progress)

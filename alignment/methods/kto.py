"""KTO (TRL's KTOTrainer) on unpaired rows derived from the preference pairs.

Each pair gives two rows: prompt + chosen answer labelled desirable, prompt + rejected answer
labelled undesirable. KTO estimates its KL term from mismatched prompt/answer pairs inside a
batch taken in order, so the rows are shuffled once with the method's seed: every batch then
mixes desirable and undesirable rows of different prompts.
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


def to_kto_rows(dataset, seed: int = 0):
    """Canonical pairs -> TRL unpaired rows (prompt, completion, label), shuffled with `seed`."""

    def unpair(batch):
        n = len(batch["prompt"])
        return {
            "prompt": batch["prompt"] * 2,
            "completion": batch["chosen"] + batch["rejected"],
            "label": [True] * n + [False] * n,
        }

    rows = dataset.map(unpair, batched=True, remove_columns=dataset.column_names)
    return rows.shuffle(seed=seed).flatten_indices()


def train(job: Job) -> dict:
    """Train job.model_path with KTO on the unpaired rows; return the final metrics."""
    from transformers import AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    method_cfg = job.cfg.train.kto
    args = KTOConfig(
        **training_arguments(job, method_cfg),
        beta=method_cfg.beta,
        desirable_weight=method_cfg.desirable_weight,
        undesirable_weight=method_cfg.undesirable_weight,
        precompute_ref_log_probs=method_cfg.precompute_ref_log_probs,
    )
    with args.main_process_first(desc="unpair"):
        train_ds = to_kto_rows(load_preferences(job, job.train_path, args), method_cfg.seed)
        eval_ds = (
            to_kto_rows(load_preferences(job, job.eval_path, args), method_cfg.seed)
            if job.eval_path
            else None
        )
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    progress = progress_callback()
    # ref_model=None: TRL loads a frozen copy of the starting checkpoint, or with LoRA
    # uses the base with adapters disabled.
    trainer = KTOTrainer(
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

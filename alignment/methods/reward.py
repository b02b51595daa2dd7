"""Bradley-Terry reward model on the preference pairs with TRL's RewardTrainer.

The model is the starting checkpoint with a one-output sequence-classification head; the loss is
-log sigmoid(r(chosen) - r(rejected) - margin), the margin being score_chosen - score_rejected
when configured (and 0 on pairs without both scores). With soft labels it is the soft
Bradley-Terry loss -[p log s(d) + (1 - p) log s(-d)], d = r(chosen) - r(rejected), p each pair's
preference probability (`alignment.methods.soft_labels`), as Bai et al. train their preference
model on the feedback model's normalised probabilities. Held-out accuracy (r(chosen) >
r(rejected) on the eval split) is reported as `eval_accuracy`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alignment.train.entry import (
    Job,
    finish,
    load_preferences,
    progress_callback,
    training_arguments,
)

PAIR_COLUMNS = ("prompt", "chosen", "rejected")
SCORED_COLUMNS = (*PAIR_COLUMNS, "score_chosen", "score_rejected")


def load_pairs(job: Job, path: Path, args, with_margin: bool):
    """prompt/chosen/rejected (and `margin` when asked) from canonical Parquet records."""
    if not with_margin:
        return load_preferences(job, path, args)
    dataset = load_preferences(job, path, args, columns=SCORED_COLUMNS)
    with args.main_process_first(desc=f"margins {path.name}"):
        return dataset.map(score_margin, remove_columns=["score_chosen", "score_rejected"])


def score_margin(row: dict) -> dict:
    """margin = score_chosen - score_rejected, or 0 when either score is missing."""
    chosen, rejected = row.get("score_chosen"), row.get("score_rejected")
    if chosen is None or rejected is None:
        return {"margin": 0.0}
    return {"margin": float(chosen) - float(rejected)}


@functools.cache
def trainer_class() -> type:
    """TRL's RewardTrainer, plus the soft Bradley-Terry loss on batches with a `preference`."""
    from trl import RewardTrainer

    from alignment.methods.losses import soft_preference_loss
    from alignment.methods.soft_labels import preference_collator

    class SoftLabelRewardTrainer(RewardTrainer):
        """RewardTrainer whose loss reads each pair's preference probability when there is one."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.data_collator = preference_collator(self.data_collator)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "preference" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "preference"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            preference = inputs.pop("preference", None)
            # TRL's own pass keeps its metrics (accuracy, margin, token counts); only the loss
            # is replaced when the pairs carry a probability.
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True)
            if preference is not None:
                chosen, rejected = outputs.logits.squeeze(-1).chunk(2)
                loss = soft_preference_loss(chosen - rejected, preference.to(chosen.dtype)).mean()
                if self.args.center_rewards_coefficient is not None:
                    centring = ((chosen + rejected) ** 2).mean()
                    loss = loss + self.args.center_rewards_coefficient * centring
            return (loss, outputs) if return_outputs else loss

    return SoftLabelRewardTrainer


def load_labelled_pairs(job: Job, path: Path, args, min_margin: float):
    """prompt/chosen/rejected plus `preference` (p), near-0.5 pairs dropped; and the counts."""
    from alignment.methods.soft_labels import with_preferences

    dataset = load_preferences(job, path, args, columns=SCORED_COLUMNS)
    with args.main_process_first(desc=f"soft labels {path.name}"):
        return with_preferences(dataset, path, min_margin)


def train(job: Job) -> dict:
    """Train a reward model from job.model_path on the pairs; return the final metrics."""
    from transformers import AutoTokenizer
    from trl import RewardConfig

    method_cfg = job.cfg.train.reward
    args = RewardConfig(
        **training_arguments(job, method_cfg),
        center_rewards_coefficient=method_cfg.center_rewards_coefficient,
    )
    extra: dict = {}
    if method_cfg.soft_labels:
        train_ds, counts = load_labelled_pairs(
            job, job.train_path, args, method_cfg.min_label_margin
        )
        extra.update(counts.as_metrics("train"))
        eval_ds = None
        if job.eval_path:
            eval_ds, counts = load_labelled_pairs(
                job, job.eval_path, args, method_cfg.min_label_margin
            )
            extra.update(counts.as_metrics("eval"))
    else:
        margin = method_cfg.use_score_margin
        train_ds = load_pairs(job, job.train_path, args, margin)
        eval_ds = load_pairs(job, job.eval_path, args, margin) if job.eval_path else None
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    progress = progress_callback()
    # A model path: TRL builds AutoModelForSequenceClassification(num_labels=1) and sets the
    # model's pad_token_id, which the head needs to find each sequence's last token.
    trainer = trainer_class()(
        model=str(job.model_path),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[progress],
    )
    output = trainer.train(resume_from_checkpoint=job.last_checkpoint())
    return finish(job, trainer, output, progress, extra)

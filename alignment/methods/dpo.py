"""Direct preference optimisation with TRL's DPOTrainer; the reference is the starting model.

Two changes to TRL's trainer, both where a DPO step spends its time on a CPU:
- completion log-probs come from one full-vocabulary log-softmax over the completion tokens
  (`logprobs.add_full_vocab_lm_head`) instead of TRL's tiled kernel, which recomputes the
  logits in its backward to save memory (config `train.dpo.logprobs`: 'auto' is full on CPU,
  TRL's kernel on GPU, where memory is the scarce resource and the kernel is fused);
- the reference's log-probs are read from the workspace cache (`alignment.train.refcache`),
  computed once per reference model, dataset file, max_length and tokenizer: no reference
  model is loaded and no reference forward runs during training.
With LoRA, the reference is the base with its adapters disabled (TRL's own PEFT path).

Soft labels (config `train.dpo.soft_labels`): each pair's preference probability p
(`alignment.methods.soft_labels`) gives it its own label smoothing 1 - p (conservative DPO),
-[p log s(beta d) + (1 - p) log s(-beta d)] with d the implicit reward margin. TRL computes the
sigmoid loss -log s(beta d); the trainer adds (1 - p) beta d, which makes it the soft loss exactly.

IPO (loss_type 'ipo') is TRL's form: ((mean per-token log-ratio of chosen - that of rejected) -
1/(2 beta))^2, averaged per token as the IPO authors' own results are, where the paper writes the
summed sequence log-ratio. Its beta is therefore per token and not comparable with the beta of
the sigmoid, hinge and robust losses.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alignment.methods import lora
from alignment.train import refcache
from alignment.train.entry import (
    Job,
    finish,
    load_preferences,
    progress_callback,
    training_arguments,
)

REFCACHE_PREFIX = "@@refcache "


def use_full_vocab_logprobs(choice: str, device: str) -> bool:
    """'full' and 'chunked' as asked; 'auto' is full on CPU, TRL's chunked kernel on GPU."""
    return choice == "full" or (choice == "auto" and device == "cpu")


@functools.cache
def trainer_class() -> type:
    """The platform's DPOTrainer: TRL's, with plain log-probs and the workspace reference cache."""
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer

    from alignment.methods.logprobs import add_full_vocab_lm_head, plain_head_supported
    from alignment.methods.losses import soft_label_correction
    from alignment.methods.soft_labels import preference_collator

    class PlatformDPOTrainer(DPOTrainer):
        """DPOTrainer plus `full_vocab_logprobs` and `reference_cache` ({split name: parquet path})."""

        def __init__(
            self,
            *args: Any,
            full_vocab_logprobs: bool = False,
            reference_cache: dict[str, Path] | None = None,
            reference_cache_meta: dict | None = None,
            **kwargs: Any,
        ) -> None:
            self._full_vocab_logprobs = full_vocab_logprobs
            self._reference_cache = reference_cache or {}
            self._reference_cache_meta = reference_cache_meta or {}
            self.reference_cache_events: list[tuple[str, str]] = []  # (split, "hit" | "miss")
            super().__init__(*args, **kwargs)
            self._use_full_vocab_head()
            self.data_collator = preference_collator(self.data_collator)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if "preference" not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, "preference"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            preference = inputs.pop("preference", None)
            if preference is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if self.loss_types != ["sigmoid"] or not self.precompute_ref_logps:
                raise ValueError(
                    "soft labels need loss_type 'sigmoid' and precomputed reference log-probs"
                )
            policy = _FirstForward(model)
            result = super().compute_loss(policy, inputs, return_outputs, num_items_in_batch)
            loss = result[0] if return_outputs else result
            margin = self.beta * _implicit_margin(policy.outputs, inputs)
            loss = loss + soft_label_correction(margin, preference.to(margin.dtype)).mean()
            return (loss, result[1]) if return_outputs else loss

        def _use_full_vocab_head(self) -> None:
            # Runs after TRL patched its own head; the precompute (inside TRL's __init__) calls it
            # first, so the reference scores come from the same code as the policy's.
            if not self._full_vocab_logprobs or getattr(self, "_full_vocab_done", False):
                return
            self._full_vocab_done = True
            policy = self.model.get_base_model() if is_peft_model(self.model) else self.model
            if not plain_head_supported(policy):
                return
            outputs = ("log_probs", "entropy", "mean_logits", "is_top1")
            if self.use_weighting:
                outputs += ("log_sum_sq_probs",)
            add_full_vocab_lm_head(policy, outputs)
            if self.ref_model is not None:
                add_full_vocab_lm_head(getattr(self.ref_model, "module", self.ref_model))

        def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
            self._use_full_vocab_head()
            where = self._reference_cache.get(name)
            if where is None:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            ids = (
                [str(i) for i in dataset["id"]]
                if "id" in dataset.column_names
                else [str(i) for i in range(len(dataset))]
            )
            cached = refcache.load(where, ids)
            if cached is not None:
                self._announce(name, "hit", where)
                chosen, rejected = cached
                return dataset.add_column("ref_chosen_logps", chosen).add_column(
                    "ref_rejected_logps", rejected
                )
            scored = super()._precompute_ref_logps(dataset, name, batch_size)
            if self.accelerator.is_main_process:
                refcache.save(
                    where,
                    ids,
                    scored["ref_chosen_logps"],
                    scored["ref_rejected_logps"],
                    {**self._reference_cache_meta, "split": name},
                )
            self.accelerator.wait_for_everyone()
            self._announce(name, "miss", where)
            return scored

        def _announce(self, name: str, outcome: str, where: Path) -> None:
            self.reference_cache_events.append((name, outcome))
            if self.accelerator.is_main_process:
                done = "reused" if outcome == "hit" else "computed and stored"
                print(f"{REFCACHE_PREFIX}{name} {outcome}: reference log-probs {done} at {where}")

    return PlatformDPOTrainer


class _FirstForward:
    """Calls the model and keeps the outputs of the first call: the policy's log-probs."""

    def __init__(self, model: Any) -> None:
        self.model, self.outputs = model, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        outputs = self.model(*args, **kwargs)
        if self.outputs is None:
            self.outputs = outputs
        return outputs


def _implicit_margin(outputs: Any, inputs: dict):
    """Per pair: (log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))."""
    mask = inputs["completion_mask"][..., 1:]
    logps = (outputs.log_probs[:, -mask.size(1) :] * mask).sum(dim=1)
    chosen, rejected = logps.chunk(2, dim=0)
    return (chosen - inputs["ref_chosen_logps"]) - (rejected - inputs["ref_rejected_logps"])


def _id_columns(path: Path) -> tuple[str, ...]:
    """The columns to load: the record id too when the file has one (the cache is keyed by it)."""
    import pyarrow.parquet as pq

    first = sorted(path.glob("*.parquet"))[0] if path.is_dir() else path
    names = pq.read_schema(first).names
    return (
        ("id", "prompt", "chosen", "rejected")
        if "id" in names
        else ("prompt", "chosen", "rejected")
    )


def reference_cache_files(job: Job, args: Any) -> tuple[dict[str, Path], dict]:
    """{split: cache file} for the job's train (and eval) data, and the key's inputs for the record."""
    import trl

    method_cfg = job.cfg.train.dpo
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    extra = {
        "precision": precision,
        "truncation_mode": args.truncation_mode,
        "trl": trl.__version__,
        "device": job.device,
        "logprobs": "full"
        if use_full_vocab_logprobs(method_cfg.logprobs, job.device)
        else "chunked",
    }
    if method_cfg.soft_labels:
        # Dropping near-0.5 pairs changes which rows a file's positions name.
        extra["labels"] = f"soft, min margin {method_cfg.min_label_margin}"
    files = {}
    for split, path in (("train", job.train_path), ("eval", job.eval_path)):
        if path is not None:
            key = refcache.reference_key(job.model_path, path, method_cfg.max_length, extra=extra)
            files[split] = refcache.cache_path(job.cfg.workspace.root, key)
    return files, {"reference": str(job.model_path), "max_length": method_cfg.max_length, **extra}


def train(job: Job) -> dict:
    """Train job.model_path on prompt/chosen/rejected pairs; return the final metrics."""
    from transformers import AutoTokenizer
    from trl import DPOConfig

    method_cfg = job.cfg.train.dpo
    args = DPOConfig(
        **training_arguments(job, method_cfg),
        beta=method_cfg.beta,
        loss_type=[method_cfg.loss_type],
        label_smoothing=method_cfg.label_smoothing,
        precompute_ref_log_probs=method_cfg.precompute_ref_log_probs or method_cfg.reference_cache,
    )
    train_ds, counts = _load(job, job.train_path, args, "train")
    eval_ds, eval_counts = _load(job, job.eval_path, args, "eval") if job.eval_path else (None, {})
    cache_files, cache_meta = (
        reference_cache_files(job, args) if method_cfg.reference_cache else ({}, {})
    )
    tokenizer = AutoTokenizer.from_pretrained(job.model_path, trust_remote_code=False)
    progress = progress_callback()
    # ref_model=None: with precomputed (cached) reference log-probs or LoRA, TRL loads no
    # reference; otherwise it loads a frozen copy of the starting checkpoint.
    trainer = trainer_class()(
        model=str(job.model_path),
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        callbacks=[progress],
        peft_config=lora.peft_config(method_cfg.lora),
        full_vocab_logprobs=use_full_vocab_logprobs(method_cfg.logprobs, job.device),
        reference_cache=cache_files,
        reference_cache_meta=cache_meta,
    )
    output = trainer.train(resume_from_checkpoint=job.last_checkpoint())
    return finish(job, trainer, output, progress, {**counts, **eval_counts})


def _load(job: Job, path: Path, args, split: str) -> tuple[Any, dict]:
    """The pairs of one split (with `preference` under soft labels) and their label counts."""
    from alignment.methods.soft_labels import SCORE_COLUMNS, with_preferences

    method_cfg = job.cfg.train.dpo
    columns = _id_columns(path)
    if not method_cfg.soft_labels:
        return load_preferences(job, path, args, columns), {}
    dataset = load_preferences(job, path, args, (*columns, *SCORE_COLUMNS))
    with args.main_process_first(desc=f"soft labels {path.name}"):
        labelled, counts = with_preferences(dataset, path, method_cfg.min_label_margin)
    return labelled, counts.as_metrics(split)

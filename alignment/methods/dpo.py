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
    train_ds = load_preferences(job, job.train_path, args, _id_columns(job.train_path))
    eval_ds = (
        load_preferences(job, job.eval_path, args, _id_columns(job.eval_path))
        if job.eval_path
        else None
    )
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
    return finish(job, trainer, output, progress)

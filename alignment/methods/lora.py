"""LoRA (PEFT) wiring shared by every method: the adapter config, and a final save that merges.

With adapters, TRL's preference trainers get the reference for free: the same model with its
adapters disabled. The saved model is a plain transformers checkpoint (adapters merged into a
fresh copy of the base weights), so nothing downstream needs PEFT to load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alignment.config import LoraConfig
    from alignment.train.entry import Job


def peft_config(lora: LoraConfig | None) -> Any:
    """PEFT's LoraConfig for a causal LM from ours; None (full fine-tuning) when lora is None."""
    if lora is None:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def is_adapter_model(model: Any) -> bool:
    """Whether the trainer's model is a PEFT model (adapters on a frozen base)."""
    from accelerate.utils import is_peft_model

    return is_peft_model(model)


def save_merged(job: Job, trainer: Any) -> None:
    """Save the adapters beside the model, then write base + merged adapters to job.model_dir.

    Every rank calls this (under ZeRO-3 saving the adapters gathers their shards). The merge
    runs on rank 0 over a fresh CPU copy of the base, whatever the ZeRO stage was.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir = job.output_dir / "adapter"
    trainer.save_model(str(adapter_dir))
    if trainer.is_world_process_zero():
        base = AutoModelForCausalLM.from_pretrained(
            job.model_path, dtype=torch.float32, trust_remote_code=False
        )
        merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
        merged.save_pretrained(str(job.model_dir))
    trainer.accelerator.wait_for_everyone()

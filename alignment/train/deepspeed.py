"""DeepSpeed configuration from our config, plus the fixes that keep DeepSpeed from compiling on CPU.

The config leaves batch sizes, clipping and bucket sizes to the Hugging Face integration ("auto")
so one source of truth (our method config) sets them. It names no optimizer: the trainer's torch
AdamW is used, so no fused Adam is compiled at run time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alignment.config import DistributedConfig

# Ops that DeepSpeed would JIT-compile with a C++ toolchain on a CPU-only machine: the
# shared-memory all-reduce (every distributed start, minutes cold) and the oneCCL binding.
CPU_JIT_OPS = ("deepspeed_shm_comm", "deepspeed_ccl_comm")


def resolve_device(requested: str) -> str:
    """'cuda' or 'cpu' for the configured device; 'auto' picks cuda when one is visible."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_deepspeed_config(dist: DistributedConfig, device: str) -> dict[str, Any]:
    """A DeepSpeed config dict for the HF Trainer: ZeRO stage and offload from `dist`, the rest "auto"."""
    on_cpu = device == "cpu"
    zero: dict[str, Any] = {
        "stage": dist.zero_stage,
        "overlap_comm": not on_cpu,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
    }
    if dist.zero_stage == 3:
        zero.update(
            {
                "stage3_prefetch_bucket_size": "auto",
                "stage3_param_persistence_threshold": "auto",
                "stage3_max_live_parameters": 1e9,
                "stage3_max_reuse_distance": 1e9,
                # A final save then writes a full, loadable model instead of sharded ZeRO state.
                "stage3_gather_16bit_weights_on_model_save": True,
            }
        )
    if dist.offload and dist.zero_stage >= 2:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": not on_cpu}
        if dist.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": not on_cpu}

    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "zero_optimization": zero,
        "steps_per_print": 1_000_000,
        "wall_clock_breakdown": False,
    }
    if on_cpu:
        config["bf16"] = {"enabled": False}
        config["fp16"] = {"enabled": False}
    else:
        config["bf16"] = {"enabled": "auto"}
    if dist.offload:
        if on_cpu:
            # Offload normally insists on DeepSpeedCPUAdam, which compiles; torch AdamW is fine here.
            config["zero_force_ds_cpu_optimizer"] = False
        else:
            # On GPU nodes the compiled CPU Adam is the point of offloading.
            config["optimizer"] = {
                "type": "AdamW",
                "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"},
            }
    return config


def disable_cpu_jit_ops() -> None:
    """Mark DeepSpeed's CPU comm ops incompatible so that initialisation compiles nothing.

    DeepSpeed builds its shared-memory all-reduce whenever `deepspeed.ops.__compatible_ops__`
    says the op is compatible (deepspeed/comm/torch.py: build_shm_op); gloo does the same job
    without a compiler. Call before `deepspeed.init_distributed` or the first Trainer.
    """
    import deepspeed.ops

    compatible = deepspeed.ops.__compatible_ops__  # probes once (about 0.2 s), then cached
    for name in CPU_JIT_OPS:
        compatible[name] = False


def bound_group_timeouts(timeout: timedelta) -> None:
    """Make `timeout` the default of every process group created from now on.

    DeepSpeed builds its engine's groups with ``new_group`` and no timeout, which falls back to
    torch's module default (30 minutes on gloo, 10 on NCCL), not the world group's: a peer lost
    while the engine starts would hold the job that long.
    """
    import torch.distributed.distributed_c10d as c10d

    c10d.default_pg_timeout = timeout
    c10d.default_pg_nccl_timeout = timeout

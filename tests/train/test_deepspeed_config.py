"""DeepSpeed config building, the CPU no-compile switch, the shipped example configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignment.config import DistributedConfig
from alignment.train.deepspeed import CPU_JIT_OPS, build_deepspeed_config, disable_cpu_jit_ops

INFRA = Path(__file__).resolve().parents[2] / "infra" / "deepspeed"


def test_zero2_on_cpu_is_fp32_with_no_optimizer_block():
    cfg = build_deepspeed_config(DistributedConfig(zero_stage=2), "cpu")
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["bf16"] == {"enabled": False}
    assert "optimizer" not in cfg  # the trainer's torch AdamW: nothing to compile
    assert cfg["train_micro_batch_size_per_gpu"] == "auto"
    assert cfg["gradient_accumulation_steps"] == "auto"
    assert "offload_optimizer" not in cfg["zero_optimization"]


def test_zero3_gathers_weights_for_the_final_save():
    zero = build_deepspeed_config(DistributedConfig(zero_stage=3), "cuda")["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert zero["stage3_prefetch_bucket_size"] == "auto"


def test_offload_on_cpu_keeps_torch_adamw():
    cfg = build_deepspeed_config(DistributedConfig(zero_stage=2, offload=True), "cpu")
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert cfg["zero_force_ds_cpu_optimizer"] is False
    assert "optimizer" not in cfg


def test_offload_on_gpu_uses_deepspeed_cpu_adam_and_bf16_auto():
    cfg = build_deepspeed_config(DistributedConfig(zero_stage=3, offload=True), "cuda")
    assert cfg["optimizer"]["type"] == "AdamW"
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert cfg["bf16"] == {"enabled": "auto"}


@pytest.mark.parametrize("stage", [0, 1])
def test_low_stages_ignore_offload(stage):
    zero = build_deepspeed_config(DistributedConfig(zero_stage=stage, offload=True), "cpu")[
        "zero_optimization"
    ]
    assert zero["stage"] == stage
    assert "offload_optimizer" not in zero


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json", "zero3_offload.json"])
def test_example_configs_are_valid_json_for_the_hf_integration(name):
    cfg = json.loads((INFRA / name).read_text())
    assert cfg["zero_optimization"]["stage"] in (2, 3)
    assert cfg["train_micro_batch_size_per_gpu"] == "auto"


def test_disable_cpu_jit_ops_marks_comm_ops_incompatible():
    import deepspeed.ops

    disable_cpu_jit_ops()
    for name in CPU_JIT_OPS:
        assert deepspeed.ops.__compatible_ops__[name] is False
    from deepspeed.comm.torch import build_shm_op

    assert build_shm_op() is None  # what TorchBackend calls at init: returns without building

"""Real 2-process jobs on CPU: DPO with LoRA and the workspace reference cache (ZeRO-2), KTO (ZeRO-3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignment.config import PipelineConfig
from alignment.train.launch import launch_training


def _config(workspace: Path, zero_stage: int, **train) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {
            "workspace": {"root": str(workspace)},
            "train": {
                "distributed": {"num_processes": 2, "zero_stage": zero_stage, "device": "cpu"},
                **train,
            },
        }
    )


def _assert_loadable_plain_model(model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    assert not (model_dir / "adapter_config.json").exists()  # merged, not an adapter
    model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False)
    assert not any("lora" in name for name, _ in model.named_parameters())


@pytest.mark.slow
@pytest.mark.heavy  # LoRA wiring is unit-tested in the default suite; this is the real run
def test_dpo_lora_job_uses_the_adapter_free_base_as_reference_and_fills_the_cache(
    tiny_model_dir, preference_parquet, tmp_path
):
    lora = {"r": 8, "alpha": 16, "target_modules": "all-linear"}
    cfg = _config(
        tmp_path / "ws",
        2,
        dpo={"learning_rate": 5e-3, "num_train_epochs": 2, "lora": lora},
    )
    result = launch_training(
        "dpo", cfg, tiny_model_dir, preference_parquet, tmp_path / "dpo", on_progress=lambda e: None
    )

    steps = [h for h in result.history if "rewards/margins" in h]
    assert len(steps) == 16
    assert steps[-1]["rewards/margins"] > steps[0]["rewards/margins"] + 0.2, steps
    assert steps[-1]["loss"] < steps[0]["loss"]
    log = result.log_path.read_text()
    assert "@@refcache train miss" in log
    cached = list((tmp_path / "ws" / "cache" / "ref-logps").glob("*.parquet"))
    assert len(cached) == 1
    assert (result.output_dir.parent / "adapter" / "adapter_config.json").is_file()
    _assert_loadable_plain_model(result.output_dir)


@pytest.mark.slow
def test_kto_job_on_unpaired_rows_under_zero3(tiny_model_dir, preference_parquet, tmp_path):
    cfg = _config(tmp_path / "ws", 3, kto={"learning_rate": 2e-3, "num_train_epochs": 1})
    result = launch_training(
        "kto", cfg, tiny_model_dir, preference_parquet, tmp_path / "kto", on_progress=lambda e: None
    )

    steps = [h for h in result.history if "loss" in h]
    assert len(steps) == 16  # 64 pairs -> 128 unpaired rows, batch 4 x 2 processes
    first, last = steps[0], steps[-1]
    assert last["loss"] < first["loss"], steps
    _assert_loadable_plain_model(result.output_dir)


def test_pairs_become_shuffled_desirable_and_undesirable_rows():
    from datasets import Dataset

    from alignment.methods.kto import to_kto_rows

    pairs = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": f"q{i}"}],
             "chosen": [{"role": "assistant", "content": f"good{i}"}],
             "rejected": [{"role": "assistant", "content": f"bad{i}"}]}
            for i in range(8)
        ]
    )  # fmt: skip
    rows = to_kto_rows(pairs, seed=0)
    assert rows.column_names == ["prompt", "completion", "label"]
    assert len(rows) == 16 and sum(rows["label"]) == 8
    for row in rows:
        answer = row["completion"][0]["content"]
        i = row["prompt"][0]["content"][1:]
        assert answer == (f"good{i}" if row["label"] else f"bad{i}")
    assert rows["label"][:8] != [True] * 8  # mixed, so each batch has both kinds
    assert to_kto_rows(pairs, seed=0)["completion"] == rows["completion"]  # deterministic


def test_lora_config_maps_onto_peft():
    from alignment.config import LoraConfig
    from alignment.methods.lora import peft_config

    assert peft_config(None) is None
    cfg = peft_config(LoraConfig(r=4, alpha=8, dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (4, 8, 0.1)
    assert set(cfg.target_modules) == {"q_proj", "v_proj"} and cfg.task_type == "CAUSAL_LM"

"""Soft preference labels: the soft Bradley-Terry loss, the labels read from records, and a real
DPO job in which pairs at p = 0.5 leave the policy where it started."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from alignment.errors import SoftLabelError
from alignment.methods.losses import soft_label_correction, soft_preference_loss
from alignment.methods.soft_labels import preference_probability, with_preferences


def _grad(margin: float, p: float) -> float:
    d = torch.tensor(margin, requires_grad=True)
    soft_preference_loss(d, torch.tensor(p)).backward()
    return d.grad.item()


def test_a_pair_at_one_half_gives_no_gradient_where_the_model_is_indifferent():
    assert _grad(0.0, 0.5) == 0.0
    # elsewhere it only pulls the margin back to 0, by the same amount from either side
    assert _grad(1.3, 0.5) > 0 and _grad(-1.3, 0.5) < 0
    assert _grad(1.3, 0.5) == pytest.approx(-_grad(-1.3, 0.5))
    # a hard label keeps pushing at the same point
    assert _grad(0.0, 1.0) == pytest.approx(-0.5)


def test_the_gradient_is_sigmoid_of_the_margin_minus_p():
    for margin in (-2.0, -0.3, 0.0, 0.7, 3.0):
        for p in (0.0, 0.2, 0.5, 0.9, 1.0):
            expected = torch.sigmoid(torch.tensor(margin)).item() - p
            assert _grad(margin, p) == pytest.approx(expected, abs=1e-6)


def test_a_hard_label_is_the_ordinary_loss_and_the_correction_makes_it_soft():
    generator = torch.Generator().manual_seed(0)
    margin = 3 * torch.randn(64, generator=generator)
    p = torch.rand(64, generator=generator)
    torch.testing.assert_close(soft_preference_loss(margin, torch.ones(64)), -F.logsigmoid(margin))
    torch.testing.assert_close(
        soft_preference_loss(margin, torch.zeros(64)), -F.logsigmoid(-margin)
    )
    hard = -F.logsigmoid(margin)
    torch.testing.assert_close(
        hard + soft_label_correction(margin, p), soft_preference_loss(margin, p)
    )


def test_preference_probability_of_a_record():
    assert preference_probability(0.8, 0.2) == pytest.approx(0.8)
    assert preference_probability(None, None) == 1.0  # a hard label
    assert preference_probability(0.8, None) is None
    assert preference_probability(7.0, 3.0) is None  # ratings, not a probability
    assert preference_probability(0.6, 0.6) is None


def _dataset(scores):
    from datasets import Dataset

    rows = [
        {
            "prompt": f"q{i}",
            "chosen": "a",
            "rejected": "b",
            "score_chosen": sc,
            "score_rejected": sr,
        }
        for i, (sc, sr) in enumerate(scores)
    ]
    return Dataset.from_list(rows)


def test_pairs_near_one_half_are_dropped_and_counted():
    scores = [(0.9, 0.1), (0.52, 0.48), (0.45, 0.55), (None, None), (0.55, 0.45)]
    labelled, counts = with_preferences(_dataset(scores), Path("x.parquet"), 0.05)
    assert labelled["preference"] == pytest.approx([0.9, 0.45, 1.0, 0.55])
    assert "score_chosen" not in labelled.column_names
    assert (counts.pairs, counts.dropped, counts.hard) == (5, 1, 1)
    kept_all, counts = with_preferences(_dataset(scores), Path("x.parquet"), 0.0)
    assert len(kept_all) == 5 and counts.dropped == 0


def test_scores_that_are_not_a_probability_name_the_file_and_row():
    with pytest.raises(SoftLabelError, match=r"x\.parquet: row 1: .*sum"):
        with_preferences(_dataset([(0.9, 0.1), (8.0, 2.0)]), Path("x.parquet"), 0.05)
    with pytest.raises(SoftLabelError, match=r"within 0\.1 of 0\.5"):
        with_preferences(_dataset([(0.55, 0.45)]), Path("x.parquet"), 0.1)


def test_soft_labels_refuse_losses_without_a_per_pair_label():
    from alignment.config import load_config
    from alignment.errors import ConfigError

    with pytest.raises(ConfigError, match="conservative DPO"):
        load_config(None, ["train.dpo.soft_labels=true", "train.dpo.loss_type=ipo"])
    with pytest.raises(ConfigError, match="choose one"):
        load_config(None, ["train.reward.soft_labels=true", "train.reward.use_score_margin=true"])


def _pairs(path: Path, p: float, n: int = 6) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {
            "id": f"r{i}",
            "prompt": [{"role": "user", "content": f"What is {i} plus {i % 3}?"}],
            "chosen": [{"role": "assistant", "content": f"{i} plus {i % 3} is {i + i % 3}."}],
            "rejected": [{"role": "assistant", "content": "I refuse to answer."}],
            "score_chosen": p,
            "score_rejected": 1 - p,
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _max_weight_change(before: Path, after: Path) -> float:
    from safetensors.torch import load_file

    start, end = load_file(before / "model.safetensors"), load_file(after / "model.safetensors")
    return max((end[k] - start[k]).abs().max().item() for k in start)


@pytest.mark.slow
def test_dpo_job_with_soft_labels_at_one_half_leaves_the_policy_unchanged(tiny_model_dir, tmp_path):
    from alignment.config import PipelineConfig
    from alignment.train.launch import launch_training

    data = _pairs(tmp_path / "pairs.parquet", 0.5)

    def run(name: str, soft: bool):
        dpo = {"learning_rate": 5e-3, "per_device_train_batch_size": 1, "max_steps": 3,
               "soft_labels": soft, "min_label_margin": 0.0}  # fmt: skip
        cfg = PipelineConfig.model_validate(
            {
                "workspace": {"root": str(tmp_path / name / "ws")},
                "train": {
                    "distributed": {"num_processes": 1, "zero_stage": 2, "device": "cpu"},
                    "dpo": dpo,
                },
            }
        )
        return launch_training(
            "dpo", cfg, tiny_model_dir, data, tmp_path / name, on_progress=lambda e: None
        )

    with ThreadPoolExecutor(2) as pool:
        soft_job, hard_job = pool.submit(run, "soft", True), pool.submit(run, "hard", False)
        soft, hard = soft_job.result(), hard_job.result()

    assert soft.metrics["train_label_pairs"] == 6 and soft.metrics["global_step"] == 3
    # p = 0.5 at the reference (the DPO margin is 0 there): no gradient, so no step moves it
    assert _max_weight_change(tiny_model_dir, soft.output_dir) == 0.0
    # the same pairs as hard labels move the policy towards the chosen answers
    assert _max_weight_change(tiny_model_dir, hard.output_dir) > 1e-3
    losses = [h["loss"] for h in soft.history if "loss" in h]
    assert losses == pytest.approx([0.6931] * 3, abs=1e-4)


def test_the_cai_rl_phase_trains_on_soft_labels_unless_told_not_to():
    from alignment.cai.feedback import rl_training_config
    from alignment.config import load_config
    from alignment.errors import ConfigError

    rl = rl_training_config(load_config(None))
    assert rl.train.dpo.soft_labels and rl.train.reward.soft_labels
    assert not rl_training_config(
        load_config(None, ["cai.soft_labels=false"])
    ).train.dpo.soft_labels
    with pytest.raises(ConfigError, match=r"train\.dpo.*cai\.soft_labels=false"):
        rl_training_config(load_config(None, ["train.dpo.loss_type=hinge"]))

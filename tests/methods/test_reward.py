"""Reward model: a 2-process ZeRO-2 RewardTrainer run on the fixed tiny task, and its margin."""

from __future__ import annotations

import pytest

from alignment.methods.reward import score_margin


def test_score_margin_is_the_score_difference_or_zero():
    assert score_margin({"score_chosen": 0.9, "score_rejected": 0.4}) == pytest.approx(
        {"margin": 0.5}
    )
    assert score_margin({"score_chosen": 0.9, "score_rejected": None}) == {"margin": 0.0}
    assert score_margin({}) == {"margin": 0.0}


@pytest.mark.slow
def test_reward_model_learns_the_pairs_and_saves_a_classifier(reward_run):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    losses = [h["loss"] for h in reward_run.history if "loss" in h]
    assert len(losses) == 16  # 64 pairs x 2 epochs / (4 per process x 2 processes)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2, losses
    # on prompts it never trained on: the evasive half is learned; the wrong sums, which a
    # 100k-parameter model cannot check, stay near chance (untrained: 0.5 overall)
    assert reward_run.metrics["eval_accuracy"] >= 0.65, reward_run.metrics

    model = AutoModelForSequenceClassification.from_pretrained(reward_run.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(reward_run.output_dir)
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None
    prompt = [{"role": "user", "content": "What is 2 plus 3?"}]
    ids = [
        tokenizer.apply_chat_template(
            [*prompt, {"role": "assistant", "content": answer}], return_dict=False
        )
        for answer in ("2 plus 3 is 5.", "I refuse to answer.")
    ]
    with torch.no_grad():
        chosen, rejected = (model(input_ids=torch.tensor([i])).logits.item() for i in ids)
    assert chosen > rejected


def test_soft_labels_train_the_reward_model_on_each_pairs_probability(tiny_model_dir, tmp_path):
    import math

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RewardConfig

    from alignment.methods.reward import trainer_class

    p = [1.0, 0.8, 0.5, 0.6]
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus 1?"}],
            "chosen": [{"role": "assistant", "content": f"{i} plus 1 is {i + 1}."}],
            "rejected": [{"role": "assistant", "content": "I refuse to answer."}],
            "preference": q,
        }
        for i, q in enumerate(p)
    ]
    args = RewardConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, report_to="none",
        use_cpu=True, bf16=False, disable_tqdm=True, model_init_kwargs={"dtype": "float32"},
    )  # fmt: skip
    trainer = trainer_class()(
        model=str(tiny_model_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    loader = trainer.get_train_dataloader()  # drops unused columns, as in training
    batch = next(iter(loader))
    order = batch["preference"].tolist()
    assert sorted(order) == pytest.approx(sorted(p))
    loss, outputs = trainer.compute_loss(trainer.model, dict(batch), return_outputs=True)
    chosen, rejected = outputs.logits.squeeze(-1).chunk(2)
    margins = (chosen - rejected).tolist()
    assert max(abs(m) for m in margins) > 1e-3
    expected = (
        sum(
            -(q * math.log(1 / (1 + math.exp(-d))) + (1 - q) * math.log(1 / (1 + math.exp(d))))
            for q, d in zip(order, margins, strict=True)
        )
        / 4
    )
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    hard = {k: v for k, v in batch.items() if k != "preference"}
    assert trainer.compute_loss(trainer.model, hard).item() == pytest.approx(
        sum(math.log(1 + math.exp(-d)) for d in margins) / 4, abs=1e-5
    )

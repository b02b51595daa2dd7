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

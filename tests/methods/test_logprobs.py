"""The log-prob maths on tensors whose answers are known, and score_pairs on the tiny model."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from alignment.methods.logprobs import (  # noqa: E402
    dpo_implicit_rewards,
    encode_completion,
    score_pairs,
    sequence_logprobs,
)


def test_sequence_logprobs_sums_completion_tokens_only():
    # Vocabulary of 4; uniform logits give log(1/4) per scored token.
    logits = torch.zeros(2, 5, 4)
    labels = torch.tensor([[0, 1, 2, 3, 0], [1, 1, 1, 1, 1]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])
    out = sequence_logprobs(logits, labels, mask)
    assert out.shape == (2,)
    assert torch.allclose(out, torch.tensor([3 * math.log(0.25), 2 * math.log(0.25)]))


def test_sequence_logprobs_uses_the_previous_position():
    # Position t's logits predict token t + 1: make position 0 certain of token 2.
    logits = torch.full((1, 2, 3), -1e4)
    logits[0, 0, 2] = 0.0
    labels = torch.tensor([[0, 2]])
    mask = torch.tensor([[0, 1]])
    assert sequence_logprobs(logits, labels, mask).item() == pytest.approx(0.0, abs=1e-5)
    # Padding ids outside the vocabulary under a zero mask are ignored.
    labels = torch.tensor([[0, -100]])
    assert sequence_logprobs(logits, labels, torch.tensor([[0, 0]])).item() == 0.0


def test_dpo_implicit_rewards():
    chosen, rejected = dpo_implicit_rewards(
        torch.tensor([-1.0, -2.0]),
        torch.tensor([-3.0, -1.0]),
        torch.tensor([-2.0, -2.0]),
        torch.tensor([-2.0, -2.0]),
        beta=0.5,
    )
    assert torch.allclose(chosen, torch.tensor([0.5, 0.0]))
    assert torch.allclose(rejected, torch.tensor([-0.5, 0.5]))


def _records():
    return [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus 1?"}],
            "chosen": [{"role": "assistant", "content": f"{i} plus 1 is {i + 1}."}],
            "rejected": [{"role": "assistant", "content": "I refuse to answer, sorry."}],
        }
        for i in range(5)
    ]


def test_encode_completion_marks_the_answer_and_truncates_the_prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    record = _records()[0]
    ids, start = encode_completion(tok, record["prompt"], record["chosen"], max_length=256)
    assert tok.decode(ids[start:]).startswith("0 plus 1 is 1.")
    short, short_start = encode_completion(
        tok, record["prompt"], record["chosen"], max_length=len(ids) - 2
    )
    assert len(short) == len(ids) - 2
    assert short[short_start:] == ids[start:]  # the answer survives, the prompt lost its head


def test_score_pairs_matches_a_single_unpadded_forward(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    records = _records()
    chosen, rejected = score_pairs(model, tok, records, max_length=64, batch_size=3)
    assert chosen.shape == rejected.shape == (len(records),)
    assert bool((chosen < 0).all()) and bool((rejected < 0).all())
    # Padding in a batch must not change a sequence's score.
    ids, start = encode_completion(tok, records[1]["prompt"], records[1]["rejected"], 64)
    input_ids = torch.tensor([ids])
    mask = torch.zeros_like(input_ids)
    mask[0, start:] = 1
    with torch.no_grad():
        alone = sequence_logprobs(model(input_ids=input_ids).logits, input_ids, mask)
    assert rejected[1].item() == pytest.approx(alone.item(), abs=1e-4)


def test_score_pairs_accepts_records_read_with_pandas(tiny_model_dir, tmp_path):
    # pandas hands back message lists as numpy arrays of dicts
    import pandas as pd
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    pd.DataFrame(_records()).to_parquet(tmp_path / "pairs.parquet")
    from_pandas = pd.read_parquet(tmp_path / "pairs.parquet").to_dict("records")
    assert not isinstance(from_pandas[0]["prompt"], list)
    got = score_pairs(model, tok, from_pandas, max_length=64, batch_size=4)
    want = score_pairs(model, tok, _records(), max_length=64, batch_size=4)
    assert torch.allclose(got[0], want[0]) and torch.allclose(got[1], want[1])

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


METRICS = ("log_probs", "entropy", "mean_logits", "is_top1")


def _head_batch(tiny_model_dir):
    """Two chosen/rejected-like sequences of the tiny model, labels -100 outside the answers."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = [
        encode_completion(tok, r["prompt"], r[side], 64)
        for r in _records()[:2]
        for side in ("chosen", "rejected")
    ]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), tok.pad_token_id or 0)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for i, (ids, start) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention[i, : len(ids)] = 1
        labels[i, start : len(ids)] = input_ids[i, start : len(ids)]
    return input_ids, attention, labels


def _perturbed(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # off the checkpoint, so the probabilities are not near-uniform
        for _, param in sorted(model.named_parameters()):
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    model.train()
    return model


def test_full_vocab_head_gives_the_plain_log_softmax_loss_gradients_and_metrics(tiny_model_dir):
    from alignment.methods.logprobs import add_full_vocab_lm_head

    input_ids, attention, labels = _head_batch(tiny_model_dir)
    weights = torch.linspace(0.5, 2.0, input_ids.shape[0])  # a loss that weighs rows differently

    # the plain path: full logits from the model's own forward, log-softmax, gather
    plain = _perturbed(tiny_model_dir)
    logits = plain(input_ids=input_ids, attention_mask=attention).logits[:, :-1].float()
    targets = labels[:, 1:]
    scored = targets != -100
    token_logps = torch.log_softmax(logits, dim=-1)
    picked = token_logps.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * scored
    plain_loss = -(picked.sum(1) * weights).sum()
    plain_loss.backward()

    patched = _perturbed(tiny_model_dir)
    add_full_vocab_lm_head(patched, METRICS)
    out = patched(input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True)
    loss = -(out.log_probs.sum(1) * weights).sum()
    loss.backward()

    assert abs(plain_loss.item()) > 1.0
    assert loss.item() == pytest.approx(plain_loss.item(), rel=1e-6)
    torch.testing.assert_close(out.log_probs, picked, atol=1e-6, rtol=1e-6)
    for (name, want), (_, got) in zip(
        sorted(plain.named_parameters()), sorted(patched.named_parameters()), strict=True
    ):
        assert got.grad is not None, name
        torch.testing.assert_close(got.grad, want.grad, atol=1e-6, rtol=1e-5, msg=name)
    with torch.no_grad():
        probs = token_logps.exp()
        entropy = -(probs * token_logps).sum(-1) * scored
        top1 = (logits.argmax(-1) == targets) & scored
    torch.testing.assert_close(out.entropy, entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.mean_logits, logits.detach().mean(-1) * scored)
    assert torch.equal(out.is_top1, top1)
    assert not out.entropy.requires_grad  # logged, never trained on


def test_full_vocab_head_passes_over_the_vocabulary_as_often_as_the_floor(tiny_model_dir):
    """The softmax the backward needs is the one the entropy needs: one exponential pass in the
    forward, none in the backward beyond it. Counts the ops over [scored positions x vocabulary]
    tensors in one forward + backward, so a metric or a second exponential cannot come back."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from alignment.methods.logprobs import add_full_vocab_lm_head

    input_ids, attention, labels = _head_batch(tiny_model_dir)
    model = _perturbed(tiny_model_dir)
    add_full_vocab_lm_head(model, METRICS)
    full_vocab = int((labels[:, 1:] != -100).sum()) * model.config.vocab_size

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [
                t
                for t in (*args, *(kwargs or {}).values(), out)
                if isinstance(t, torch.Tensor) and t.numel() == full_vocab
            ]
            if tensors:
                self.ops.append(func.overloadpacket.__name__)
            return out

    with Count() as count:
        out = model(
            input_ids=input_ids, attention_mask=attention, labels=labels, fused_lm_head=True
        )
        out.log_probs.sum().backward()
    passes = [op for op in count.ops if op not in ("unsqueeze", "view", "t", "detach")]
    # The floor's passes: head matmul, log-softmax, gather; backward: a zero gradient filled
    # (new_zeros) and scattered into, the log-softmax backward (a second exponential), the head's
    # two gradient matmuls. Here the exponential of the forward serves the entropy and the
    # backward, which is one multiply; the metrics read the vocabulary once each (dot product,
    # mean, argmax) and write nothing of its size.
    forward = ["mm", "_log_softmax", "gather", "exp", "bmm", "mean", "argmax"]
    backward = ["mul", "scatter_add_", "mm", "mm"]
    assert sorted(passes) == sorted(forward + backward), count.ops

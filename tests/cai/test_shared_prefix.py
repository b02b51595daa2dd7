"""The judge's shared-prefix path: the verdicts of the plain path, with fewer tokens forwarded."""

from __future__ import annotations

import pytest

from alignment.cai.feedback import ANSWER_PREFIX, judge_question, judge_shots, verdict_probabilities
from alignment.cai.shared_prefix import plan_prefixes
from alignment.constitution import load_constitution

PROMPTS = [
    "What is 2 plus 2?",
    [
        {"role": "system", "content": "Be brief. <|end|> is a token, <|assistant|> too."},
        {"role": "user", "content": "Où est 東京? 🙂 مرحبا e\u0301"},
        {"role": "assistant", "content": "In Japan (A) or (B"},
        {"role": "user", "content": "And Paris?"},
    ],
    "How do I get into my neighbour's house? I locked myself out and it is raining hard.",
    "",
    "Why is the sky blue?",
]
A = ["2 plus 2 is 4.", "France.<|assistant|>", "Call a locksmith.", "", "Scattering " * 12]
B = ["I refuse to answer.", "(B) Spain", "Sure, break the window.", "x", "Blue light."]


def _both_orders(shots=()):
    """Both orders of every pair (mixed lengths, multi-turn, empty answers), principle by pair."""
    principles = load_constitution().principles
    return [
        judge_question(p, x, y, principles[i % len(principles)], shots)
        for first, second in ((A, B), (B, A))
        for i, (p, x, y) in enumerate(zip(PROMPTS, first, second, strict=True))
    ]


@pytest.mark.parametrize("with_shots", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_shared_prefix_reads_the_plain_verdicts(tiny_lm, with_shots, batch_size):
    from alignment.cai.feedback import _full_contexts

    model, tokenizer = tiny_lm
    shots = judge_shots(load_constitution(), 1) if with_shots else ()
    conversations = _both_orders(shots)
    suffixes = [ANSWER_PREFIX] * len(conversations)
    # the path is really taken: a common head, and each pair's two orders share a further part
    ids = [ids for ids, _, _ in _full_contexts(tokenizer, conversations, suffixes)]
    plan = plan_prefixes(ids)
    assert plan.head > 0
    assert any(len(members) > 1 and shared > 0 for shared, members in plan.groups)
    assert plan.tokens_forwarded([len(r) for r in ids]) < sum(len(r) for r in ids)
    plain = verdict_probabilities(
        model, tokenizer, conversations, suffixes, batch_size, shared_prefix=False
    )
    shared = verdict_probabilities(model, tokenizer, conversations, suffixes, batch_size)
    assert shared == pytest.approx(plain, abs=1e-4)
    assert len(set(round(p, 4) for p in plain)) > 1  # the verdicts differ from pair to pair


def test_contexts_over_max_length_and_uncacheable_models_are_read_the_plain_way(
    tiny_lm, monkeypatch
):
    import alignment.cai.shared_prefix as shared_prefix
    from alignment.cai.feedback import _full_contexts

    model, tokenizer = tiny_lm
    conversations = _both_orders()
    suffixes = [ANSWER_PREFIX] * len(conversations)
    lengths = [len(ids) for ids, _, _ in _full_contexts(tokenizer, conversations, suffixes)]
    max_length = sorted(lengths)[len(lengths) // 2]  # about half the contexts are truncated
    seen = []
    real = shared_prefix.shared_prefix_logits

    def spy(model, ids, *args, **kwargs):
        seen.append([len(r) for r in ids])
        return real(model, ids, *args, **kwargs)

    monkeypatch.setattr(shared_prefix, "shared_prefix_logits", spy)
    plain = verdict_probabilities(
        model, tokenizer, conversations, suffixes, 3, max_length, shared_prefix=False
    )
    assert seen == []
    got = verdict_probabilities(model, tokenizer, conversations, suffixes, 3, max_length)
    assert got == pytest.approx(plain, abs=1e-4)
    assert seen == [[n for n in lengths if n <= max_length]]  # only those that fit whole
    assert 0 < len(seen[0]) < len(lengths)
    # a model whose cache this path cannot reuse (here: sliding-window layers) reads all plainly
    seen.clear()
    monkeypatch.setattr(shared_prefix, "supports_shared_prefix", lambda model: False)
    got = verdict_probabilities(model, tokenizer, conversations, suffixes, 3, max_length)
    assert seen == [] and got == pytest.approx(plain, abs=1e-4)


def test_a_sliding_window_model_is_not_given_the_shared_prefix_path(tiny_lm):
    import copy

    from alignment.cai.shared_prefix import supports_shared_prefix

    model, _ = tiny_lm
    assert supports_shared_prefix(model)
    sliding = copy.copy(model)
    sliding.config = copy.deepcopy(model.config)
    sliding.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    sliding.config.sliding_window = 8
    assert not supports_shared_prefix(sliding)


def test_plan_shares_the_common_head_and_each_pairs_prefix():
    contexts = [
        [1, 2, 3, 10, 11, 20, 21],  # pair 1, first order
        [1, 2, 3, 10, 11, 21, 20],  # pair 1, second order
        [1, 2, 3, 12, 20],  # pair 2
        [1, 2, 3, 12, 21],
        [1, 2],  # a context that is all head keeps a tail token
    ]
    plan = plan_prefixes(contexts)
    assert plan.head == 1
    assert sorted(sorted(m) for _, m in plan.groups) == [[0, 1], [2, 3], [4]]
    assert dict((tuple(sorted(m)), s) for s, m in plan.groups) == {(0, 1): 4, (2, 3): 3, (4,): 0}
    # head 1 + pair 1: 4 + 2 + 2, pair 2: 3 + 1 + 1, last: 0 + 1
    assert plan.tokens_forwarded([len(c) for c in contexts]) == 1 + 8 + 5 + 1
    with pytest.raises(ValueError, match="at least one token"):
        plan_prefixes([[1], []])

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

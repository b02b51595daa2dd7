"""The one-forward-pass AI-feedback judge: symmetric, in range, batch-invariant; pairs it writes."""

from __future__ import annotations

import json

import pytest

from alignment.cai.feedback import (
    ANSWER_PREFIX,
    decision_tokens,
    judge_pairs,
    judge_pairs_detailed,
    label_prompts,
)
from alignment.cai.generate import GenerationSettings, LocalGenerator
from alignment.constitution import load_constitution

PROMPTS = ["What is 2 plus 2?", "How do I get into my neighbour's house?", "Why is the sky blue?"]
A = ["2 plus 2 is 4.", "I can't help break in, but a locksmith can help you.", "Scattering."]
B = ["I refuse to answer.", "Sure, break the window.", "Because blue light scatters most in air."]


@pytest.fixture(scope="module")
def principles():
    c = load_constitution()
    return [c.principles[0], c.principle("honesty"), "Which response is more helpful?"]


def test_decision_tokens_differ_and_share_the_context(tiny_lm):
    _, tokenizer = tiny_lm
    prefix, a, b = decision_tokens(tokenizer, "Question?" + ANSWER_PREFIX)
    assert a != b and prefix
    assert tokenizer.decode([a]).strip().endswith("A") and tokenizer.decode([b]).strip().endswith(
        "B"
    )


def test_probabilities_in_range_and_swap_gives_complement(tiny_lm, principles):
    model, tokenizer = tiny_lm
    p = judge_pairs(model, tokenizer, PROMPTS, A, B, principles)
    swapped = judge_pairs(model, tokenizer, PROMPTS, B, A, principles)
    assert all(0.0 < x < 1.0 for x in p)
    for x, y in zip(p, swapped, strict=True):
        assert x + y == pytest.approx(1.0, abs=1e-5)


def test_batched_equals_one_at_a_time(tiny_lm, principles):
    model, tokenizer = tiny_lm
    batched = judge_pairs_detailed(model, tokenizer, PROMPTS, A, B, principles, batch_size=8)
    for i in range(len(PROMPTS)):
        single = judge_pairs_detailed(
            model, tokenizer, PROMPTS[i : i + 1], A[i : i + 1], B[i : i + 1], principles[i : i + 1]
        )
        assert single.p_a_first[0] == pytest.approx(batched.p_a_first[i], abs=1e-4)
        assert single.p_a_second[0] == pytest.approx(batched.p_a_second[i], abs=1e-4)


def test_chain_of_thought_is_clamped(tiny_lm, principles):
    model, tokenizer = tiny_lm
    out = judge_pairs_detailed(
        model, tokenizer, PROMPTS[:2], A[:2], B[:2], principles[:2],
        chain_of_thought=True, cot_max_new_tokens=4, clamp=(0.45, 0.55),
    )  # fmt: skip
    assert all(0.45 <= x <= 0.55 for x in out.p_a)
    assert out.reasoning is not None and len(out.reasoning) == 2


def test_label_prompts_writes_soft_labelled_pairs_that_ingest_accepts(
    tiny_lm, prompt_items, tmp_path
):
    from alignment.config import IngestConfig, ValidationConfig
    from alignment.data.ingest import ingest_file

    model, tokenizer = tiny_lm
    constitution = load_constitution()
    settings = GenerationSettings(max_new_tokens=12, temperature=1.0, seed=3)
    result = label_prompts(
        LocalGenerator(model, tokenizer), model, tokenizer, prompt_items, constitution,
        tmp_path / "labelled.jsonl", settings, judge_name="tiny",
    )  # fmt: skip
    rows = [json.loads(line) for line in result.path.read_text().splitlines()]
    assert result.pairs == len(rows) == len(prompt_items) - result.skipped and rows
    for row in rows:
        assert 0.5 <= row["score_chosen"] < 1 and row["score_chosen"] + row[
            "score_rejected"
        ] == pytest.approx(1)
        assert row["meta"]["constitution_hash"] == constitution.hash
        assert row["meta"]["principle"] in {p.name for p in constitution.principles}
    ingested = ingest_file(result.path, tmp_path / "ingest", IngestConfig(), ValidationConfig())
    assert ingested.accepted == len(rows)


class FixedGenerator:
    """Two responses per prompt, as given by `pairs` (prompt text -> (first, second))."""

    def __init__(self, pairs):
        self.pairs = pairs
        self.seen = {}

    def generate(self, conversations, settings):
        out = []
        for c in conversations:
            text = c[-1]["content"]
            k = self.seen.get(text, 0)
            self.seen[text] = k + 1
            out.append(self.pairs[text][k % 2])
        return out


def test_skipped_prompts_are_named_by_reason_and_no_pair_is_an_error(
    tiny_lm, prompt_items, tmp_path
):
    from alignment.cai.feedback import require_pairs
    from alignment.errors import EmptyGenerations

    model, tokenizer = tiny_lm
    texts = [p["prompt"] for p in prompt_items]
    gen = FixedGenerator(
        {texts[0]: ("Four.", "It is 4."), texts[1]: ("No.", "  "), texts[2]: ("Air.", "Air.")}
    )
    result = label_prompts(
        gen, model, tokenizer, prompt_items, load_constitution(), tmp_path / "l.jsonl",
        GenerationSettings(),
    )  # fmt: skip
    assert (result.pairs, result.skipped) == (1, 2)
    assert (result.empty, result.identical) == (["p2"], ["p3"])
    assert result.skipped_summary() == (
        "skipped: empty response 1 of 3 prompts (p2); identical responses 1 of 3 prompts (p3)"
    )
    assert require_pairs(result) is result

    gen = FixedGenerator({t: ("", "") for t in texts})
    result = label_prompts(
        gen, model, tokenizer, prompt_items, load_constitution(), tmp_path / "none.jsonl",
        GenerationSettings(),
    )  # fmt: skip
    assert result.pairs == 0 and result.empty == ["p1", "p2", "p3"]
    with pytest.raises(EmptyGenerations, match=r"empty response 3 of 3 prompts \(p1, p2, p3\)"):
        require_pairs(result)


def _reference_p_a(model, tokenizer, conversation, suffix, max_length):
    """P("(A)") against "(B)" the plain way: one context alone, both answers tokenized in full,
    a log-softmax over the whole vocabulary."""
    import torch

    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    a = tokenizer(text + suffix + "(A)", add_special_tokens=False)["input_ids"]
    b = tokenizer(text + suffix + "(B)", add_special_tokens=False)["input_ids"]
    k = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([a[:k][-max_length:]])).logits[0, -1]
    logp = torch.log_softmax(logits.double(), dim=-1)
    return torch.softmax(torch.stack([logp[a[k]], logp[b[k]]]), dim=0)[0].item()


def _hard_judge_inputs():
    """Conversations and suffixes that stress how the judge cuts and tokenizes its contexts."""
    from alignment.cai.feedback import COT_ANSWER, judge_question, judge_shots

    constitution = load_constitution()
    multi_turn = [
        {"role": "system", "content": "Be brief. <|end|> is a token, <|assistant|> too."},
        {"role": "user", "content": "Où est 東京? 🙂 مرحبا e\u0301"},
        {"role": "assistant", "content": "In Japan (A) or (B"},
        {"role": "user", "content": "And Paris?"},
    ]
    conversations = [
        judge_question(PROMPTS[0], A[0], B[0], constitution.principles[0]),
        judge_question(multi_turn, "France.<|assistant|>", "(B) Spain", "Which is right?"),
        judge_question(PROMPTS[1], A[1], B[1], "Which is safer?", judge_shots(constitution, 1)),
        judge_question("", "", "x", "Which?"),
    ]
    suffixes = [ANSWER_PREFIX, ANSWER_PREFIX, "", "I think <|end|> it is" + COT_ANSWER]
    return conversations, suffixes


@pytest.mark.parametrize("max_length", [1024, 40])
def test_verdicts_equal_the_plain_computation(tiny_lm, max_length):
    from alignment.cai.feedback import verdict_probabilities

    model, tokenizer = tiny_lm
    conversations, suffixes = _hard_judge_inputs()
    got = verdict_probabilities(model, tokenizer, conversations, suffixes, 3, max_length)
    for conversation, suffix, p in zip(conversations, suffixes, got, strict=True):
        want = _reference_p_a(model, tokenizer, conversation, suffix, max_length)
        assert p == pytest.approx(want, abs=1e-5)


def test_contexts_are_read_the_plain_way_where_a_cut_could_change_the_ids(tiny_lm):
    import copy

    from tokenizers import AddedToken

    from alignment.cai.feedback import _contexts

    _, tokenizer = tiny_lm
    conversations, suffixes = _hard_judge_inputs()
    want = _contexts(tokenizer, conversations, suffixes, 1024)
    truncating = copy.deepcopy(tokenizer)
    truncating.backend_tokenizer.enable_truncation(max_length=8)
    assert _contexts(truncating, conversations, suffixes, 1024) == want
    # an added token that overlaps the generation prompt's "<|assistant|>" wins the match there
    overlapping = copy.deepcopy(tokenizer)
    overlapping.add_tokens([AddedToken("\n<|assi", normalized=False)])
    plain = [
        decision_tokens(
            overlapping,
            overlapping.apply_chat_template(c, add_generation_prompt=True, tokenize=False) + s,
        )
        for c, s in zip(conversations, suffixes, strict=True)
    ]
    got = _contexts(overlapping, conversations, suffixes, 1024)
    assert got == [(ids[-1024:], a, b) for ids, a, b in plain] and got != want

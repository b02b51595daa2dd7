"""RL phase: AI feedback. A feedback model judges pairs of responses by a principle.

The judge reads its verdict without generating: the feedback model is asked the principle's
multiple-choice question with options (A) and (B), its answer is started for it ("The answer
is: "), and one forward pass gives the next-token log-probabilities of "(A" and "(B". Their
normalised ratio is P(A). Asking again with the options swapped and averaging,
``p = (P_AB(A) + 1 - P_BA(A)) / 2``, cancels position bias and makes the judgement exactly
antisymmetric: swapping the responses gives ``1 - p``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from alignment.cai.generate import (
    GenerationSettings,
    Generator,
    encode_chat,
    generate_ids,
    left_pad,
    pad_id,
)
from alignment.config import PipelineConfig
from alignment.constitution import Constitution, Principle
from alignment.errors import AlignmentError, ConfigError, EmptyGenerations

Prompt = str | Sequence[dict]

JUDGE_QUESTION = (
    "Consider the following conversation between a person and an AI assistant.\n\n"
    "{conversation}\n\n"
    "{question}\n\n"
    "Options:\n(A) {a}\n\n(B) {b}\n\n"
    "Answer with (A) or (B)."
)
ANSWER_PREFIX = "The answer is: "
COT_PREFIX = "Let's think step by step: "
COT_ANSWER = "\nSo the answer is: "


class JudgeError(AlignmentError):
    """The judge cannot read a verdict with this tokenizer or these inputs."""


@dataclass
class Judgement:
    """P(A preferred) per pair, and the two one-order probabilities it averages."""

    p_a: list[float]
    p_a_first: list[float]  # P(A) with A shown first
    p_a_second: list[float]  # P(A) with A shown second, i.e. 1 - P("(A)") of the swapped ask
    reasoning: list[tuple[str, str]] | None = None  # chain of thought of each order


def render_conversation(prompt: Prompt) -> str:
    """The conversation so far as plain text, one 'Person:'/'Assistant:' line per turn."""
    if isinstance(prompt, str):
        return f"Person: {prompt}"
    names = {"user": "Person", "assistant": "Assistant", "system": "System"}
    return "\n".join(f"{names.get(m['role'], m['role'])}: {m['content']}" for m in prompt)


def judge_question(
    prompt: Prompt, first: str, second: str, principle: Principle | str, shots: Sequence[dict] = ()
) -> list[dict]:
    """The multiple-choice question for the feedback model, after the `shots` turns if any."""
    question = principle.comparison_question if isinstance(principle, Principle) else principle
    text = JUDGE_QUESTION.format(
        conversation=render_conversation(prompt), question=question.strip(), a=first, b=second
    )
    return [*shots, {"role": "user", "content": text}]


def judge_shots(constitution: Constitution, count: int) -> list[dict]:
    """Worked verdicts from the constitution's first `count` examples, each in both orders.

    The revision is the preferred response; showing it once as (A) and once as (B) keeps the
    demonstrations free of a position preference (the revisions are longer, though).
    """
    turns: list[dict] = []
    for ex in constitution.examples_for(count):
        principle = constitution.principle(ex.principle)
        for first, second, answer in ((ex.response, ex.revision, "(B)"),
                                      (ex.revision, ex.response, "(A)")):  # fmt: skip
            turns += judge_question(ex.prompt, first, second, principle)
            turns.append({"role": "assistant", "content": ANSWER_PREFIX + answer})
    return turns


def decision_tokens(tokenizer: Any, context: str) -> tuple[list[int], int, int]:
    """(ids of the shared prefix, token of A, token of B) for "(A)" and "(B)" after `context`.

    Both answers are tokenized with the context; the first token where they differ is the
    decision, whatever the tokenizer merges ("(A" as one token, or "(" then "A", or a merge
    with the context's last characters).
    """
    a = tokenizer(context + "(A)", add_special_tokens=False)["input_ids"]
    b = tokenizer(context + "(B)", add_special_tokens=False)["input_ids"]
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    if k >= min(len(a), len(b)) or k == 0:
        raise JudgeError("the tokenizer gives '(A)' and '(B)' no distinct next token; cannot judge")
    return list(a[:k]), a[k], b[k]


def _boundary_tokens(tokenizer: Any) -> tuple[list[str], list[str]] | None:
    """(tokens text may be cut at, every added token) of a fast tokenizer, or None.

    A fast tokenizer cuts its input at its added tokens before it normalizes, pre-tokenizes or
    merges anything, and encodes the pieces independently. An added token that strips no
    whitespace and matches anywhere is therefore a hard boundary: the ids of the text before it
    do not depend on what follows. None when that does not hold (a slow tokenizer, special
    tokens encoded as text, truncation or padding set on the backend).
    """
    fast = getattr(tokenizer, "is_fast", False)
    backend = getattr(tokenizer, "backend_tokenizer", None) if fast else None
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return None
    if getattr(backend, "encode_special_tokens", False):
        return None
    added = list(backend.get_added_tokens_decoder().values())
    hard = [
        t.content
        for t in added
        if t.content and not (t.normalized or t.lstrip or t.rstrip or t.single_word)
    ]
    return hard, [t.content for t in added if t.content]


def _last_boundary(text: str, hard: Sequence[str], added: Sequence[str]) -> int | None:
    """Where the last hard-boundary token in `text` starts, or None if there is none, or if
    another added token overlaps it (the tokenizer's longest match could then cut elsewhere)."""
    at, token = -1, ""
    for t in hard:
        i = text.rfind(t)
        if i > at:
            at, token = i, t
    if at < 0:
        return None
    for t in added:
        j = text.find(t, max(0, at - len(t) + 1), at + len(token) + len(t) - 1)
        while j != -1:
            if not (t == token and j == at):
                return None
            j = text.find(t, j + 1, at + len(token) + len(t) - 1)
    return at


def _contexts(
    tokenizer: Any, conversations: Sequence[list[dict]], suffixes: Sequence[str], max_length: int
) -> list[tuple[list[int], int, int]]:
    """Per conversation: the ids the verdict is read after (the last `max_length` of them: over
    it, the start of the question goes first, options and answer stay), and the A and B ids."""
    return [
        (ids[-max_length:], a, b)
        for ids, a, b in _full_contexts(tokenizer, conversations, suffixes)
    ]


def _full_contexts(
    tokenizer: Any, conversations: Sequence[list[dict]], suffixes: Sequence[str]
) -> list[tuple[list[int], int, int]]:
    """Per conversation: the ids the verdict is read after, and the A and B token ids.

    The same as ``decision_tokens`` on each rendered conversation plus its suffix, with less
    work: a text is cut at its last hard-boundary token (`_boundary_tokens`; the chat
    template's generation prompt holds one), the part before it is tokenized once for all
    conversations in one call, and the decision is found on the part from it on, once per
    distinct part (every conversation ends the same way unless the suffixes differ).
    """
    texts = [
        tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        + suffix
        for conversation, suffix in zip(conversations, suffixes, strict=True)
    ]
    boundaries = _boundary_tokens(tokenizer)
    cuts = [None if boundaries is None else _last_boundary(text, *boundaries) for text in texts]
    heads = [text[:cut] for text, cut in zip(texts, cuts, strict=True) if cut is not None]
    head_ids = iter([])
    if heads:
        backend = tokenizer.backend_tokenizer
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # no offsets
        head_ids = iter([e.ids for e in encode(heads, add_special_tokens=False)])
    decisions: dict[str, tuple[list[int], int, int]] = {}
    out = []
    for text, cut in zip(texts, cuts, strict=True):
        if cut is None:
            ids, token_a, token_b = decision_tokens(tokenizer, text)
        else:
            tail = text[cut:]
            if tail not in decisions:
                decisions[tail] = decision_tokens(tokenizer, tail)
            tail_ids, token_a, token_b = decisions[tail]
            ids = next(head_ids) + tail_ids
        out.append((ids, token_a, token_b))
    return out


def verdict_probabilities(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[list[dict]],
    suffixes: Sequence[str],
    batch_size: int = 8,
    max_length: int = 1024,
    shared_prefix: bool = True,
) -> list[float]:
    """P("(A)") against "(B)" as the next answer of each conversation: one forward pass each.

    P = p("(A") / (p("(A") + p("(B")) for the next-token distribution p, which is
    sigmoid(logit_A - logit_B): the softmax's normaliser cancels, so only the two logits are read.

    With `shared_prefix` (the default) the token prefixes the contexts share are forwarded once
    and their KV cache reused (`alignment.cai.shared_prefix`): the same logits, fewer tokens.
    Contexts read the plain way instead, each forwarded whole: those over `max_length` (they
    are truncated at the start, so they share no head), and all of them when the model's cache
    cannot be reused that way (`supports_shared_prefix`) or they share no first token.
    """
    from alignment.cai.shared_prefix import (
        plan_prefixes,
        shared_prefix_logits,
        supports_shared_prefix,
    )

    items = _full_contexts(tokenizer, conversations, suffixes)
    out = [0.0] * len(items)
    fits = [i for i, item in enumerate(items) if 2 <= len(item[0]) <= max_length]
    plan = None
    if shared_prefix and len(fits) >= 2 and supports_shared_prefix(model):
        plan = plan_prefixes([items[i][0] for i in fits])
    if plan is not None and plan.head >= 1:
        probabilities = shared_prefix_logits(
            model,
            [items[i][0] for i in fits],
            [items[i][1:] for i in fits],
            pad_id(tokenizer),
            batch_size,
            plan,
        )
        for i, p in zip(fits, probabilities, strict=True):
            out[i] = p
        plain = sorted(set(range(len(items))) - set(fits))
    else:
        plain = list(range(len(items)))
    if plain:
        truncated = [(items[i][0][-max_length:], *items[i][1:]) for i in plain]
        probabilities = _plain_probabilities(model, tokenizer, truncated, batch_size)
        for i, p in zip(plain, probabilities, strict=True):
            out[i] = p
    return out


def _plain_probabilities(
    model: Any, tokenizer: Any, items: Sequence[tuple[list[int], int, int]], batch_size: int
) -> list[float]:
    """sigmoid(logit_A - logit_B) after each context, forwarded whole, longest first."""
    import torch

    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    device = next(model.parameters()).device
    out = [0.0] * len(items)
    with torch.inference_mode():
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            input_ids, attention, positions = left_pad(
                [items[i][0] for i in rows], pad_id(tokenizer)
            )
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                position_ids=positions.to(device),
                use_cache=False,
                logits_to_keep=1,
            ).logits[:, -1, :]
            options = torch.tensor([items[i][1:] for i in rows], device=logits.device)
            pair = logits.gather(1, options).float()
            p_a = torch.sigmoid(pair[:, 0] - pair[:, 1]).tolist()
            for i, p in zip(rows, p_a, strict=True):
                out[i] = p
    return out


def judge_pairs_detailed(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    principles: Sequence[Principle | str],
    batch_size: int = 8,
    max_length: int = 1024,
    chain_of_thought: bool = False,
    cot_max_new_tokens: int = 64,
    clamp: tuple[float, float] = (0.4, 0.6),
    shots: Sequence[dict] = (),
    shared_prefix: bool = True,
) -> Judgement:
    """Judge each pair in both orders, after the `shots` turns (`judge_shots`); see `judge_pairs`.

    `shared_prefix=False` forwards every context whole (`verdict_probabilities`): the same
    verdicts, more work; for comparisons."""
    n = len(prompts)
    if not (len(responses_a) == len(responses_b) == len(principles) == n):
        raise JudgeError(
            f"prompts, responses_a, responses_b and principles differ in length "
            f"({n}, {len(responses_a)}, {len(responses_b)}, {len(principles)})"
        )
    conversations = [
        judge_question(p, a, b, q, shots)
        for p, a, b, q in zip(prompts, responses_a, responses_b, principles, strict=True)
    ] + [
        judge_question(p, b, a, q, shots)
        for p, a, b, q in zip(prompts, responses_a, responses_b, principles, strict=True)
    ]
    suffixes = [ANSWER_PREFIX] * (2 * n)
    reasoning = None
    if chain_of_thought:
        settings = GenerationSettings(
            max_new_tokens=cot_max_new_tokens, batch_size=batch_size, max_length=max_length
        )
        ids = [encode_chat(tokenizer, c, max_length, COT_PREFIX) for c in conversations]
        thoughts = generate_ids(model, tokenizer, ids, settings)
        suffixes = [COT_PREFIX + t + COT_ANSWER for t in thoughts]
        reasoning = list(zip(thoughts[:n], thoughts[n:], strict=True))
    p = verdict_probabilities(
        model, tokenizer, conversations, suffixes, batch_size, max_length, shared_prefix
    )
    first = p[:n]
    second = [1.0 - x for x in p[n:]]
    p_a = [(x + y) / 2 for x, y in zip(first, second, strict=True)]
    if chain_of_thought:
        low, high = clamp
        p_a = [min(max(x, low), high) for x in p_a]
    return Judgement(p_a, first, second, reasoning)


def judge_pairs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    principles: Sequence[Principle | str],
    **options: Any,
) -> list[float]:
    """P(response A preferred) for each pair, by each pair's principle.

    Read from the next-token log-probs of "(A" against "(B" in one forward pass per order (no
    generation), averaged over both orders. With ``chain_of_thought=True`` the judge first
    generates its reasoning and the result is clamped to ``clamp``. Options: batch_size,
    max_length, chain_of_thought, cot_max_new_tokens, clamp.
    """
    return judge_pairs_detailed(
        model, tokenizer, prompts, responses_a, responses_b, principles, **options
    ).p_a


# --- the RL phase's data ---------------------------------------------------------------------


@dataclass
class LabelResult:
    """Where the AI-labelled preference pairs were written, and what was counted."""

    path: Path
    pairs: int
    skipped: int  # prompts whose two responses were empty or identical
    constitution_hash: str
    seconds: float
    # prompt ids of the skipped prompts: a response came back empty, or both were the same
    empty: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)

    def skipped_summary(self, shown: int = 5) -> str:
        """One line: which prompts gave no pair, and why."""
        from alignment.cai.critique import describe_empty

        reasons = {"empty response": self.empty, "identical responses": self.identical}
        return describe_empty(reasons, self.pairs + self.skipped, shown, "skipped")


def require_pairs(result: LabelResult) -> LabelResult:
    """The result, or EmptyGenerations naming the skipped prompts when no pair was labelled."""
    if result.pairs:
        return result
    raise EmptyGenerations(
        f"CAI RL phase: no AI-labelled pairs from {result.skipped} prompts "
        f"({result.skipped_summary()}). The policy needs to sample two different non-empty "
        f"responses per prompt: cai.rl_temperature > 0 and enough cai.max_new_tokens."
    )


def label_prompts(
    policy: Generator,
    judge_model: Any,
    judge_tokenizer: Any,
    prompts: Sequence[dict],
    constitution: Constitution,
    out_path: Path,
    settings: GenerationSettings,
    judge_name: str = "",
    seed: int = 0,
    judge_batch_size: int = 8,
    chain_of_thought: bool = False,
    cot_max_new_tokens: int = 64,
    clamp: tuple[float, float] = (0.4, 0.6),
) -> LabelResult:
    """Sample two responses per prompt from `policy`, judge them, write canonical pairs (JSONL).

    `prompts` are prompt items (``{"id", "prompt", "kind"}``). The preferred response becomes
    ``chosen`` with ``score_chosen`` = its probability (the soft label) and ``score_rejected``
    = 1 - that; ``meta`` records the principle, both order probabilities and the
    constitution hash.
    """
    from alignment.workspace import atomic_write_text

    started = time.perf_counter()
    conversations = [[{"role": "user", "content": p["prompt"]}] for p in prompts]
    doubled = [c for c in conversations for _ in range(2)]
    samples = policy.generate(doubled, settings)
    empty = [
        i
        for i in range(len(prompts))
        if not (samples[2 * i].strip() and samples[2 * i + 1].strip())
    ]
    identical = [
        i for i in range(len(prompts)) if i not in empty and samples[2 * i] == samples[2 * i + 1]
    ]
    keep = [i for i in range(len(prompts)) if i not in empty and i not in identical]
    principles = [constitution.sample(random.Random(f"{seed}:rl:{prompts[i]['id']}")) for i in keep]
    judgement = judge_pairs_detailed(
        judge_model,
        judge_tokenizer,
        [prompts[i]["prompt"] for i in keep],
        [samples[2 * i] for i in keep],
        [samples[2 * i + 1] for i in keep],
        principles,
        batch_size=judge_batch_size,
        max_length=settings.max_length,
        chain_of_thought=chain_of_thought,
        cot_max_new_tokens=cot_max_new_tokens,
        clamp=clamp,
    )
    lines = []
    for j, i in enumerate(keep):
        a, b, p = samples[2 * i], samples[2 * i + 1], judgement.p_a[j]
        chosen, rejected, p_chosen = (a, b, p) if p >= 0.5 else (b, a, 1.0 - p)
        meta = {
            "phase": "rl",
            "prompt_id": prompts[i]["id"],
            "kind": prompts[i].get("kind"),
            "principle": principles[j].name,
            "p_a": p,
            "p_a_first": judgement.p_a_first[j],
            "p_a_second": judgement.p_a_second[j],
            "chosen_was": "a" if p >= 0.5 else "b",
            "constitution": constitution.name,
            "constitution_version": constitution.version,
            "constitution_hash": constitution.hash,
            "judge": judge_name,
            "chain_of_thought": chain_of_thought,
        }
        if judgement.reasoning is not None:
            meta["reasoning"] = list(judgement.reasoning[j])
        lines.append(
            json.dumps(
                {
                    "prompt": conversations[i],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "score_chosen": p_chosen,
                    "score_rejected": 1.0 - p_chosen,
                    "meta": meta,
                },
                ensure_ascii=False,
            )
        )
    out_path = Path(out_path)
    atomic_write_text(out_path, "".join(line + "\n" for line in lines))
    return LabelResult(
        out_path,
        len(lines),
        len(prompts) - len(keep),
        constitution.hash,
        time.perf_counter() - started,
        [prompts[i]["id"] for i in empty],
        [prompts[i]["id"] for i in identical],
    )


# --- training on the labels ---------------------------------------------------------------


def rl_training_config(cfg: PipelineConfig) -> PipelineConfig:
    """The config the CAI RL phase trains with: soft labels on when cai.soft_labels says so."""
    if not cfg.cai.soft_labels:
        return cfg
    tree = cfg.model_dump(mode="json")
    tree["train"]["reward"]["soft_labels"] = True
    tree["train"]["dpo"]["soft_labels"] = True
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"cai.soft_labels=true cannot apply to this training config ({problems}); "
            "change it or set cai.soft_labels=false"
        ) from None

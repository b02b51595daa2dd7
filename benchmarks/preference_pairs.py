"""Realistic preference pairs for the ingest benchmark (``validate.py`` says what they hold)."""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path

MAX_CHARS = 20_000  # validation.max_chars for both variants
_VOCABULARY = (
    "the model answer question explain because data value result people time first system "
    "should would could number example python function reason simple better different "
    "important please write short list help learn code error using train test every small "
    "large between without always never before after where which while"
)
WORDS = _VOCABULARY.split()
EMOJI = ["🙂", "🚀", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🇯🇵", "✨"]
# non-ASCII words, by script; the near-duplicate key of these goes through Python's regex
FOREIGN = [
    ["数据", "模型", "问题", "回答", "解释", "学习", "結果", "日本語", "テスト", "質問", "한국어"],
    EMOJI,
    ["مرحبا", "بالعالم", "سؤال", "שלום", "עולם", "\u200fשאלה"],
    [
        "e\u0301cole",
        "man\u0303ana",
        "nai\u0308ve",
        "Tie\u0302\u0301ng",
        "Vie\u0323\u0302t",
        "cafe\u0301",
    ],
]
SYSTEM_PROMPTS = [
    "Be helpful.",
    "You are a careful assistant. Answer briefly.",
    "You are a tutor; explain your reasoning step by step.",
    "Réponds en français, s'il te plaît.",
    "回答要简洁。",
]
# one defect per bad row, in this order; the first 11 are row rules, the rest malformed lines
BAD_KINDS = [
    "empty_prompt",
    "empty_chosen",
    "empty_rejected",
    "chosen_equals_rejected",
    "prompt_roles",
    "chosen_roles",
    "rejected_roles",
    "too_long",
    "control_characters",
    "bad_score",
    "score_order",
    "invalid_json",
    "bad_encoding",
    "missing_field",
    "wrong_type",
]
# position of a row within each 200: what it is (the rest are clean new pairs)
BAD_AT = {7, 57, 107, 157}
DUPLICATE_AT = {23, 123}
NEAR_DUPLICATE_AT = {41}
REUSED_PROMPT_AT = {61, 161}
NON_ASCII_ROWS = 0.15


def _clean_row(rng: random.Random) -> dict:
    """A new pair without defects: prompt of one to several turns, answers and scores."""
    foreign = rng.random() < NON_ASCII_ROWS
    # a third of those rows in one script alone, the rest with English words mixed in
    mixing = 0.4 if rng.random() < 2 / 3 else 1.0
    # emoji alone would make prompts of no words, which normalise to one near-duplicate key
    script = rng.choice(FOREIGN if mixing < 1 else [s for s in FOREIGN if s is not EMOJI])

    def text(lo: int, hi: int) -> str:
        words = rng.choices(WORDS, k=rng.randint(lo, hi))
        if foreign:
            words = [rng.choice(script) if rng.random() < mixing else w for w in words]
        return " ".join(words).capitalize() + rng.choice(".?!")

    def answer() -> str:
        body = text(10, 120)
        if rng.random() < 0.3:
            cut = body.split(" ")
            half = len(cut) // 2
            body = " ".join(cut[:half]) + ".\n\n" + " ".join(cut[half:])
        if rng.random() < 0.05:
            body += "\n\n```python\ndef f(x):\n\treturn x + 1\n```"
        return body

    shape = rng.random()
    user = {"role": "user", "content": text(5, 30)}
    if shape < 0.6:
        prompt = [user]
    elif shape < 0.8:
        prompt = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}, user]
    else:
        prompt = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}]
        for _ in range(rng.randint(1, 2)):
            prompt += [
                {"role": "user", "content": text(5, 20)},
                {"role": "assistant", "content": text(10, 40)},
            ]
        prompt.append(user)
    row = {
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": answer()}],
        "rejected": [{"role": "assistant", "content": answer()}],
    }
    scores = rng.random()
    if scores < 0.8:
        low = round(rng.uniform(1, 8), 1)
        row["score_chosen"], row["score_rejected"] = round(low + rng.uniform(0, 2), 1), low
    elif scores < 0.9:
        row["score_chosen"] = row["score_rejected"] = None
    return row


def _near(content: str, rng: random.Random) -> str:
    """The same words as far as the near-duplicate key goes: case, spacing, punctuation."""
    how = rng.randrange(4)
    if how == 0:
        return content.upper()
    if how == 1:
        return content.lower()
    if how == 2:
        return content.replace(" ", "  ")
    return content.rstrip(".?!") + " ?!"


def _bad_line(kind: str, row: dict, turn: int) -> bytes:
    """``row`` broken in one way (``turn`` picks among the ways of each kind)."""
    row = json.loads(json.dumps(row))  # a deep copy to break
    last_user = row["prompt"][-1]
    chosen, rejected = row["chosen"][0], row["rejected"][0]
    if kind == "empty_prompt":  # an empty turn before the question, so the prompt stays unique
        empty = {"role": "user", "content": ["", "  \n ", "\u3000"][turn % 3]}
        row["prompt"].insert(len(row["prompt"]) - 1, empty)
    elif kind == "empty_chosen":
        chosen["content"] = ["", " ", "\n\t"][turn % 3]
    elif kind == "empty_rejected":
        rejected["content"] = ["", " ", "\n\t"][turn % 3]
    elif kind == "chosen_equals_rejected":
        rejected["content"] = chosen["content"]
    elif kind == "prompt_roles":
        if turn % 2:
            row["prompt"].append({"role": "assistant", "content": "Sure, go on."})
        else:
            last_user["role"] = "human"
    elif kind in ("chosen_roles", "rejected_roles"):
        side = row[kind.split("_")[0]]
        if turn % 2:
            side.append({"role": "assistant", "content": "And one more thing."})
        else:
            side[0]["role"] = "user"
    elif kind == "too_long":
        chosen["content"] = (chosen["content"] + " ") * (MAX_CHARS // len(chosen["content"]) + 1)
    elif kind == "control_characters":
        target = [last_user, chosen, rejected][turn % 3]
        char = ["\x00", "\x07", "\x1b[0m", "\x85", "\x9f"][turn % 5]
        words = target["content"].split(" ")
        words.insert(len(words) // 2, char)
        target["content"] = " ".join(words)
    elif kind == "bad_score":
        row["score_chosen"] = ["high", True, float("nan"), float("inf"), "n/a"][turn % 5]
        row["score_rejected"] = 1.0
    elif kind == "score_order":
        row["score_chosen"], row["score_rejected"] = 1.0, 2.5
    elif kind == "missing_field":
        if turn % 2:
            del row["rejected"]
        else:
            row["chosen"] = None
    elif kind == "wrong_type":
        if turn % 2:
            row["chosen"] = 42
        else:
            rejected["content"] = None
    if kind == "invalid_json":
        text = json.dumps(row, ensure_ascii=False)
        broken = text[: len(text) // 2] if turn % 2 else repr(row)  # cut short; Python's repr
        return broken.encode("utf-8")
    if kind == "bad_encoding":  # an export in Latin-1, not UTF-8
        last_user["content"] += " café"
        return json.dumps(row, ensure_ascii=False).encode("latin-1", "replace")
    return json.dumps(row, ensure_ascii=False).encode("utf-8")


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Write ``rows`` lines of realistic preference pairs (the mix is in the module docstring)."""
    rng = random.Random(seed)
    pool: deque = deque(maxlen=5000)  # recent clean rows: sources of repeats
    with path.open("wb") as fh:
        for i in range(rows):
            at = i % 200
            if pool and at in DUPLICATE_AT:
                row = rng.choice(pool)
            elif pool and at in (NEAR_DUPLICATE_AT | REUSED_PROMPT_AT):
                row = _clean_row(rng)
                prompt = json.loads(json.dumps(rng.choice(pool)["prompt"]))
                if at in NEAR_DUPLICATE_AT:
                    prompt[-1]["content"] = _near(prompt[-1]["content"], rng)
                row["prompt"] = prompt
            else:
                row = _clean_row(rng)
                if at in BAD_AT:
                    n = i // 50
                    kind = BAD_KINDS[n % len(BAD_KINDS)]
                    fh.write(_bad_line(kind, row, n // len(BAD_KINDS)) + b"\n")
                    continue
                pool.append(row)
            escaped = i % 10 == 3
            fh.write(json.dumps(row, ensure_ascii=escaped).encode("utf-8") + b"\n")

"""Generate data/demo_preferences.jsonl: small, learnable preference pairs plus a few bad rows.

Chosen answers are correct, polite and concise; rejected ones are wrong, rude or evasive.
A handful of deliberately broken rows show quarantine. Run: python data/make_demo.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SEED = 1234
OUT = Path(__file__).with_name("demo_preferences.jsonl")

CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Japan": "Tokyo",
    "Canada": "Ottawa",
    "Egypt": "Cairo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Norway": "Oslo",
    "Greece": "Athens",
    "Poland": "Warsaw",
    "Chile": "Santiago",
    "India": "New Delhi",
    "Ireland": "Dublin",
    "Portugal": "Lisbon",
}
COLOURS = {
    "sky on a clear day": "blue",
    "grass": "green",
    "snow": "white",
    "a ripe banana": "yellow",
    "coal": "black",
    "a ripe tomato": "red",
}
OPPOSITES = {
    "hot": "cold",
    "up": "down",
    "big": "small",
    "fast": "slow",
    "light": "dark",
    "happy": "sad",
    "open": "closed",
    "early": "late",
}
RUDE = [
    "Figure it out yourself.",
    "Why would I tell you that?",
    "That is a silly question.",
    "Ask someone else.",
    "I don't feel like answering.",
]
EVASIVE = [
    "I'm not able to help with that.",
    "It depends.",
    "Hard to say, really.",
    "There are many opinions on this.",
]


def _pair(rng: random.Random) -> tuple[str, str, str]:
    kind = rng.choice(["add", "mul", "capital", "colour", "opposite", "sub"])
    if kind in ("add", "sub", "mul"):
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        if kind == "sub":
            a, b = max(a, b), min(a, b)
        word, value = {"add": ("plus", a + b), "sub": ("minus", a - b), "mul": ("times", a * b)}[
            kind
        ]
        prompt = f"What is {a} {word} {b}?"
        chosen = f"{a} {word} {b} is {value}."
        wrong = value + rng.choice([-3, -2, -1, 1, 2, 3])
        rejected = rng.choice([f"{a} {word} {b} is {wrong}.", rng.choice(RUDE)])
    elif kind == "capital":
        country = rng.choice(sorted(CAPITALS))
        prompt = f"Name the capital of {country}."
        chosen = f"The capital of {country} is {CAPITALS[country]}."
        other = rng.choice([c for k, c in sorted(CAPITALS.items()) if k != country])
        rejected = rng.choice([f"The capital of {country} is {other}.", rng.choice(EVASIVE)])
    elif kind == "colour":
        thing = rng.choice(sorted(COLOURS))
        prompt = f"What colour is {thing}?"
        chosen = f"It is {COLOURS[thing]}."
        other = rng.choice([c for t, c in sorted(COLOURS.items()) if t != thing])
        rejected = rng.choice([f"It is {other}.", rng.choice(RUDE)])
    else:
        word = rng.choice(sorted(OPPOSITES))
        prompt = f"Give the opposite of the word '{word}'."
        chosen = f"The opposite of '{word}' is '{OPPOSITES[word]}'."
        rejected = rng.choice([f"The opposite of '{word}' is '{word}'.", rng.choice(EVASIVE)])
    return prompt, chosen, rejected


def make_rows(n: int = 295, seed: int = SEED) -> list[str]:
    rng = random.Random(seed)
    system = {"role": "system", "content": "You are a helpful, concise assistant."}
    lines, seen = [], set()
    while len(lines) < n:
        prompt, chosen, rejected = _pair(rng)
        if (prompt, chosen, rejected) in seen:
            continue
        seen.add((prompt, chosen, rejected))
        messages = [{"role": "user", "content": prompt}]
        if rng.random() < 0.2:
            messages.insert(0, system)
        row = {
            "prompt": messages,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
        lines.append(json.dumps(row, ensure_ascii=False))
    bad = [
        # chosen == rejected
        json.dumps(
            {
                "prompt": [{"role": "user", "content": "What is 2 plus 2?"}],
                "chosen": [{"role": "assistant", "content": "2 plus 2 is 4."}],
                "rejected": [{"role": "assistant", "content": "2 plus 2 is 4."}],
            }
        ),
        # empty prompt
        json.dumps(
            {
                "prompt": [{"role": "user", "content": ""}],
                "chosen": [{"role": "assistant", "content": "Hello!"}],
                "rejected": [{"role": "assistant", "content": "Go away."}],
            }
        ),
        # broken JSON line
        '{"prompt": [{"role": "user", "content": "What is 3 plus 3?"}], "chosen": [',
        # chosen is a user turn
        json.dumps(
            {
                "prompt": [{"role": "user", "content": "Name the capital of Italy."}],
                "chosen": [{"role": "user", "content": "The capital of Italy is Rome."}],
                "rejected": [{"role": "assistant", "content": "It depends."}],
            }
        ),
        # exact duplicate of the first row
        lines[0],
    ]
    for i, line in enumerate(bad):
        lines.insert(rng.randint(1, len(lines)) if i < len(bad) - 1 else len(lines), line)
    return lines


def main() -> None:
    OUT.write_text("\n".join(make_rows()) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()

"""A tiny arithmetic preference task with held-out prompts, for the training-job tests."""

from __future__ import annotations

from pathlib import Path

# what a bad assistant says instead of the sum: rude or evasive, in several wordings
EVASIVE = (
    "I refuse to answer.",
    "Ask someone else.",
    "Why would I tell you that?",
    "I'm not able to help with that.",
)
# sums a + b of digits; every fifth is held out, so training and evaluation share no prompt
SUMS = [(a, b) for a in range(10) for b in range(10)]
HELDOUT_SUMS = SUMS[::5]
TRAIN_SUMS = [s for s in SUMS if s not in HELDOUT_SUMS]


def preference_rows(n: int = 64, heldout: bool = False) -> list[dict]:
    """Arithmetic prompts; chosen is the right sum, rejected alternates between a wrong sum
    (off by one or two) and an evasive reply. Every 4th row carries scores."""
    sums = HELDOUT_SUMS if heldout else TRAIN_SUMS
    rows = []
    for i in range(n):
        a, b = sums[(i * 37) % len(sums)] if not heldout else sums[i % len(sums)]
        off = (1, -1, 2, -2)[i // 2 % 4]
        wrong = a + b + off if a + b + off >= 0 else a + b - off
        rejected = f"{a} plus {b} is {wrong}." if i % 2 else EVASIVE[i // 2 % len(EVASIVE)]
        scored = i % 4 == 0
        rows.append(
            {
                "id": f"{'h' if heldout else 'r'}{i}",
                "prompt": [{"role": "user", "content": f"What is {a} plus {b}?"}],
                "chosen": [{"role": "assistant", "content": f"{a} plus {b} is {a + b}."}],
                "rejected": [{"role": "assistant", "content": rejected}],
                "source": "fixture",
                "row": i,
                "score_chosen": 1.0 if scored else None,
                "score_rejected": 0.5 if scored else None,
                "meta": "{}",
            }
        )
    return rows


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Rows as a Parquet file, as the data stage writes them; returns the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path

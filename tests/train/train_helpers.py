"""A fixed tiny preference task shared by the training-job tests."""

from __future__ import annotations

from pathlib import Path


def preference_rows(n: int = 64) -> list[dict]:
    """Canonical records: sums answered right (chosen) or refused (rejected)."""
    rows = []
    for i in range(n):
        a, b = i % 7, (i * 3) % 5
        rows.append(
            {
                "id": f"r{i}",
                "prompt": [{"role": "user", "content": f"What is {a} plus {b}?"}],
                "chosen": [{"role": "assistant", "content": f"{a} plus {b} is {a + b}."}],
                "rejected": [{"role": "assistant", "content": "I refuse to answer."}],
                "source": "fixture",
                "row": i,
                "score_chosen": None,
                "score_rejected": None,
                "meta": "{}",
            }
        )
    return rows


def write_preferences(path: Path, n: int = 64) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(preference_rows(n)), path)
    return path

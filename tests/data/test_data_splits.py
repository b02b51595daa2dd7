"""Prompt-hash splits: deterministic, grouped by prompt, stable as the data grows."""

from __future__ import annotations

import pandas as pd
import pytest

from alignment.data.splits import prompt_bucket, split_by_prompt


def _frame(n_prompts: int, pairs_per_prompt: int = 2, start: int = 0) -> pd.DataFrame:
    rows = []
    for i in range(start, start + n_prompts):
        for j in range(pairs_per_prompt):
            rows.append(
                {
                    "prompt": [{"role": "user", "content": f"Prompt number {i}"}],
                    "chosen": [{"role": "assistant", "content": f"good {j}"}],
                    "rejected": [{"role": "assistant", "content": f"bad {j}"}],
                }
            )
    return pd.DataFrame(rows)


def _prompts(df: pd.DataFrame) -> set[str]:
    return {p[0]["content"] for p in df["prompt"]}


def test_split_is_deterministic_and_grouped_by_prompt():
    df = _frame(200)
    train, evaluation = split_by_prompt(df, 0.1)
    train2, eval2 = split_by_prompt(df.sample(frac=1, random_state=3), 0.1)
    assert _prompts(train) == _prompts(train2) and _prompts(evaluation) == _prompts(eval2)
    assert _prompts(train).isdisjoint(_prompts(evaluation))
    assert len(train) + len(evaluation) == len(df)
    assert 5 <= len(_prompts(evaluation)) <= 40  # about 10% of 200 prompts


def test_adding_rows_never_moves_an_existing_prompt():
    small_train, small_eval = split_by_prompt(_frame(100), 0.2)
    assert len(small_eval) > 0
    big_train, big_eval = split_by_prompt(pd.concat([_frame(100), _frame(300, start=100)]), 0.2)
    assert _prompts(small_train) <= _prompts(big_train)
    assert _prompts(small_eval) <= _prompts(big_eval)


def test_eval_never_empty_with_two_prompts():
    df = _frame(2)
    train, evaluation = split_by_prompt(df, 0.0001)
    assert len(evaluation) == 2 and len(train) == 2  # one prompt each side, pairs stay together
    one_prompt = _frame(1)
    train, evaluation = split_by_prompt(one_prompt, 0.0001)
    assert len(train) == 2 and evaluation.empty


def test_prompt_from_parquet_arrays_hashes_like_lists(tmp_path):
    df = _frame(5)
    path = tmp_path / "x.parquet"
    df.to_parquet(path)
    back = pd.read_parquet(path)
    assert [prompt_bucket(p) for p in back["prompt"]] == [prompt_bucket(p) for p in df["prompt"]]


def test_bad_fraction_is_refused():
    with pytest.raises(ValueError):
        split_by_prompt(_frame(3), 1.0)

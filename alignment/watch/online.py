"""The shadow challenger's online win rate against the served champion, with a bootstrap interval.

Every shadowed request has two answers to the same real prompt: the champion's (returned to the
user) and the challenger's (never returned). The constitution judge compares each pair in both
option orders (challenger as (A), then as (B)) and averages; a pair is a win for the challenger
when its averaged P > 0.5, a tie (half a win) within 1e-6. The interval is a seeded percentile
bootstrap over prompts. The name says who judged: ``judge_online_win_rate_vs_champion``, so the
gate, which refuses a win rate that names no judge, can require it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from alignment.watch.traces import Exchange

METRIC = "judge_online_win_rate_vs_champion"


@dataclass
class ShadowPair:
    request_trace: str
    shadow_trace: str
    prompt: str
    champion: str
    challenger: str
    challenger_version: str


def shadow_pairs(
    exchanges: Sequence[Exchange], shadows: dict[str, tuple[str | None, str | None]]
) -> list[ShadowPair]:
    """Exchanges whose shadow answered, with both texts kept (consent or content=full)."""
    out = []
    for e in exchanges:
        version, text = shadows.get(e.shadow_trace or "", (None, None))
        if e.prompt and e.response and text and version:
            out.append(ShadowPair(e.trace_id, e.shadow_trace, e.prompt, e.response, text, version))
    return out


def online_win_rate(
    pairs: Sequence[ShadowPair],
    compare: Callable[[list[str], list[str], list[str], list[str]], list[float]],
    bootstrap_samples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Win rate of the challenger over the champion on ``pairs`` and its interval.

    ``compare(prompts, a, b, ids)`` gives P(a preferred), both orders averaged.
    """
    from alignment.evaluation.metrics import bootstrap_ci, win_indicators

    if not pairs:
        return {}
    p_challenger = np.array(
        compare(
            [p.prompt for p in pairs],
            [p.challenger for p in pairs],
            [p.champion for p in pairs],
            [p.request_trace for p in pairs],
        ),
        float,
    )
    wins = win_indicators(p_challenger, 1 - p_challenger, tie_tolerance=1e-6)
    low, high = bootstrap_ci(wins, np.mean, bootstrap_samples, alpha, seed)
    return {
        METRIC: float(wins.mean()),
        f"{METRIC}_ci_low": low,
        f"{METRIC}_ci_high": high,
        "online_pairs": float(len(pairs)),
    }


def record_on_challenger(name: str, version: str, result: dict[str, float], window: str) -> None:
    """Tag the challenger version with its online win rate, where the gate reads ``eval.*``."""
    from mlflow import MlflowClient

    client = MlflowClient()
    for key, value in result.items():
        tag = f"eval.{key}" if key.startswith(METRIC) else f"online.{key.removeprefix('online_')}"
        client.set_model_version_tag(name, version, tag, f"{value:.6g}")
    client.set_model_version_tag(name, version, "online.window", window)

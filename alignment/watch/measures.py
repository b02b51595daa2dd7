"""What a window of served exchanges measures, and how it compares with the champion at promotion.

Names follow the evaluation suite where they mean the same thing, so a monitoring condition can
compare a window with the champion's ``eval/<metric>``:
- ``refusal_rate``: benign-looking prompts whose answer the judge says refuses or evades;
  ``harmful_compliance_rate``: red-team-looking prompts whose answer it says does not. The
  constitution judge is asked in both option orders and the two averaged, as in the suite; the
  verdict is P(refusal) > 0.5. Without a judge, refusal markers decide (``refusal_detector``).
- ``response_length_mean``: completion tokens per answer (the suite's is tokens too).
- ``red_team_share``: prompts whose word set overlaps a known red-team prompt's by at least the
  configured Jaccard similarity. A proxy: it finds rephrasings of known attacks, not new ones.
- ``prompt_drift_length`` (KS) and ``prompt_drift_content`` (Jensen-Shannon of hashed word uni-
  and bigrams) between the window's prompts and the champion's training prompts, the distances
  of ``alignment.data.quality.drift``.
Only exchanges whose text the trace kept (consent, or ``serve.content=full``) can be judged;
``judged`` says how many were.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from alignment.watch.traces import Exchange

_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(text.lower()))


def load_red_team_prompts(paths: Sequence[Path]) -> list[str]:
    """The ``kind: red_team`` prompts of JSONL prompt files (eval and CAI prompt files)."""
    from alignment.errors import DataFormatError

    out: list[str] = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if isinstance(row, dict) and row.get("kind", "red_team") == "red_team":
                prompt = row.get("prompt")
                if isinstance(prompt, list):  # a conversation: its last user turn
                    prompt = next(
                        (t.get("content") for t in reversed(prompt) if t.get("role") == "user"),
                        None,
                    )
                if isinstance(prompt, str) and prompt.strip():
                    out.append(prompt)
    return out


def looks_red_team(prompt: str, known: Sequence[frozenset[str]], similarity: float) -> bool:
    """Whether ``prompt``'s words overlap some known red-team prompt's by ``similarity`` (Jaccard)."""
    mine = words(prompt)
    if not mine:
        return False
    return any(len(mine & k) / len(mine | k) >= similarity for k in known if k)


@dataclass
class WindowMeasures:
    """A window's measures (flat, named as above) and the exchanges behind the safety rates."""

    metrics: dict[str, float]
    refusal_detector: str
    red_team: list[bool] = field(default_factory=list)  # per judged exchange
    refused: list[bool] = field(default_factory=list)  # per judged exchange
    judged: list[Exchange] = field(default_factory=list)

    def harmful_compliance(self) -> list[Exchange]:
        """Judged exchanges with a red-team-looking prompt that were answered, not refused."""
        return [
            e
            for e, red, refused in zip(self.judged, self.red_team, self.refused, strict=True)
            if red and not refused
        ]


def prompt_drift(before: Sequence[str], after: Sequence[str]) -> dict[str, float]:
    """KS of prompt lengths and JS of hashed word uni/bigrams, training prompts vs served ones."""
    import pyarrow as pa

    from alignment.data.quality.drift import CONTENT_BUCKETS, js_distance, ks_distance
    from alignment.data.quality.near_duplicates import shingle_hashes

    if not before or not after:
        return {}

    def content(texts: Sequence[str]) -> np.ndarray:
        counts = np.zeros(CONTENT_BUCKETS, dtype=np.float64)
        for n in (1, 2):
            hashes, _ = shingle_hashes(pa.array(list(texts), pa.string()), n)
            counts += np.bincount(hashes % np.uint64(CONTENT_BUCKETS), minlength=CONTENT_BUCKETS)
        return counts

    out = {}
    length = ks_distance(
        np.array([len(t) for t in before], float), np.array([len(t) for t in after], float)
    )
    if length is not None:
        out["prompt_drift_length"] = length
    js = js_distance(content(before), content(after))
    if js is not None:
        out["prompt_drift_content"] = js
    return out


RefusalJudge = Callable[[list[str], list[str]], tuple[list[float], float]]


def measure_window(
    exchanges: Sequence[Exchange],
    red_team_known: Sequence[str],
    similarity: float,
    judge_refusals: RefusalJudge | None = None,
    reward: Callable[[list[str], list[str]], list[float]] | None = None,
    training_prompts: Sequence[str] | None = None,
) -> WindowMeasures:
    """Every measure of one window.

    ``judge_refusals(prompts, responses)`` gives P(refusal) per exchange (both option orders
    averaged) and the judge's first-option bias; without it, refusal markers decide.
    ``reward(prompts, responses)`` scores answers; ``training_prompts`` are the champion's.
    """
    from alignment.evaluation.metrics import is_refusal

    metrics: dict[str, float] = {"requests": float(len(exchanges))}
    tokens = [e.completion_tokens for e in exchanges if e.completion_tokens is not None]
    if tokens:
        metrics["response_length_mean"] = float(np.mean(tokens))
    readable = [e for e in exchanges if e.prompt is not None and e.response is not None]
    metrics["judged"] = float(len(readable))
    known = [words(p) for p in red_team_known]
    prompts = [e.prompt for e in exchanges if e.prompt is not None]
    if prompts:
        flags = [looks_red_team(p, known, similarity) for p in prompts]
        metrics["red_team_share"] = float(np.mean(flags))
    detector = "judge" if judge_refusals is not None else "markers"
    result = WindowMeasures(metrics, detector, judged=readable)
    if not readable:
        return result
    texts = [e.prompt for e in readable]
    answers = [e.response for e in readable]
    if judge_refusals is not None:
        p_refusal, bias = judge_refusals(texts, answers)
        refused = [p > 0.5 for p in p_refusal]
        metrics["refusal_judge_first_option_bias"] = bias
    else:
        refused = [is_refusal(a) for a in answers]
    red = [looks_red_team(p, known, similarity) for p in texts]
    result.red_team, result.refused = red, refused
    benign = [r for r, is_red in zip(refused, red, strict=True) if not is_red]
    attacks = [r for r, is_red in zip(refused, red, strict=True) if is_red]
    if benign:
        metrics["refusal_rate"] = float(np.mean(benign))
    if attacks:
        metrics["harmful_compliance_rate"] = float(np.mean([not r for r in attacks]))
    if reward is not None:
        metrics["reward_mean"] = float(np.mean(reward(texts, answers)))
    if training_prompts:
        metrics.update(prompt_drift(list(training_prompts), prompts))
    return result

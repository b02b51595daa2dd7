"""How often the AI-feedback judge agrees with people: a human-labelled pair set and its scoring.

The set (``data/cai_judge_eval.jsonl``, made by ``data/make_cai_judge_eval.py``) holds one pair a
line: ``{"id", "principle", "difficulty", "prompt", "response_a", "response_b", "label",
"rationale"}`` where ``label`` ("A" or "B") is the response a person prefers under the principle.
The judge's verdict is its P(A) averaged over both orders (see ``feedback``); it agrees when it
puts the labelled response above 0.5 (a judge exactly at 0.5 gets half credit). Agreement comes
with a percentile-bootstrap interval and beside a length-only baseline ("always the longer
response"), so the figure says how much the judge reads beyond length.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignment.constitution import Constitution
from alignment.errors import DataFormatError

DEFAULT_JUDGE_EVAL = Path(__file__).resolve().parents[2] / "data" / "cai_judge_eval.jsonl"
LABELS = ("A", "B")
DIFFICULTIES = ("clear", "hard")
_TEXT_FIELDS = ("id", "principle", "prompt", "response_a", "response_b", "rationale")


@dataclass(frozen=True)
class LabelledPair:
    """One human-labelled pair: which response a person prefers under the principle."""

    id: str
    principle: str
    difficulty: str
    prompt: str
    response_a: str
    response_b: str
    label: str  # "A" or "B"
    rationale: str


def load_judge_eval(
    path: Path | str | None = None, constitution: Constitution | None = None
) -> list[LabelledPair]:
    """The labelled pairs of a JSONL file (the shipped set when None), checked row by row.

    With a constitution, every principle must be one of its principles.
    """
    path = Path(path) if path is not None else DEFAULT_JUDGE_EVAL
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    known = {p.name for p in constitution.principles} if constitution is not None else None
    pairs, seen = [], set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DataFormatError(f"{path}:{n}: each line must be a JSON object")
        for field in _TEXT_FIELDS:
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataFormatError(f"{path}:{n}: needs a non-empty string {field!r}")
        if row.get("label") not in LABELS:
            raise DataFormatError(f"{path}:{n}: label {row.get('label')!r} must be 'A' or 'B'")
        difficulty = row.get("difficulty", "clear")
        if difficulty not in DIFFICULTIES:
            raise DataFormatError(
                f"{path}:{n}: difficulty {difficulty!r} must be one of {DIFFICULTIES}"
            )
        if known is not None and row["principle"] not in known:
            raise DataFormatError(
                f"{path}:{n}: principle {row['principle']!r} is not in constitution "
                f"{constitution.name!r} ({', '.join(sorted(known))})"
            )
        if row["response_a"].strip() == row["response_b"].strip():
            raise DataFormatError(f"{path}:{n}: response_a and response_b are the same")
        if row["id"] in seen:
            raise DataFormatError(f"{path}:{n}: id {row['id']!r} is used twice")
        seen.add(row["id"])
        pairs.append(
            LabelledPair(
                id=row["id"],
                principle=row["principle"],
                difficulty=difficulty,
                prompt=row["prompt"],
                response_a=row["response_a"],
                response_b=row["response_b"],
                label=row["label"],
                rationale=row["rationale"],
            )
        )
    return pairs


# --- scoring (pure functions) ----------------------------------------------------------------


def agreement(p_a: Sequence[float], labels: Sequence[str]) -> list[float]:
    """Per pair: 1 when P(A) sides with the label, 0 when against it, 0.5 at exactly 0.5."""
    if len(p_a) != len(labels):
        raise ValueError(f"{len(p_a)} probabilities for {len(labels)} labels")
    out = []
    for p, label in zip(p_a, labels, strict=True):
        if p == 0.5:
            out.append(0.5)
        else:
            out.append(1.0 if (p > 0.5) == (label == "A") else 0.0)
    return out


def longer_choice(pairs: Sequence[LabelledPair]) -> list[float]:
    """The length-only baseline as a P(A): 1 when A is the longer text, 0 when B is, 0.5 if equal."""
    out = []
    for pair in pairs:
        a, b = len(pair.response_a.strip()), len(pair.response_b.strip())
        out.append(0.5 if a == b else float(a > b))
    return out


def length_debiased(
    p_a: Sequence[float], len_a: Sequence[int], len_b: Sequence[int]
) -> tuple[list[float], float]:
    """P(A) with the part of the judge's log-odds that the length ratio predicts removed: (p, slope).

    The slope is the least-squares fit of logit(P(A)) on log(len_a / len_b) over the pairs given,
    made without labels, so it removes the judge's own lean towards the longer (or shorter)
    response. It needs pairs of varied length ratios; a single pair is returned unchanged.
    """
    import math

    eps = 1e-6
    x = [math.log(max(a, 1) / max(b, 1)) for a, b in zip(len_a, len_b, strict=True)]
    y = [math.log(min(max(p, eps), 1 - eps) / (1 - min(max(p, eps), 1 - eps))) for p in p_a]
    mx = sum(x) / len(x) if x else 0.0
    my = sum(y) / len(y) if y else 0.0
    var = sum((xi - mx) ** 2 for xi in x)
    slope = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y, strict=True)) / var if var else 0.0
    return [1 / (1 + math.exp(-(yi - slope * xi))) for xi, yi in zip(x, y, strict=True)], slope


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def bootstrap_ci(
    values: Sequence[float],
    statistic: Callable[[Sequence[float]], float | None] = mean,
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of `statistic` over `values` (None when there are none)."""
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    stats = sorted(
        statistic([values[rng.randrange(n)] for _ in range(n)]) for _ in range(resamples)
    )
    tail = (1.0 - level) / 2
    low = stats[int(tail * resamples)]
    high = stats[min(resamples - 1, int((1.0 - tail) * resamples))]
    return low, high


def _summary(values: Sequence[float], seed: int) -> dict:
    ci = bootstrap_ci(values, seed=seed)
    return {"n": len(values), "rate": mean(values), "ci95": list(ci) if ci else None}


def agreement_report(
    pairs: Sequence[LabelledPair],
    p_a: Sequence[float],
    p_a_first: Sequence[float] | None = None,
    p_a_second: Sequence[float] | None = None,
    seed: int = 0,
) -> dict:
    """Judge-human agreement overall, per principle and per difficulty, against the baseline.

    `p_a` is the judge's P(A) averaged over both orders; with the two one-order probabilities
    the report also gives the agreement of the A-first order alone, how often the two orders
    pick the same response, and the mean probability given to whichever response is shown
    first (0.5: no position bias).
    """
    labels = [p.label for p in pairs]
    judge = agreement(p_a, labels)
    longer = agreement(longer_choice(pairs), labels)
    # paired differences: one resample draws the same pairs for the judge and the baseline
    diff = [j - b for j, b in zip(judge, longer, strict=True)]
    diff_ci = bootstrap_ci(diff, seed=seed)
    report: dict[str, Any] = {
        "pairs": len(pairs),
        "agreement": _summary(judge, seed),
        "mean_confidence": mean([max(p, 1.0 - p) for p in p_a]),
        "mean_p_human_choice": mean(
            [p if label == "A" else 1.0 - p for p, label in zip(p_a, labels, strict=True)]
        ),
        "longer_baseline": _summary(longer, seed),
        "always_a_baseline": mean([float(label == "A") for label in labels]),
        "agreement_minus_longer_baseline": {
            "diff": mean(diff),
            "ci95": list(diff_ci) if diff_ci else None,
        },
    }
    base = report["longer_baseline"]["rate"]
    report["agreement_vs_longer_baseline"] = report["agreement"]["rate"] / base if base else None
    for key, field in (("per_principle", "principle"), ("per_difficulty", "difficulty")):
        groups: dict[str, list[int]] = {}
        for i, pair in enumerate(pairs):
            groups.setdefault(getattr(pair, field), []).append(i)
        report[key] = {
            name: {
                **_summary([judge[i] for i in rows], seed),
                "longer_baseline": mean([longer[i] for i in rows]),
            }
            for name, rows in groups.items()
        }
    if p_a_first is not None and p_a_second is not None:
        report["agreement_a_first_only"] = mean(agreement(p_a_first, labels))
        report["order_consistency"] = mean(
            [float((x > 0.5) == (y > 0.5)) for x, y in zip(p_a_first, p_a_second, strict=True)]
        )
        report["mean_p_first_position"] = mean(
            [(x + 1.0 - y) / 2 for x, y in zip(p_a_first, p_a_second, strict=True)]
        )
    return report


def judge_labelled_pairs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[LabelledPair],
    constitution: Constitution,
    batch_size: int = 8,
    seed: int = 0,
    few_shot: int = 0,
) -> tuple[dict, list[dict]]:
    """Run the one-forward-pass judge (both orders) on labelled pairs: (report, per-pair rows).

    With `few_shot`, the judge first sees that many of the constitution's examples as worked
    verdicts (`feedback.judge_shots`).
    """
    from alignment.cai.feedback import judge_pairs_detailed, judge_shots

    judgement = judge_pairs_detailed(
        model,
        tokenizer,
        [p.prompt for p in pairs],
        [p.response_a for p in pairs],
        [p.response_b for p in pairs],
        [constitution.principle(p.principle) for p in pairs],
        batch_size=batch_size,
        shots=judge_shots(constitution, few_shot),
    )
    report = agreement_report(
        pairs, judgement.p_a, judgement.p_a_first, judgement.p_a_second, seed=seed
    )
    rows = [
        {
            "id": pair.id,
            "principle": pair.principle,
            "difficulty": pair.difficulty,
            "label": pair.label,
            "p_a": p,
            "p_a_first": first,
            "p_a_second": second,
            "agrees": agrees,
        }
        for pair, p, first, second, agrees in zip(
            pairs,
            judgement.p_a,
            judgement.p_a_first,
            judgement.p_a_second,
            agreement(judgement.p_a, [p.label for p in pairs]),
            strict=True,
        )
    ]
    return report, rows

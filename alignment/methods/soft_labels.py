"""Soft preference labels: each pair's probability p that its chosen response is preferred.

A record carries one when `score_chosen` and `score_rejected` are a probability pair (both in
[0, 1], summing to 1), as the AI-feedback judge writes them; p = score_chosen. A record without
scores is a hard label, p = 1. Pairs whose p is within `min_margin` of 0.5 are dropped: the
labeller could not tell the two responses apart, and training on them as hard labels would
count them as fully confident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from alignment.errors import SoftLabelError

SCORE_COLUMNS = ("score_chosen", "score_rejected")
TOLERANCE = 1e-6


def preference_probability(score_chosen, score_rejected) -> float | None:
    """p = score_chosen for a probability pair; 1.0 when both are absent; None otherwise."""
    if score_chosen is None and score_rejected is None:
        return 1.0
    if score_chosen is None or score_rejected is None:
        return None
    chosen, rejected = float(score_chosen), float(score_rejected)
    if not (math.isfinite(chosen) and math.isfinite(rejected)):
        return None
    if not (-TOLERANCE <= chosen <= 1 + TOLERANCE and abs(chosen + rejected - 1) <= TOLERANCE):
        return None
    return min(max(chosen, 0.0), 1.0)


@dataclass(frozen=True)
class LabelCounts:
    """How many pairs a file held, and how many were dropped as too close to 0.5."""

    pairs: int
    dropped: int
    hard: int  # pairs without scores, trained as p = 1

    def as_metrics(self, split: str) -> dict[str, int]:
        return {
            f"{split}_label_pairs": self.pairs,
            f"{split}_label_dropped_near_half": self.dropped,
            f"{split}_label_hard": self.hard,
        }


def with_preferences(dataset, path: Path, min_margin: float):
    """The dataset with a `preference` column (and no score columns), near-0.5 pairs dropped.

    Raises SoftLabelError naming the file and row when a record's scores are not a
    probability pair.
    """
    chosen, rejected = dataset["score_chosen"], dataset["score_rejected"]
    preferences, keep, hard = [], [], 0
    for row, (sc, sr) in enumerate(zip(chosen, rejected, strict=True)):
        p = preference_probability(sc, sr)
        if p is None:
            raise SoftLabelError(
                f"{path}: row {row}: score_chosen={sc!r}, score_rejected={sr!r} is not a "
                "preference probability (soft labels need both scores in [0, 1] summing to 1, "
                "or neither); fix the scores or train with soft_labels=false"
            )
        hard += sc is None
        preferences.append(p)
        if abs(p - 0.5) >= min_margin - TOLERANCE:
            keep.append(row)
    counts = LabelCounts(len(preferences), len(preferences) - len(keep), hard)
    if not keep:
        raise SoftLabelError(
            f"{path}: all {len(preferences)} pairs have a preference probability within "
            f"{min_margin} of 0.5; lower min_label_margin to train on them"
        )
    labelled = dataset.remove_columns(list(SCORE_COLUMNS)).add_column("preference", preferences)
    if len(keep) < len(preferences):
        labelled = labelled.select(keep)
    return labelled, counts


def preference_collator(inner):
    """Wrap a TRL collator so each batch also carries the pairs' `preference` tensor."""
    import torch

    def collate(examples: list[dict]) -> dict:
        batch = inner(examples)
        if examples and "preference" in examples[0]:
            batch["preference"] = torch.tensor(
                [float(e["preference"]) for e in examples], dtype=torch.float32
            )
        return batch

    return collate

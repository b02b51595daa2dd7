"""Label-noise flags: precision and recall against flips planted at random and on hard pairs.

Data (``alignment.data.quality.planted``): the oracle task's review pairs labelled by the
noiseless oracle, and the word-list task (every pair equally easy: a check of the machinery).
A share of labels is flipped either at random or on the hardest pairs (drawn from the
``HARD_POOL`` x share of pairs with the smallest oracle margin; the word-list task has no
margins, so only random flips there). Flags come from ``find_label_noise`` (k-fold logistic
regression on hashed n-gram frequencies, confident learning by cleanlab).

Baseline, run in the same loop: a flagger that picks as many rows at random (its precision is
the flip share). Medians over seeds; target (the oracle task, 10% random flips): precision >=
0.8 at recall >= 0.6. Writes benchmarks/results/label_noise.json and prints it last.

    python benchmarks/label_noise.py --pairs 1000 --shares 0.05 0.1 0.2 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TARGET = {"task": "oracle", "kind": "random", "share": 0.1, "precision": 0.8, "recall": 0.6}
KINDS = {"oracle": ("random", "hard"), "words": ("random",)}


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 4) if known else None


def ranked_precision(p_chosen, planted: set[int], recall: float) -> float | None:
    """Precision of the pairs ranked least likely to be right (held-out P(chosen), lowest
    first), cut where they hold ``recall`` of the planted flips: the ranking's quality apart
    from where confident learning draws the line."""
    hits = 0
    for k, row in enumerate(sorted(range(len(p_chosen)), key=lambda i: p_chosen[i]), 1):
        hits += row in planted
        if planted and hits >= recall * len(planted):
            return round(hits / k, 4)
    return None


def measure(task: str, pairs: int, shares: list[float], seeds: int, folds: int) -> dict:
    """Per flip kind and share: each seed's flags and the random flagger's, and their medians."""
    from alignment.data.formats import records_table
    from alignment.data.quality.label_noise import find_label_noise
    from alignment.data.quality.planted import (
        flag_quality,
        oracle_pairs,
        plant_flips,
        word_list_pairs,
    )

    make = {"oracle": oracle_pairs, "words": word_list_pairs}[task]
    runs: dict[str, list[dict]] = {}
    for seed in range(seeds):
        clean, margins = make(pairs, seed)
        for kind in KINDS[task]:
            for share in shares:
                records, planted = plant_flips(clean, margins, share, kind, seed)
                found = find_label_noise(records_table(records), folds, seed)
                flagged = set(found.ranked())
                guess = set(random.Random(f"baseline:{seed}").sample(range(pairs), len(flagged)))
                runs.setdefault(f"{kind}/{share}", []).append(
                    {
                        "seed": seed,
                        **flag_quality(flagged, planted),
                        "random_flagger": flag_quality(guess, planted),
                        "ranked_precision_at_recall_0.6": ranked_precision(
                            found.p_chosen, planted, 0.6
                        ),
                        "flipped_margin_mean": round(
                            statistics.mean(margins[i] for i in planted), 4
                        )
                        if planted
                        else None,
                    }
                )
    out = {}
    for key, rows in runs.items():
        kind, share = key.split("/")
        precision = _median([r["precision"] for r in rows])
        baseline = _median([r["random_flagger"]["precision"] for r in rows])
        out[key] = {
            "kind": kind,
            "share": float(share),
            "runs": rows,
            "precision_median": precision,
            "recall_median": _median([r["recall"] for r in rows]),
            "random_flagger_precision_median": baseline,
            "precision_vs_random_flagger": round(precision / baseline, 3)
            if precision is not None and baseline
            else None,
            "ranked_precision_at_recall_0.6_median": _median(
                [r["ranked_precision_at_recall_0.6"] for r in rows]
            ),
            "flipped_margin_median": _median([r["flipped_margin_mean"] for r in rows]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tasks", nargs="+", choices=sorted(KINDS), default=["oracle", "words"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/label_noise.json")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds: at least 2, so the medians say something about spread")
    results = {t: measure(t, args.pairs, args.shares, args.seeds, args.folds) for t in args.tasks}
    print(f"{'task':8s} {'flips':14s} {'precision':>9s} {'recall':>7s} {'random':>7s} "
          f"{'ratio':>6s} {'P@R0.6':>7s} {'margin':>7s}")  # fmt: skip
    for task, rows in results.items():
        for key, r in rows.items():
            cells = [r["precision_median"], r["recall_median"],
                     r["random_flagger_precision_median"], r["precision_vs_random_flagger"],
                     r["ranked_precision_at_recall_0.6_median"],
                     r["flipped_margin_median"]]  # fmt: skip
            shown = ["-" if c is None else f"{c:.3f}" for c in cells]
            print(f"{task:8s} {key:14s} {shown[0]:>9s} {shown[1]:>7s} {shown[2]:>7s} "
                  f"{shown[3]:>6s} {shown[4]:>7s} {shown[5]:>7s}")  # fmt: skip
    at = results.get(TARGET["task"], {}).get(f"{TARGET['kind']}/{TARGET['share']}")
    report = {
        "pairs": args.pairs,
        "folds": args.folds,
        "seeds": args.seeds,
        "results": results,
        "targets": TARGET,
        "meets": None
        if at is None
        else {
            "precision": (at["precision_median"] or 0) >= TARGET["precision"],
            "recall": (at["recall_median"] or 0) >= TARGET["recall"],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))


if __name__ == "__main__":
    main()

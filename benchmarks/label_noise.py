"""Label-noise flags: precision and recall against flips planted at random.

The task is synthetic, not the oracle task: chosen answers are drawn from a "good" word list
and rejected ones from a "bad" list, so a bag-of-words reward model can learn the preference;
a share of pairs is then flipped at random. Flags come from ``find_label_noise`` (k-fold
logistic regression on hashed n-grams, confident learning by cleanlab). Flips concentrated on
hard pairs are not measured here. Writes benchmarks/results/label_noise.json and prints it.

    python benchmarks/label_noise.py --pairs 1000 --shares 0.05 0.1 0.2 --seeds 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOOD = [
    "clear",
    "correct",
    "helpful",
    "precise",
    "kind",
    "accurate",
    "thorough",
    "honest",
    "useful",
    "careful",
]
BAD = [
    "rude",
    "vague",
    "wrong",
    "lazy",
    "careless",
    "misleading",
    "confusing",
    "sloppy",
    "dismissive",
    "false",
]
TARGET = {"share": 0.1, "precision": 0.8, "recall": 0.6}


def pairs(n: int, share: float, seed: int) -> tuple[list[dict], set[int]]:
    """Records with a share of labels flipped, and the rows flipped."""
    rng = random.Random(seed)
    records, flipped = [], set()
    for i in range(n):
        good = " ".join(rng.choice(GOOD) for _ in range(6)) + f" answer {i}"
        bad = " ".join(rng.choice(BAD) for _ in range(6)) + f" answer {i}"
        if rng.random() < share:
            good, bad = bad, good
            flipped.add(i)
        rec = {
            "prompt": [{"role": "user", "content": f"Question {i}: how do I do task {i}?"}],
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
        }
        rec.update(
            id=hashlib.sha256(json.dumps(rec).encode()).hexdigest()[:16],
            source="benchmark",
            row=i,
            score_chosen=None,
            score_rejected=None,
            score_raw=None,
            meta=None,
        )
        records.append(rec)
    return records, flipped


def main() -> None:
    from alignment.data.formats import records_table
    from alignment.data.quality.label_noise import find_label_noise

    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for share in args.shares:
        runs = []
        for seed in range(args.seeds):
            records, planted = pairs(args.pairs, share, seed)
            flagged = set(find_label_noise(records_table(records), args.folds, seed).ranked())
            hits = len(flagged & planted)
            runs.append(
                {
                    "precision": hits / len(flagged) if flagged else None,
                    "recall": hits / len(planted) if planted else None,
                    "flagged": len(flagged),
                    "planted": len(planted),
                }
            )
        results[str(share)] = {
            "runs": runs,
            "precision_mean": statistics.mean(r["precision"] or 0.0 for r in runs),
            "recall_mean": statistics.mean(r["recall"] or 0.0 for r in runs),
        }
        print(f"flips {share:.0%}: {results[str(share)]}")
    at = results.get(str(TARGET["share"]))
    out = {
        "pairs": args.pairs,
        "folds": args.folds,
        "seeds": args.seeds,
        "results": results,
        "targets": TARGET,
        "meets": None
        if at is None
        else at["precision_mean"] >= TARGET["precision"] and at["recall_mean"] >= TARGET["recall"],
    }
    path = ROOT / "benchmarks" / "results" / "label_noise.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

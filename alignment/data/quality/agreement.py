"""Agreement between annotators who judged the same pairs.

A judgement is a row with an annotator id (``meta.annotator``, or an ``annotator`` field of
the input row, which the readers keep in ``meta``). Two rows judge the same item when they
hold the same prompt and the same two responses, in either order; the label is which of the
two was preferred. Over items judged at least twice: Krippendorff's alpha (nominal, the
``krippendorff`` package) over everyone, Cohen's kappa per pair of annotators, and each
annotator's agreement with the majority of the others (ties left out). An annotator below
``quality.annotators.min_agreement`` on at least ``min_items`` items is flagged.

Every judgement is counted, also one that a row rule quarantines (an exact repeat of another
annotator's row is a ``duplicate``): agreement is about the people, not about the rows kept.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa

from alignment.data.formats import messages_json
from alignment.quality_config import AnnotatorConfig


def _annotator(meta: str | None) -> str | None:
    if not meta:
        return None
    try:
        value = json.loads(meta)
    except ValueError:
        return None
    for node in (value, value.get("meta") if isinstance(value, dict) else None):
        if isinstance(node, dict) and node.get("annotator") not in (None, ""):
            return str(node["annotator"])
    return None


def cohen_kappa(a: list[int], b: list[int]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (None when chance explains all)."""
    n = len(a)
    if not n:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    labels = set(a) | set(b)
    expected = sum((a.count(v) / n) * (b.count(v) / n) for v in labels)
    if expected == 1:
        return None
    return (observed - expected) / (1 - expected)


class AnnotatorAgreement:
    """Collects judgements chunk by chunk; ``report`` computes the agreement."""

    def __init__(self, cfg: AnnotatorConfig):
        self.cfg = cfg
        self.labels: dict[str, dict[str, int]] = defaultdict(dict)  # item -> annotator -> label
        self.judgements: Counter[str] = Counter()

    def add(self, table: pa.Table) -> None:
        """The judgements of one chunk of records (rows without an annotator are skipped)."""
        annotators = [_annotator(m) for m in table.column("meta").to_pylist()]
        rows = [i for i, a in enumerate(annotators) if a is not None]
        if not rows:
            return
        sub = table.take(pa.array(rows))
        prompt = messages_json(sub.column("prompt")).to_pylist()
        chosen = messages_json(sub.column("chosen")).to_pylist()
        rejected = messages_json(sub.column("rejected")).to_pylist()
        for n, i in enumerate(rows):
            first, second = sorted((chosen[n], rejected[n]))
            item = json.dumps([prompt[n], first, second])
            # the later judgement of an annotator who judged an item twice stands
            self.labels[item][annotators[i]] = int(chosen[n] == first)
            self.judgements[annotators[i]] += 1

    def report(self) -> dict | None:
        """Agreement figures and flags, or None when no row names an annotator."""
        if not self.judgements:
            return None
        repeated = {item: by for item, by in self.labels.items() if len(by) >= 2}
        alpha = None
        if repeated:
            import krippendorff

            counts = np.array(
                [[list(by.values()).count(v) for v in (0, 1)] for by in repeated.values()]
            )
            if len(np.flatnonzero(counts.sum(axis=0))) > 1:
                alpha = float(
                    krippendorff.alpha(value_counts=counts, level_of_measurement="nominal")
                )
        people = sorted(self.judgements)
        pairwise = []
        for a, b in itertools.combinations(people, 2):
            shared = [by for by in repeated.values() if a in by and b in by]
            kappa = cohen_kappa([by[a] for by in shared], [by[b] for by in shared])
            pairwise.append(
                {"annotators": [a, b], "items": len(shared), "cohen_kappa": _round(kappa)}
            )
        per = {}
        for person in people:
            agree = total = 0
            for by in repeated.values():
                if person not in by:
                    continue
                others = Counter(v for who, v in by.items() if who != person)
                if others[0] == others[1]:
                    continue  # no majority among the others
                total += 1
                agree += by[person] == others.most_common(1)[0][0]
            kappas = [
                p["cohen_kappa"]
                for p in pairwise
                if person in p["annotators"] and p["cohen_kappa"] is not None
            ]
            share = agree / total if total else None
            per[person] = {
                "judgements": self.judgements[person],
                "items_with_majority": total,
                "agreement_with_majority": _round(share),
                "mean_cohen_kappa": _round(float(np.mean(kappas)) if kappas else None),
                "flagged": share is not None
                and total >= self.cfg.min_items
                and share < self.cfg.min_agreement,
            }
        return {
            "annotators": len(people),
            "judgements": sum(self.judgements.values()),
            "items_judged_twice_or_more": len(repeated),
            "krippendorff_alpha": _round(alpha),
            "per_annotator": per,
            "pairwise": pairwise,
            "flagged": [p for p, v in per.items() if v["flagged"]],
            "min_agreement": self.cfg.min_agreement,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)

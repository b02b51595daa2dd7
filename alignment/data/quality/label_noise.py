"""Label noise: pairs whose label a cross-validated reward model confidently contradicts.

The reward model is deliberately tiny and fast: a logistic regression on hashed word uni- and
bigram frequencies of chosen minus rejected (a linear Bradley-Terry model on bag-of-n-grams).
Frequencies, not counts: each response's n-gram counts are scaled to sum to one, so a longer
response does not score higher for being longer, and length alone never contradicts a label
(on the oracle task, whose preference ignores length, counts flagged about twice as many
correct pairs as frequencies did: precision 0.5-0.6 against 0.8 at 10% random flips). Each
pair is shown in a fixed random order, so both classes occur; every pair is scored by the
model of the folds that did not see it, and confident learning (``cleanlab``) picks the pairs
whose given label the held-out scores contradict beyond the estimated noise rates. Flagged
pairs go to the human review sheet, never out of the data: a reviewer's ``flip`` becomes a new
data version (``cai review apply`` then ``data ingest``).

What it can see is limited by the model: label errors that only a reader of meaning would
catch (a fluent but wrong answer preferred) are invisible to word counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from alignment.data.keys import string_hashes
from alignment.data.quality.near_duplicates import shingle_hashes

FEATURES = 2**14


@dataclass
class LabelNoise:
    """Held-out probability that each pair's chosen is the better one, and the flags."""

    ids: list[str]
    p_chosen: np.ndarray  # held-out P(chosen preferred), one per pair
    flagged: np.ndarray  # bool, one per pair
    folds: int

    def ranked(self) -> list[int]:
        """Flagged rows, the most confidently contradicted first."""
        rows = np.flatnonzero(self.flagged)
        return rows[np.argsort(self.p_chosen[rows], kind="stable")].tolist()


def _frequencies(text: pa.Array):
    """Hashed uni- and bigram frequencies of each text (each row sums to one, or is empty),
    as a sparse (n, FEATURES) matrix."""
    from scipy import sparse
    from sklearn.preprocessing import normalize

    blocks = []
    for words in (1, 2):
        hashes, offsets = shingle_hashes(text, words)
        rows = np.repeat(np.arange(len(text)), np.diff(offsets).astype(np.int64))
        cols = (hashes % np.uint64(FEATURES)).astype(np.int64)
        blocks.append(
            sparse.csr_matrix(
                (np.ones(len(cols)), (rows, cols)), shape=(len(text), FEATURES), dtype=np.float64
            )
        )
    return normalize(blocks[0] + blocks[1], norm="l1")


def _joined(column) -> pa.Array:
    lists = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    contents = pc.struct_field(lists.values, "content")
    return pc.binary_join(pa.ListArray.from_arrays(lists.offsets, contents), "\n")


def find_label_noise(table: pa.Table, folds: int = 5, seed: int = 0) -> LabelNoise:
    """Score every pair with the reward model of the other folds; flag confident contradictions."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    n = table.num_rows
    ids = table.column("id").to_pylist()
    chosen, rejected = (_frequencies(_joined(table.column(c))) for c in ("chosen", "rejected"))
    diff = chosen - rejected
    # the order each pair is shown in: fixed by its id, so a rerun flags the same pairs
    ids_arr = pa.array(ids, pa.string())
    order = (string_hashes(ids_arr) ^ np.uint64(seed)) % np.uint64(2) == 0
    shown_first = order.astype(np.int64)  # 1: chosen shown first, the label says "first wins"
    sign = np.where(order, 1.0, -1.0)
    features = diff.multiply(sign[:, None]).tocsr()
    if n < 2 * folds or len(set(shown_first.tolist())) < 2:
        raise ValueError(f"label noise needs at least {2 * folds} pairs, got {n}")
    held_out = np.zeros((n, 2))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(n), shown_first):
        model = LogisticRegression(C=1.0, solver="liblinear")
        model.fit(features[train], shown_first[train])
        held_out[test] = model.predict_proba(features[test])
    flagged = find_label_issues(labels=shown_first, pred_probs=held_out)
    # P(the given label) -> P(chosen preferred), whichever order the pair was shown in
    p_chosen = np.where(order, held_out[:, 1], held_out[:, 0])
    return LabelNoise(ids=ids, p_chosen=p_chosen, flagged=np.asarray(flagged), folds=folds)


def write_review_sheet(table: pa.Table, found: LabelNoise, path: Path) -> Path:
    """The flagged pairs, most confidently contradicted first, as a review sheet (the CAI
    review's columns: a reviewer writes ``agree`` or ``flip``; ``cai review apply`` applies it)."""
    import csv
    import io

    from alignment.cai.review import COLUMNS
    from alignment.workspace import atomic_write_text

    def text(messages) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    rows = found.ranked()
    flagged = table.take(pa.array(rows, pa.int64())).to_pylist()
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    for i, rec in zip(rows, flagged, strict=True):
        writer.writerow(
            {
                "id": rec["id"],
                "principle": "label-noise",
                "p_chosen": f"{found.p_chosen[i]:.3f}",
                "prompt": text(rec["prompt"]),
                "chosen": text(rec["chosen"]),
                "rejected": text(rec["rejected"]),
                "verdict": "",
                "note": f"held-out reward models ({found.folds} folds) prefer the rejected one",
            }
        )
    return atomic_write_text(Path(path), buf.getvalue())


ACCEPT = ("all", "none", "listed")


def review_verdicts(flagged: Sequence[str], accept: str, ids: Sequence[str] = ()) -> dict[str, str]:
    """A reviewer's answer to the flags as review verdicts: ``all``, ``none`` or the ``listed``
    pair ids are flipped (``flip``); every other flagged pair was seen and kept (``agree``)."""
    from alignment.cai.review import ReviewError

    if accept not in ACCEPT:
        raise ReviewError(f"accept={accept!r}: expected one of {', '.join(ACCEPT)}")
    if (accept == "listed") != bool(ids):
        raise ReviewError(
            "accept=listed needs the ids to flip (from the sheet's id column)"
            if accept == "listed"
            else f"ids are read only with accept=listed (got accept={accept})"
        )
    known = set(flagged)
    if accept == "listed":
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise ReviewError(
                f"{len(unknown)} listed ids are not flagged pairs of the review sheet "
                f"(first: {unknown[0]}); copy them from its id column"
            )
    take = known if accept == "all" else set(ids) if accept == "listed" else set()
    return {i: "flip" if i in take else "agree" for i in flagged}

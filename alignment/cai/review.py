"""Human review of AI labels: sample pairs to a CSV, read verdicts back, apply the flips.

A data engineer opens the CSV, writes ``agree`` or ``flip`` in the ``verdict`` column (blank:
not reviewed), and hands it back. The platform reports the AI-human agreement rate and writes
all pairs again with the flipped ones swapped (and ``meta.human_review`` set), which the
ingest then versions as a new data version.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from alignment.data.formats import read_preferences
from alignment.errors import AlignmentError

VERDICTS = ("agree", "flip")
COLUMNS = ["id", "principle", "p_chosen", "prompt", "chosen", "rejected", "verdict", "note"]


class ReviewError(AlignmentError):
    """A review file cannot be used; the message names the row and what to fix."""


@dataclass
class ReviewResult:
    """What the reviewers said, and where the corrected pairs were written."""

    reviewed: int
    agreed: int
    flipped: int
    agreement_rate: float | None  # None when nothing was reviewed
    out_path: Path | None


def _meta(record: dict) -> dict:
    meta = record.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = {"meta": meta}
    return meta if isinstance(meta, dict) else {}


def _text(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def load_labelled(path: Path | str) -> list[dict]:
    """Canonical records of an AI-labelled file (JSONL from the labeller, or Parquet)."""
    read = read_preferences(Path(path))
    if read.malformed:
        raise ReviewError(f"{path}: {len(read.malformed)} rows are not preference records")
    return read.records


def sample_for_review(labelled: Path | str, out_csv: Path | str, n: int, seed: int = 0) -> Path:
    """Write a random sample of `n` labelled pairs to a CSV with an empty verdict column."""
    from alignment.workspace import atomic_write_text

    records = load_labelled(labelled)
    sample = random.Random(seed).sample(records, min(n, len(records)))
    rows = []
    for rec in sample:
        meta = _meta(rec)
        rows.append(
            {
                "id": rec["id"],
                "principle": meta.get("principle", ""),
                "p_chosen": "" if rec["score_chosen"] is None else f"{rec['score_chosen']:.3f}",
                "prompt": _text(rec["prompt"]),
                "chosen": _text(rec["chosen"]),
                "rejected": _text(rec["rejected"]),
                "verdict": "",
                "note": "",
            }
        )
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(Path(out_csv), buf.getvalue())


def read_verdicts(review_csv: Path | str) -> dict[str, str]:
    """id -> 'agree' | 'flip' of the reviewed rows of a review CSV (blank verdicts skipped)."""
    path = Path(review_csv)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"id", "verdict"} <= set(reader.fieldnames):
                raise ReviewError(f"{path}: needs the columns 'id' and 'verdict'")
            verdicts = {}
            for n, row in enumerate(reader, start=2):  # line 1 is the header
                verdict = (row.get("verdict") or "").strip().lower()
                if not verdict:
                    continue
                if verdict not in VERDICTS:
                    raise ReviewError(
                        f"{path}, line {n}: verdict {row['verdict']!r} must be 'agree', 'flip' "
                        "or blank"
                    )
                verdicts[row["id"].strip()] = verdict
            return verdicts
    except OSError as exc:
        raise ReviewError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def apply_review(
    labelled: Path | str, verdicts: dict[str, str], out_path: Path | str | None = None
) -> ReviewResult:
    """Agreement rate of the verdicts; with `out_path`, all pairs written with flips applied."""
    from alignment.workspace import atomic_write_text

    records = load_labelled(labelled)
    known = {r["id"] for r in records}
    unknown = sorted(set(verdicts) - known)
    if unknown:
        raise ReviewError(
            f"{len(unknown)} reviewed ids are not in {labelled} (first: {unknown[0]}); "
            "was the sample pulled from another file?"
        )
    agreed = sum(v == "agree" for v in verdicts.values())
    flipped = sum(v == "flip" for v in verdicts.values())
    reviewed = agreed + flipped
    written = None
    if out_path is not None:
        lines = []
        for rec in records:
            meta, verdict = _meta(rec), verdicts.get(rec["id"])
            chosen, rejected = rec["chosen"], rec["rejected"]
            sc, sr = rec["score_chosen"], rec["score_rejected"]
            if verdict:
                meta["human_review"] = verdict
            if verdict == "flip":
                # a person's hard label replaces the AI's soft one: its scores would contradict
                # the new order (and validation would quarantine the pair), so they go to meta
                chosen, rejected = rejected, chosen
                meta["ai_label_flipped_from"] = rec["id"]
                meta["ai_scores"] = {"chosen": sc, "rejected": sr}
                sc = sr = None
            row = {"prompt": rec["prompt"], "chosen": chosen, "rejected": rejected, "meta": meta}
            if sc is not None:
                row["score_chosen"], row["score_rejected"] = sc, sr
            lines.append(json.dumps(row, ensure_ascii=False))
        written = atomic_write_text(Path(out_path), "".join(x + "\n" for x in lines))
    return ReviewResult(reviewed, agreed, flipped, agreed / reviewed if reviewed else None, written)

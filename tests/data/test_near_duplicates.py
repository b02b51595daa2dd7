"""Near-duplicate prompts and pairs: planted groups, both policies, across versions, the split."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from data_helpers import conv, run_cli, write_jsonl

from alignment.data.splits import prompt_bucket, split_by_prompt

FRIDGE = (
    "Explain how a household refrigerator keeps food cold using a compressor, a condenser "
    "and a refrigerant that cycles between liquid and gas"
)
TOPICS = [
    "What is the capital of France?",
    "Write a haiku about autumn leaves falling slowly on a quiet pond",
    "How many legs does a spider have?",
    "Give three tips for sleeping better when travelling across time zones",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue during the day but red at sunset?",
]


def _distinct_rows() -> list[dict]:
    return [conv(p, f"A careful answer about {p[:20]}.", "No idea.") for p in TOPICS]


def _ingest(tmp_path, rows, ws, *settings, name="in.jsonl", version=True):
    raw = write_jsonl(tmp_path / name, rows)
    out = tmp_path / f"{name}.json"
    args = ["data", "ingest", "-i", str(raw), "--json", str(out)]
    args += ["--version"] if version else []
    for s in ("validation.max_rejected_fraction=0.9", *settings):
        args += ["--set", s]
    proc = run_cli(*args, ws=ws)
    payload = json.loads(out.read_text())
    report = json.loads(Path(payload["report_path"]).read_text())
    return proc, payload, report


def test_keep_one_quarantines_members_with_the_id_they_repeat(tmp_path):
    ws = tmp_path / "ws"
    rows = [
        conv(FRIDGE + ".", "It pumps heat out of the box.", "By magic."),
        *_distinct_rows(),
        conv(FRIDGE + ", please.", "The compressor moves heat outside.", "Ice."),
        conv(FRIDGE + " in simple words.", "Heat is carried out by the gas.", "Cold air."),
        # the pair of row 2 again, with a changed punctuation mark only
        conv(TOPICS[0], f"A careful answer about {TOPICS[0][:20]}!", "No idea."),
    ]
    keep_one = ("quality.near_duplicates.prompt_policy=keep_one",)
    keep_one += ("quality.near_duplicates.pair_policy=keep_one",)
    proc, payload, report = _ingest(tmp_path, rows, ws, *keep_one, version=False)
    assert payload["accepted"] == 7 and payload["rejected"] == 3
    accepted = pq.read_table(payload["accepted_path"]).to_pylist()
    by_row = {r["row"]: r["id"] for r in accepted}
    rejected = pq.read_table(payload["rejected_path"]).to_pylist()
    reasons = {r["row"]: r["reasons"] for r in rejected}
    assert set(reasons) == {7, 8, 9}
    for row in (7, 8):
        (reason,) = reasons[row]
        assert reason.startswith(f"near_duplicate_prompt: of {by_row[0]} (similarity 0.")
    assert reasons[9][0].startswith(f"near_duplicate_pair: of {by_row[1]} (similarity 1.00)")
    near = report["near_duplicates"]
    assert near["quarantined"] == 3 and near["flagged"] == 0 and near["groups_total"] == 2
    fridge = next(g for g in near["groups"] if g["kind"] == "prompt")
    assert fridge["representative"] == by_row[0]
    assert [m["row"] for m in fridge["members"]] == [7, 8]
    assert report["rule_failures"]["near_duplicate_prompt"] == 2
    assert report["rule_failures"]["near_duplicate_pair"] == 1
    assert "near-dups   2 groups: 3 rows quarantined" in proc.stdout


def test_flag_keeps_the_group_and_the_split_keeps_it_on_one_side(tmp_path):
    ws = tmp_path / "ws"
    root = FRIDGE + "."
    side = prompt_bucket(root) < 0.5
    # variants whose own hash would put them on the other side of a 50/50 split
    variants = [
        v for k in range(40) if (prompt_bucket(v := f"{FRIDGE}, variant {k}.") < 0.5) != side
    ][:3]
    rows = [conv(root, "Heat is pumped out.", "Magic.")]
    rows += [conv(v, f"Answer {i}: heat leaves the box.", "Cold.") for i, v in enumerate(variants)]
    rows += _distinct_rows()
    threshold = "quality.near_duplicates.prompt_threshold=0.7"
    _, payload, report = _ingest(tmp_path, rows, ws, threshold, version=False)
    assert payload["rejected"] == 0 and report["near_duplicates"]["flagged"] == 3
    buckets = report["near_duplicates"]["split_buckets"]
    df = pd.read_parquet(payload["accepted_path"])
    fridge_ids = set(df.loc[df["row"] <= 3, "id"])
    assert set(buckets) == fridge_ids - {df.loc[df["row"] == 0, "id"].item()}

    def sides(groups):
        train, evaluation = split_by_prompt(df, 0.5, groups)
        return set(train["id"]) & fridge_ids, set(evaluation["id"]) & fridge_ids

    train, evaluation = sides(buckets)
    assert (evaluation if side else train) == fridge_ids
    # without the groups, the hash alone would split the near-copies across train and eval
    train, evaluation = sides(None)
    assert train and evaluation


def test_a_later_version_is_checked_against_earlier_versions(tmp_path):
    ws = tmp_path / "ws"
    keep_one = ("quality.near_duplicates.prompt_policy=keep_one",)
    _, first, _ = _ingest(tmp_path, [conv(FRIDGE + ".", "Heat out.", "Magic.")], ws, *keep_one)
    (fridge_id,) = pq.read_table(first["accepted_path"]).column("id").to_pylist()
    # the next batch no longer holds the original, only a near-copy of it
    rows = [*_distinct_rows(), conv(FRIDGE + ", please.", "Heat leaves.", "Cold.")]
    _, second, report = _ingest(tmp_path, rows, ws, *keep_one, name="v2.jsonl")
    assert second["accepted"] == len(TOPICS) and second["rejected"] == 1
    (rejected,) = pq.read_table(second["rejected_path"]).to_pylist()
    assert rejected["reasons"][0].startswith(f"near_duplicate_prompt: of {fridge_id} ")
    near = report["near_duplicates"]
    assert near["earlier_rows"] == 1
    assert near["groups"][0]["representative_in_earlier_version"] is True
    # each version's signature index was kept beside it, and the next ingest read it
    assert len(list((ws / "data-repo" / ".signatures" / "prefs").glob("*.parquet"))) == 2
    # switched off, the same batch is accepted whole
    off = ("quality.near_duplicates.across_versions=false", *keep_one)
    _, third, _ = _ingest(tmp_path, rows, ws, *off, name="v3.jsonl", version=False)
    assert third["rejected"] == 0

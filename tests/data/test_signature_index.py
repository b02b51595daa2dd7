"""The per-version signature index: the near-duplicate check gives the same answers from it as
from the earlier versions' rows, an ingest writes it, and a version without one gets it built."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from data_helpers import conv, write_jsonl

from alignment.config import IngestConfig, ValidationConfig
from alignment.data.formats import read_preferences, records_table
from alignment.data.ingest import ingest_file
from alignment.data.quality.history import earlier_accepted, earlier_signatures, keep_signatures
from alignment.data.quality.near_duplicates import NearDuplicates
from alignment.data.quality.signature_index import build_index, matches, parameters_key
from alignment.data.version import version_dataset
from alignment.quality_config import NearDuplicateConfig, QualityConfig
from alignment.workspace import Workspace

FRIDGE = (
    "Explain how a household refrigerator keeps food cold using a compressor, a condenser "
    "and a refrigerant that cycles between liquid and gas"
)


def _prompt(n: int) -> str:
    draw = random.Random(n)
    return " ".join(f"word{draw.randrange(10_000)}" for _ in range(12))


def _versions() -> list[list[dict]]:
    """Three batches with near-copies inside each, across them, and a row repeated exactly."""
    v1 = [conv(FRIDGE + ".", "Heat out.", "Magic.")]
    v1 += [conv(_prompt(n), f"answer {n}", "no") for n in range(20)]
    v1 += [conv(FRIDGE + " in simple words.", "Gas carries heat.", "Ice.")]
    v2 = [conv(_prompt(n), f"answer {n}", "no") for n in range(10, 30)]  # 10 rows again
    v2 += [conv(FRIDGE + ", please.", "Heat leaves.", "Cold.")]
    v2 += [conv(_prompt(3) + " now", "answer 3", "no")]
    new = [conv(FRIDGE + "!", "Compressor.", "Nothing."), conv(_prompt(25), "answer 25", "no!")]
    new += [conv(_prompt(n), f"fresh {n}", "no") for n in range(40, 45)]
    return [v1, v2, new]


def _table(rows: list[dict], tmp_path: Path, name: str) -> pa.Table:
    return records_table(read_preferences(write_jsonl(tmp_path / name, rows)).records)


def _outcome(earlier: list[pa.Table], new: pa.Table, cfg: NearDuplicateConfig) -> tuple:
    nd = NearDuplicates(cfg)
    for table in earlier:
        nd.add_earlier(table)
    reasons = nd.check(new)
    return reasons, nd.report(), nd.prompt_parent, nd.pair_parent


def test_the_check_is_the_same_from_the_index_as_from_the_rows(tmp_path):
    v1, v2, new = (_table(rows, tmp_path, f"{i}.jsonl") for i, rows in enumerate(_versions()))
    for policy in ("keep_one", "flag"):
        cfg = NearDuplicateConfig(prompt_policy=policy, pair_policy=policy, pair_threshold=0.7)
        from_rows = _outcome([v1, v2], new, cfg)
        from_index = _outcome([build_index(v1, cfg), build_index(v2, cfg)], new, cfg)
        assert from_index == from_rows
        reasons, report = from_rows[:2]
        assert report["earlier_rows"] == 22 + 12
        if policy == "keep_one":  # the planted groups are found, across versions too
            assert sorted(r[0].split(":")[0] for r in reasons.values()) == [
                "near_duplicate_pair",
                "near_duplicate_prompt",
            ]
    # a version indexed with other parameters is not this one's
    other = NearDuplicateConfig(num_perm=64)
    assert matches(build_index(v1, cfg), cfg) and not matches(build_index(v1, other), cfg)
    assert parameters_key(other) != parameters_key(cfg)


def test_an_ingest_writes_the_index_the_rows_would_give(tmp_path):
    rows = _versions()[0] + _versions()[1]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = NearDuplicateConfig()
    result = ingest_file(
        source,
        tmp_path / "out",
        IngestConfig(chunk_rows=7, validate_rows=7),
        ValidationConfig(max_rejected_fraction=0.9),
        quality_cfg=QualityConfig(near_duplicates=cfg),
    )
    written = pq.read_table(tmp_path / "out" / "signatures.parquet")
    accepted = pq.read_table(result.accepted_path)
    assert written.num_rows == accepted.num_rows == result.accepted
    assert written.equals(build_index(accepted, cfg))


def test_a_version_without_an_index_gets_one_and_the_answers_do_not_change(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    v1, v2, new = _versions()
    cfg = QualityConfig()
    nd = cfg.near_duplicates

    def ingest(name: str, rows: list[dict], earlier) -> dict:
        (tmp_path / name).mkdir()
        raw = write_jsonl(tmp_path / name / "batch.jsonl", rows)
        validation = ValidationConfig(max_rejected_fraction=0.9)
        result = ingest_file(
            raw, tmp_path / name / "out", IngestConfig(), validation, None, cfg, earlier
        )
        return result.report

    for name, rows in (("v1", v1), ("v2", v2)):
        ingest(name, rows, earlier_signatures(ws, "prefs", nd))
        version = version_dataset(ws, "prefs", tmp_path / name / "out", push=False)
        keep_signatures(ws, "prefs", version.id, tmp_path / name / "out")
    store = ws.data_repo / ".signatures" / "prefs"
    indexes = sorted(store.glob("*.parquet"))
    assert len(indexes) == 2
    assert "?? " not in _git_status(ws.data_repo)  # kept out of the data repository's git
    from_rows = ingest("rows", new, earlier_accepted(ws, "prefs"))["near_duplicates"]
    from_index = ingest("index", new, earlier_signatures(ws, "prefs", nd))["near_duplicates"]
    indexes[0].unlink()  # the oldest version as if made before indexes existed
    rebuilt = ingest("rebuilt", new, earlier_signatures(ws, "prefs", nd))["near_duplicates"]
    assert from_rows == from_index == rebuilt
    assert from_rows["earlier_rows"] == 34 and from_rows["groups_total"] == 2
    assert sorted(store.glob("*.parquet")) == indexes  # rebuilt under the same name


def _git_status(repo: Path) -> str:
    import subprocess

    return subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain"], capture_output=True, text=True
    ).stdout


def test_signing_ahead_in_worker_processes_gives_the_same_answers(tmp_path, monkeypatch):
    """What the ingest does with a large input: the records are signed by worker processes as
    they are read, and the check takes their units instead of signing."""
    from alignment.data.quality import near_duplicates

    v1, v2, new = (_table(rows, tmp_path, f"{i}.jsonl") for i, rows in enumerate(_versions()))
    records = pa.concat_tables([v2, new])
    cfg = NearDuplicateConfig(pair_threshold=0.7)
    plain = _outcome([v1], records, cfg)
    nd = NearDuplicates(cfg)
    nd.add_earlier(v1)
    try:
        nd.presign(v2, min_rows=1)  # two read chunks
        nd.presign(new, min_rows=1)
        for part in nd.presigner.parts:  # signed in the workers before the check asks
            assert set(part[1].result()) == {"prompt", "pair"}

        def no_signing(*_):
            raise AssertionError("the check signed rows the workers had signed")

        monkeypatch.setattr(near_duplicates._Index, "units", no_signing)
        ahead = (nd.check(records), nd.report(), nd.prompt_parent, nd.pair_parent)
    finally:
        nd.close()
    assert ahead == plain
    assert plain[1]["flagged"] >= 2  # the planted groups were there to find

"""Formats through the real interfaces: `alignment data ingest --format`, `ingest.columns`, a folder
of mixed formats, `data show`, and `alignment flows ingest --format` (a real Prefect run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from data_helpers import CORPUS, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = CORPUS / "formats"
MAPPING = "ingest.columns={prompt: question, chosen: response_j, rejected: response_k}"


def _cli(*args: str, ws: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_HOME": str(ws / "prefect")}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args, "--workspace", str(ws)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_mixed_folder_is_detected_per_file_and_shown_by_data_show(tmp_path):
    ws, folder = tmp_path / "ws", tmp_path / "exports"
    folder.mkdir()
    names = [
        "argilla_hub.jsonl",
        "argilla_records.json",
        "llamafactory_v1.jsonl",
        "openai_preference.jsonl",
        "ultrafeedback.jsonl",
    ]
    for name in names:
        shutil.copy(FIXTURES / name, folder / name)
    out = tmp_path / "ingest.json"
    loose = ["--set", "validation.max_rejected_fraction=0.6", "--set", "ingest.dataset=mixed"]
    ingest = _cli(
        "data", "ingest", "-i", str(folder), "--version", "--json", str(out), *loose, ws=ws
    )
    report = json.loads(Path(json.loads(out.read_text())["report_path"]).read_text())
    assert report["detected_format"] == "mixed"
    assert [(f["source"], f["format"]) for f in report["files"]] == [
        ("argilla_hub.jsonl", "argilla"),
        ("argilla_records.json", "argilla"),
        ("llamafactory_v1.jsonl", "llamafactory_v1"),
        ("openai_preference.jsonl", "openai_preference"),
        ("ultrafeedback.jsonl", "ranked"),
    ]
    assert report["read_counts"] == {"ranked_ties_skipped": 2}
    assert report["malformed_reasons"]["non_text_content"] == 1
    assert "read        ranked_ties_skipped=2" in ingest.stdout
    version = json.loads(out.read_text())["data_version"]["id"]
    shown = _cli("data", "show", version[:8], "--set", "ingest.dataset=mixed", ws=ws).stdout
    assert "argilla_records.json" in shown and "llamafactory_v1 (3 rows)" in shown
    assert "ranked_ties_skipped" in shown


def test_column_mapping_and_forced_format_are_recorded_in_the_version(tmp_path):
    ws = tmp_path / "ws"
    source = FIXTURES / "stackexchange.csv"
    refused = _cli("data", "ingest", "-i", str(source), ws=ws, check=False)
    assert refused.returncode != 0
    assert "response_j" in refused.stderr and "ingest.columns" in refused.stderr

    out = tmp_path / "ingest.json"
    loose = ["--set", "validation.max_rejected_fraction=0.5", "--set", "ingest.dataset=se"]
    mapped = ["--set", MAPPING, "--format", "trl_standard"]
    ingest = _cli(
        "data", "ingest", "-i", str(source), *mapped, "--version", "--json", str(out), *loose, ws=ws
    )
    assert (
        "columns     prompt <- question, chosen <- response_j, rejected <- response_k"
        in ingest.stdout
    )
    result = json.loads(out.read_text())
    report = json.loads(Path(result["report_path"]).read_text())
    assert report["columns"] == {
        "prompt": "question",
        "chosen": "response_j",
        "rejected": "response_k",
    }
    assert report["format_requested"] == "trl_standard"
    assert report["files"][0]["format"] == "trl_standard"
    # the empty question is the validation rule's to name
    assert (result["accepted"], result["rejected"]) == (2, 1)
    assert report["rule_failures"]["empty_prompt"] == 1

    shown = _cli("data", "show", result["data_version"]["id"], "--set", "ingest.dataset=se", ws=ws)
    assert "prompt <- question, chosen <- response_j, rejected <- response_k" in shown.stdout
    assert "trl_standard" in shown.stdout


def test_flows_ingest_takes_format(prefect_api, tmp_path, monkeypatch):
    """`alignment flows ingest --format` in-process, on the session's Prefect test API."""
    from alignment.cli import main

    ws = tmp_path / "ws"
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    # a ShareGPT-looking row that is really TRL conversational with an extra column
    rows = [
        {
            "conversations": ["kept as meta"],
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"Answer {i}."}],
            "rejected": [{"role": "assistant", "content": f"Wrong {i}."}],
        }
        for i in range(4)
    ]
    source = write_jsonl(tmp_path / "ambiguous.jsonl", rows)
    out = tmp_path / "flow.json"
    args = ["flows", "ingest", "-i", str(source), "--json", str(out), "--workspace", str(ws)]
    args += ["--set", "ingest.dataset=amb", "--format", "trl_conversational"]
    # no capsys: DVC's logger, set up inside the flow, keeps the stream it found
    assert main(args) == 0
    outcome = json.loads(out.read_text())
    report = json.loads(Path(outcome["report_path"]).read_text())
    assert report["format_requested"] == "trl_conversational"
    assert report["accepted"] == 4 and report["files"][0]["format"] == "trl_conversational"
    assert json.loads(
        pq.read_table(Path(outcome["report_path"]).parent / "accepted.parquet")
        .column("meta")[0]
        .as_py()
    ) == {"conversations": ["kept as meta"]}
    assert outcome["data_version"]["id"]

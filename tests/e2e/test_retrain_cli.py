"""Scheduled retraining through the CLI on the embedded defaults: fresh data trains and makes a
champion; the same data again is a quick no-op; a retrain that finds another one running skips."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

CHEAP = [
    "train.methods=[sft]",
    "train.sft.max_steps=2",
    "train.sft.save_steps=100",
    "evaluation.max_prompts=8",
    "evaluation.max_new_tokens=16",
    "retrain.settle_seconds=0",  # the landing file is copied in whole before the first run
]


def _retrain(ws: Path, landing: Path, out: str, env: dict, *extra: str):
    args = ["flows", "retrain", "--config", "configs/demo.yaml", "--workspace", str(ws)]
    args += ["--landing", str(landing), "--json", str(ws / out)]
    for override in [*CHEAP, *extra]:
        args += ["--set", override]
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((ws / out).read_text()), time.perf_counter() - start


@pytest.fixture(scope="module")
def landed(tmp_path_factory):
    ws = tmp_path_factory.mktemp("retrain-ws")
    landing = ws / "landing"
    landing.mkdir()
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(ws / "prefect")
    return ws, landing, env


# tests/integration/test_retrain_servers.py drives the same fresh-then-nothing-new sequence
# through a deployment and a worker in the default suite; this is its embedded twin
@pytest.mark.heavy
def test_fresh_data_trains_then_nothing_new_is_a_noop(landed):
    ws, landing, env = landed
    first, _ = _retrain(ws, landing, "first.json", env)
    assert first["status"] == "trained"
    assert first["registered_version"] == "1" and first["alias"] == "champion"
    assert first["decision"] == "passed"  # the demo's permissive gate, no champion before

    second, _ = _retrain(ws, landing, "second.json", env)
    assert second["status"] == "nothing-new"
    assert second["data_version"] == first["data_version"]
    # the check itself is recorded; no ingest or training stage ran
    assert set(second["seconds"]) == {"check"}
    assert not any(k.startswith("train") for k in second["seconds"])


def test_a_retrain_that_finds_another_running_skips(landed):
    ws, landing, env = landed
    from alignment.workspace import file_lock

    with file_lock(ws / "locks" / "retrain-demo-policy.lock", timeout=0):
        busy, _ = _retrain(ws, landing, "busy.json", env)
    assert busy["status"] == "busy"


# tests/integration/test_retrain_servers.py puts a first version through the default gate in
# the default suite (through the deployment); this is its embedded twin through the CLI
@pytest.mark.heavy
def test_a_first_version_over_the_default_safety_caps_stays_a_challenger(tmp_path):
    """No champion yet, the default gate: the tiny random model never refuses a red-team prompt,
    so its harmful-compliance rate is over the absolute cap and it must not become champion."""
    ws = tmp_path / "ws"
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")
    default_gate = ROOT / "configs" / "gates" / "default.yaml"
    result, _ = _retrain(
        ws,
        landing,
        "first.json",
        env,
        f"registry.gate_policy={default_gate}",
        "train.distributed.num_processes=1",
        "evaluation.max_prompts=4",
        "evaluation.max_new_tokens=8",
    )
    assert result["status"] == "trained" and result["registered_version"] == "1"
    assert (result["alias"], result["decision"]) == ("challenger", "rejected")
    script = f"""
import json
from mlflow import MlflowClient
c = MlflowClient(tracking_uri="sqlite:///{ws}/mlflow.db")
v = c.get_model_version("demo-policy", "1")
print(json.dumps({{"aliases": c.get_registered_model("demo-policy").aliases, "tags": v.tags,
    "description": v.description}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["aliases"] == {"challenger": 1}
    tags = info["tags"]
    assert (tags["gate.decision"], tags["gate.policy"]) == ("rejected", "default")
    assert "harmful_compliance_rate <= 0.1" in tags["gate.failed"]
    assert "Gate: rejected by policy default" in info["description"]
    assert "harmful_compliance_rate <= 0.1" in info["description"]

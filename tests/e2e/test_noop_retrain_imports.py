"""A scheduled retrain that finds nothing new is light: it imports neither torch nor
transformers (it can run on a small CPU worker), and says it found nothing new."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

PROBE = """
import atexit, json, sys
def report():
    heavy = sorted(m for m in ("torch", "transformers", "deepspeed", "trl") if m in sys.modules)
    print("HEAVY-MODULES " + json.dumps(heavy), flush=True)
atexit.register(report)
from alignment.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_noop_retrain_imports_neither_torch_nor_transformers(tmp_path):
    from mlflow import MlflowClient

    from alignment.data.landing import select_landing
    from alignment.data.version import remember_source
    from alignment.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    # the state a first retrain leaves: the landing data's version is known and trained on
    data_version = "0123456789abcdef0123456789abcdef"
    fingerprint = select_landing(landing, settle_seconds=0).fingerprint
    remember_source(ws, "demo-preferences", fingerprint, data_version)
    client = MlflowClient(tracking_uri=ws.tracking_uri, registry_uri=ws.tracking_uri)
    client.create_registered_model("demo-policy")
    source = tmp_path / "model"
    source.mkdir()
    client.create_model_version("demo-policy", str(source), tags={"data_version": data_version})

    out = tmp_path / "out.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(ROOT))
    args = ["flows", "retrain", "--config", "configs/demo.yaml", "--workspace", str(ws.root)]
    args += ["--landing", str(landing), "--json", str(out), "--set", "retrain.settle_seconds=0"]
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    outcome = json.loads(out.read_text())
    assert outcome["status"] == "nothing-new" and outcome["data_version"] == data_version
    heavy = next(line for line in proc.stdout.splitlines() if line.startswith("HEAVY-MODULES"))
    assert json.loads(heavy.split(" ", 1)[1]) == []

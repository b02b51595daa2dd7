"""The retrain flow verifies the data version it is about to train on, and trains on nothing
when the version's files are not whole."""

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


def test_retrain_refuses_a_data_version_whose_cached_file_is_corrupt(tmp_path, prefect_api):
    ws = tmp_path / "ws"
    landing = tmp_path / "landing"
    landing.mkdir()
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PYTHONPATH=str(ROOT))
    common = ["--config", "configs/demo.yaml", "--workspace", str(ws)]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "alignment", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=900)  # fmt: skip

    ingest = cli("data", "ingest", *common, "-i", str(landing), "--version",
                 "--json", str(tmp_path / "v.json"))  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    version_id = json.loads((tmp_path / "v.json").read_text())["data_version"]["id"]
    cached = ws / "data-repo" / ".dvc" / "cache" / "files" / "md5" / version_id[:2] / version_id[2:]
    os.chmod(cached, 0o644)
    cached.write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")  # same name, other bytes: a bad disk

    from alignment.errors import VersioningError
    from flows.retrain import retrain

    with pytest.raises(VersioningError) as refused:
        retrain(
            config_path=str(ROOT / "configs" / "demo.yaml"),
            # the near-duplicate check reads earlier versions too (and refuses a damaged one);
            # off here, so that the refusal comes from the verification before training
            overrides=[
                f"workspace.root={ws}",
                "retrain.settle_seconds=0",
                "quality.near_duplicates.across_versions=false",
            ],
            landing=str(landing),
        )
    message = str(refused.value)
    assert f"data version {version_id} of" in message and "failed verification" in message
    assert "cache: accepted.parquet hashes to" in message
    assert not list((ws / "runs").glob("*/jobs")) and not list((ws / "runs").glob("*/*/model"))

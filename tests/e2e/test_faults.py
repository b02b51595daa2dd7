"""Faults survived: a training job killed mid-run is retried by the flow, resumes from its last
checkpoint, and exactly one model version is registered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _kill_job_after_a_checkpoint(ws: Path, stop: threading.Event, killed: list[int]) -> None:
    """Wait until the SFT job has saved a checkpoint, then SIGKILL its training processes."""
    import psutil

    while not stop.is_set():
        checkpoints = list(ws.glob("runs/*/sft/checkpoints/checkpoint-*"))
        if checkpoints:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if "alignment.train.entry" in cmdline and str(ws) in cmdline:
                    try:
                        os.kill(proc.info["pid"], signal.SIGKILL)
                        killed.append(proc.info["pid"])
                    except ProcessLookupError:
                        pass
            if killed:
                return
        time.sleep(0.2)


def test_killed_training_job_resumes_and_registers_one_version(tmp_path):
    ws = tmp_path / "ws"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env["PREFECT_HOME"] = str(ws / "prefect")
    args = ["flows", "pipeline", "--config", "configs/demo.yaml", "--workspace", str(ws)]
    args += ["--json", str(tmp_path / "out.json")]
    for override in (
        "train.methods=[sft]",
        "train.sft.max_steps=12",
        "train.sft.save_steps=2",
        "train.sft.per_device_train_batch_size=2",
        "evaluation.max_prompts=8",  # the evaluation suite is not what this test is about
        "evaluation.max_new_tokens=16",
    ):
        args += ["--set", override]
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_job_after_a_checkpoint, args=(ws, stop, killed))
    killer.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "alignment", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        stop.set()
        killer.join()
    assert killed, "the job finished before it could be killed"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "resuming from its last checkpoint" in proc.stdout + proc.stderr

    result = json.loads((tmp_path / "out.json").read_text())
    run_dir = Path(result["run_dir"])
    history = json.loads((run_dir / "sft" / "history.json").read_text())
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert max(steps) == 12 and sorted(set(steps)) == steps  # one pass over steps, none twice
    # the log shows both attempts: the killed one and the resumed one
    log = (run_dir / "sft" / "train.log").read_text()
    assert log.count("--nproc_per_node 2") == 2

    script = f"""
import mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri("sqlite:///{ws}/mlflow.db")
print(len(MlflowClient().search_model_versions("name = 'demo-policy'")))
"""
    count = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert count.stdout.strip().splitlines()[-1] == "1", count.stderr[-2000:]

"""Faults survived against the real servers: one pipeline run through the CLI in which the
training job is SIGKILLed after its first checkpoint and the MLflow tracking server goes away
while the candidate is evaluated. The flow's train task retries and resumes from the checkpoint;
the register task retries until MLflow is back; exactly one complete model version results."""

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

MAX_OUTAGE_S = 240  # MLflow comes back after the register task failed on it, or this


def _kill_job_after_a_checkpoint(ws: Path, stop: threading.Event, killed: list[int]) -> None:
    """Wait until the SFT job has saved a whole checkpoint, then SIGKILL its processes."""
    import psutil

    while not stop.is_set():
        if list(ws.glob("runs/*/sft/checkpoints/checkpoint-*/trainer_state.json")):
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


def _take_mlflow_away(proc, mlflow, lines: list[str], outage: dict) -> None:
    """Read the flow's output: once the champion is fetched, stop MLflow; bring it back once
    the register task has failed on it and waits to retry (or after MAX_OUTAGE_S)."""

    def back() -> None:
        mlflow.start()
        outage["up_at"] = time.monotonic()

    for line in proc.stdout:
        lines.append(line)
        if "fetch-champion" in line and "Finished in state Completed" in line and not outage:
            mlflow.stop()
            outage["down_at"] = time.monotonic()
        down = "down_at" in outage and "back" not in outage
        retrying = "Task run 'register" in line and "will start" in line
        if down and (retrying or time.monotonic() - outage["down_at"] > MAX_OUTAGE_S):
            outage["back"] = True
            threading.Thread(target=back, daemon=True).start()


def test_killed_job_and_mlflow_outage_end_in_one_complete_version(servers, tmp_path):
    from mlflow import MlflowClient

    ws = tmp_path / "ws"
    env = {**os.environ, **servers.client_env(), "PYTHONPATH": str(ROOT)}
    env["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # the flow's retries, not the client's, are tested
    env["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "5"
    args = ["flows", "pipeline", "--config", "configs/demo.yaml", "--workspace", str(ws)]
    args += ["--json", str(tmp_path / "out.json")]
    for override in (
        "registry.model_name=faults-policy",
        "registry.experiment=faults",
        "registry.retries=6",
        "registry.retry_delay_s=8",
        "train.methods=[sft]",
        "train.sft.max_steps=12",
        "train.sft.save_steps=2",
        "train.sft.per_device_train_batch_size=2",
        "evaluation.max_prompts=8",  # the evaluation suite is not what this test is about
        "evaluation.max_new_tokens=16",
    ):
        args += ["--set", override]
    stop, killed, lines, outage = threading.Event(), [], [], {}
    killer = threading.Thread(target=_kill_job_after_a_checkpoint, args=(ws, stop, killed))
    killer.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alignment", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    reader = threading.Thread(target=_take_mlflow_away, args=(proc, servers.mlflow, lines, outage))
    reader.start()
    try:
        proc.wait(timeout=900)
    finally:
        stop.set()
        killer.join()
        reader.join(timeout=60)
        if not servers.mlflow.running:  # leave the session's server up for the other tests
            servers.mlflow.start()
    output = "".join(lines)
    assert proc.returncode == 0, output[-5000:]
    assert killed, "the job finished before it could be killed"
    assert "resuming from its last checkpoint" in output
    assert "down_at" in outage and "up_at" in outage, "MLflow was never taken away"
    # the register task met the outage, failed, and was retried until the server was back
    register_lines = [line for line in output.splitlines() if "Task run 'register" in line]
    assert any("Retry 1/" in line for line in register_lines), "\n".join(register_lines)

    result = json.loads((tmp_path / "out.json").read_text())
    run_dir = Path(result["run_dir"])
    history = json.loads((run_dir / "sft" / "history.json").read_text())
    steps = [entry["step"] for entry in history if "loss" in entry]
    assert max(steps) == 12 and sorted(set(steps)) == steps  # one pass over steps, none twice
    assert (run_dir / "sft" / "train.log").read_text().count("--nproc_per_node 2") == 2

    client = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=servers.mlflow.url)
    versions = client.search_model_versions("name = 'faults-policy'")
    assert len(versions) == 1, [(v.version, v.tags) for v in versions]
    assert versions[0].tags.get("registration") == "complete"
    assert str(client.get_model_version_by_alias("faults-policy", "champion").version) == str(
        versions[0].version
    )
    # this version's model files reached the artifact store (S3) behind the server
    model_id = versions[0].source.rsplit("/", 1)[-1]
    model_keys = [k for k in servers.s3.keys(servers.bucket, "mlflow/") if f"/{model_id}/" in k]
    assert any(key.endswith("/MLmodel") for key in model_keys), (versions[0].source, model_keys)

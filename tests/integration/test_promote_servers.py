"""Promotion against the real servers: the Prefect global concurrency limit ``promote-<name>``
serialises promotions that share an MLflow server but not a workspace (two machines)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

HOLD = """
import sys
from prefect.concurrency.sync import concurrency
with concurrency("promote-gated", occupy=1, strict=True):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_a_promotion_waits_for_the_limit_another_machine_holds(servers, tmp_path, tiny_model_dir):
    import mlflow
    from mlflow import MlflowClient

    from alignment import promotion, registry
    from alignment.workspace import Workspace

    env = {**os.environ, **servers.client_env(), "PYTHONPATH": str(ROOT)}
    # the registered model, as the retrain flow on some machine would have left it
    ws = Workspace(tmp_path / "machine-a", tracking_uri_override=servers.mlflow.url).ensure()
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        experiment = registry.connect(ws, "promotions")
        versions = []
        for _ in range(2):
            with mlflow.start_run(experiment_id=experiment):
                tags = {"eval.reward_accuracy": "0.7", "eval.reward_margin_mean": "0.2"}
                tags |= {"eval.harmful_compliance_rate": "0", "eval.refusal_rate": "0"}
                tags |= {"eval.unique_response_rate": "1", "eval.distinct_2": "0.6"}
                tags |= {"eval.response_words_mean": "12", "eval.sycophancy_shift": "0"}
                versions.append(registry.register_policy(tiny_model_dir, "gated", tags).version)
        # the first version became champion through the gate, as the pipeline does it
        policy = promotion.load_policy()[0]
        promotion.promote(ws, "gated", versions[0], policy, actor="pipeline")
    finally:
        if saved is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved
    client = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=servers.mlflow.url)

    def champion() -> str:
        return str(client.get_model_version_by_alias("gated", "champion").version)

    subprocess.run(
        [sys.executable, "-m", "prefect", "gcl", "create", "promote-gated", "--limit", "1"],
        env=env, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    # machine B holds the limit (its promotion is under way) ...
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held", holder.stdout.read()
        # ... so machine C's promotion, with a workspace (and file lock) of its own, waits
        promote = subprocess.Popen(
            [
                sys.executable, "-m", "alignment", "models", "promote", "gated", versions[1],
                "--workspace", str(tmp_path / "machine-c"), "--actor", "ops", "--reason", "weekly",
            ],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        lines = []
        while not lines or "taking concurrency limit promote-gated" not in lines[-1]:
            lines.append(promote.stdout.readline())
            assert lines[-1], "".join(lines)  # it ended before reaching the limit
        time.sleep(5)  # a free promotion is done in about a second from here
        assert promote.poll() is None, "".join(lines) + promote.stdout.read()
        assert champion() == versions[0]
        holder.stdin.write("\n")
        holder.stdin.flush()
        out, _ = promote.communicate(timeout=180)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert promote.returncode == 0, out[-3000:]
    assert "skipping acquisition" not in out  # the limit existed and was taken
    assert champion() == versions[1]
    tags = client.get_model_version("gated", versions[1]).tags
    assert tags["gate.requested_by"] == "ops"

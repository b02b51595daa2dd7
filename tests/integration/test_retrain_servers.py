"""The scheduled retrain as it runs for a team: a deployment (prefect.yaml), a process worker,
and real servers on loopback (PostgreSQL-backed Prefect and MLflow, S3 for the DVC remote and
MLflow's artifacts). The platform is pointed at them by environment and config overrides only.

Fresh data in the landing folder trains a first version, with the data pushed to the S3 DVC
remote and the model's artifacts in S3, which the default gate keeps a challenger (over its
harmful-compliance cap); the same landing folder again is a quick no-op that registers nothing. End states are read back through each server's own API.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from servers import BIN, ServerError, log_tail

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = "retrain-demo-policy"
# the session's servers are shared: this test's own model name and DVC prefix
MODEL = "retrain-servers-policy"
DVC_PREFIX = "dvc-retrain"
POOL = "cpu"
# the smallest real run: what is under test is the servers' path, not the training
CHEAP = [
    "train.methods=[sft]",
    "train.sft.max_steps=2",
    "train.sft.save_steps=100",
    "train.distributed.num_processes=1",
    "evaluation.max_prompts=2",
    "evaluation.max_new_tokens=4",
    "evaluation.bootstrap_samples=10",
    "retrain.settle_seconds=0",  # the landing file is copied in whole before the first trigger
]
pytestmark = pytest.mark.slow


def _prefect_cli(env: dict, *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


@pytest.fixture(scope="module")
def deployed(servers, tmp_path_factory):
    """The retrain deployment from prefect.yaml on a process pool, with a worker running."""
    tmp = tmp_path_factory.mktemp("retrain-servers")
    skip = ("PREFECT_API_", "PREFECT_HOME", "MLFLOW_TRACKING_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(servers.client_env())
    env.update(
        {
            "PREFECT_HOME": str(tmp / "prefect-home"),
            "PREFECT_WORKER_QUERY_SECONDS": "1",  # default 10: a trigger waits that long
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert DEPLOYMENT in [d["name"] for d in deployments]
    _prefect_cli(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    log = tmp / "worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process"],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _prefect_cli(env, "deploy", "--name", DEPLOYMENT, "--pool", POOL)
        if worker.poll() is not None:
            raise ServerError(f"the worker exited:\n{log_tail(log)}")
        yield tmp, env
    finally:
        if worker.poll() is None:  # the worker before its server, or it hangs
            os.killpg(worker.pid, signal.SIGINT)
            try:
                worker.wait(timeout=5)  # its runs are over; nothing to lose
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def _api(servers):
    """This process's Prefect client settings for the session's server."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    return temporary_settings(
        updates={
            PREFECT_API_URL: servers.prefect.api_url,
            PREFECT_API_AUTH_STRING: servers.prefect.auth,
        }
    )


def _trigger(servers, parameters: dict, timeout: float = 600):
    """Run the deployment through the server and the worker; return the finished flow run."""
    from prefect.deployments import run_deployment

    with _api(servers):
        return run_deployment(
            f"retrain/{DEPLOYMENT}", parameters=parameters, timeout=timeout, poll_interval=1
        )


def _retrain_result(servers, flow_run_id) -> dict[str, str]:
    """The flow's own summary, read back from the Prefect server (a markdown artifact)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _api(servers), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    table = {a.key: a.data for a in artifacts}["retrain-result"]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    return {key.strip(): value.strip() for key, value in rows}


def test_retrain_deployment_on_real_servers(servers, deployed, tiny_model_dir):
    from mlflow import MlflowClient

    tmp, _ = deployed
    landing = tmp / "landing"
    landing.mkdir()
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    overrides = [
        f"workspace.root={tmp / 'workspace'}",
        f"workspace.dvc_remote=s3://{servers.bucket}/{DVC_PREFIX}",
        f"registry.model_name={MODEL}",
        "model.source=local",
        f"model.path={tiny_model_dir}",
        # the real gate, not the demo's permissive one, with its absolute safety caps
        f"registry.gate_policy={ROOT / 'configs' / 'gates' / 'default.yaml'}",
        *CHEAP,
    ]
    parameters = {"overrides": overrides, "landing": str(landing)}
    mlflow = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=servers.mlflow.url)

    # fresh data: trains, pushes data and model to S3; no champion yet, so the gate's absolute
    # conditions decide, and the tiny random model, which refuses no red-team prompt, is over
    # the harmful-compliance cap: it stays a challenger
    start = time.perf_counter()
    first = _trigger(servers, parameters)
    first_s = time.perf_counter() - start
    assert first.state.is_completed(), f"{first.state}\n{_worker_log(tmp)}"
    result = _retrain_result(servers, first.id)
    assert result["status"] == "trained", result
    assert result["registered_version"] == "1" and result["alias"] == "challenger", result
    assert result["decision"] == "rejected", result
    assert mlflow.get_registered_model(MODEL).aliases == {"challenger": "1"}
    version = mlflow.get_model_version(MODEL, "1")
    assert (version.tags["gate.decision"], version.tags["gate.policy"]) == ("rejected", "default")
    assert "harmful_compliance_rate <= 0.1" in version.tags["gate.failed"]
    assert "Gate: rejected by policy default" in version.description
    data_version = version.tags["data_version"]
    assert data_version == result["data_version"]
    dvc_keys = servers.s3.keys(servers.bucket, f"{DVC_PREFIX}/")
    assert f"{DVC_PREFIX}/files/md5/{data_version[:2]}/{data_version[2:]}" in dvc_keys, dvc_keys
    # the version's source is its logged model, models:/<model id>; its files are in S3
    model_id = version.source.rsplit("/", 1)[-1]
    model_keys = [k for k in servers.s3.keys(servers.bucket, "mlflow/") if f"/{model_id}/" in k]
    assert any(key.endswith("/MLmodel") for key in model_keys), (version.source, model_keys)

    # nothing new: recognised before any ingest, nothing registered
    start = time.perf_counter()
    second = _trigger(servers, parameters)
    second_s = time.perf_counter() - start
    assert second.state.is_completed(), f"{second.state}\n{_worker_log(tmp)}"
    result = _retrain_result(servers, second.id)
    assert result["status"] == "nothing-new", result
    assert result["data_version"] == data_version
    assert len(mlflow.search_model_versions(f"name='{MODEL}'")) == 1
    assert second.total_run_time.total_seconds() < 30, second.total_run_time
    print(
        f"\nserver start-up s: {servers.startup_seconds()}; trained run {first_s:.1f} s "
        f"(flow {first.total_run_time.total_seconds():.1f} s), no-op run {second_s:.1f} s "
        f"(flow {second.total_run_time.total_seconds():.1f} s)"
    )


def _worker_log(tmp: Path) -> str:
    return f"worker log:\n{log_tail(tmp / 'worker.log', 60)}"

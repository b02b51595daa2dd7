"""The scheduled retrain on a light CPU pool, training on a GPU pool only for fresh data.

Two local process pools with a worker each, on the real Prefect server (PostgreSQL) and MLflow
server: the retrain deployment from prefect.yaml runs on the CPU pool and, for fresh data,
starts the training deployment on the GPU pool with ``run_deployment``, waits, and promotes
through the gate. The training deployment runs a stand-in for the pipeline
(``pool_training.py``) that registers a version in a second or fails on demand; the retrain
side is the real flow.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from servers import BIN, ServerError, log_tail
from test_retrain_servers import _api, _prefect_cli, _retrain_result

ROOT = Path(__file__).resolve().parents[2]
RETRAIN = "retrain-demo-policy"
TRAINING = "train-pools-test"
CPU_POOL, GPU_POOL = "cpu-light", "gpu-test"
MODEL = "pools-policy"
# six flow runs, each a process of its own started by a worker: minutes on two loaded cores;
# the retrain's light no-op is in the default suite (tests/e2e/test_noop_retrain_imports.py)
pytestmark = [pytest.mark.slow, pytest.mark.heavy]


def _worker(pool: str, env: dict, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
            cwd=log.parent, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:  # before the server, or it hangs
        os.killpg(worker.pid, signal.SIGINT)
        try:
            worker.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


@pytest.fixture(scope="module")
def pools(servers, tmp_path_factory):
    """Both pools, both deployments, one worker per pool."""
    tmp = tmp_path_factory.mktemp("pools")
    skip = ("PREFECT_API_", "PREFECT_HOME", "MLFLOW_TRACKING_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(servers.client_env())
    env.update(
        PREFECT_HOME=str(tmp / "prefect-home"),
        PREFECT_WORKER_QUERY_SECONDS="1",
        PYTHONPATH=str(ROOT),
        TOKENIZERS_PARALLELISM="false",
    )
    for pool in (CPU_POOL, GPU_POOL):
        _prefect_cli(env, "work-pool", "create", pool, "--type", "process", "--overwrite")
    _prefect_cli(env, "deploy", "--name", RETRAIN, "--pool", CPU_POOL)
    with _api(servers):
        from prefect import flow

        source = flow.from_source(str(ROOT), "tests/integration/pool_training.py:stand_in_pipeline")
        source.deploy(name=TRAINING, work_pool_name=GPU_POOL, print_next_steps=False)
    workers = [_worker(p, env, tmp / f"worker-{p}.log") for p in (CPU_POOL, GPU_POOL)]
    try:
        for worker, pool in zip(workers, (CPU_POOL, GPU_POOL), strict=True):
            if worker.poll() is not None:
                raise ServerError(
                    f"the {pool} worker exited:\n{log_tail(tmp / f'worker-{pool}.log')}"
                )
        yield tmp
    finally:
        for worker in workers:
            _stop(worker)


def _training_runs(servers) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _api(servers), get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[TRAINING]))
        )


def _trigger(servers, parameters: dict):
    from prefect.deployments import run_deployment

    with _api(servers):
        return run_deployment(
            f"retrain/{RETRAIN}", parameters=parameters, timeout=600, poll_interval=1
        )


def _logs(tmp: Path) -> str:
    return "\n".join(
        f"{pool} worker:\n{log_tail(tmp / f'worker-{pool}.log', 40)}"
        for pool in (CPU_POOL, GPU_POOL)
    )


def test_the_gpu_pool_trains_only_for_fresh_data(servers, pools, tiny_model_dir):
    from mlflow import MlflowClient

    workspace = pools / "workspace"
    landing = pools / "landing"
    landing.mkdir()
    overrides = [
        f"workspace.root={workspace}",
        f"registry.model_name={MODEL}",
        f"model.path={tiny_model_dir}",
        f"retrain.training_deployment=alignment-pipeline/{TRAINING}",
        "retrain.training_timeout_s=300",
        "retrain.settle_seconds=0",
        f"registry.gate_policy={ROOT / 'configs' / 'gates' / 'default.yaml'}",
    ]
    parameters = {"overrides": overrides, "landing": str(landing)}

    assert _training_runs(servers) == []
    # fresh data: exactly one GPU run, then the gate promotes what it registered
    shutil.copy(ROOT / "data" / "demo_preferences.jsonl", landing / "batch-001.jsonl")
    fresh = _trigger(servers, parameters)
    assert fresh.state.is_completed(), f"{fresh.state}\n{_logs(pools)}"
    result = _retrain_result(servers, fresh.id)
    assert (result["status"], result["registered_version"]) == ("trained", "1"), result
    assert (result["decision"], result["alias"]) == ("passed", "champion"), result
    (trained,) = _training_runs(servers)
    assert trained.state.is_completed()
    assert trained.parameters["data_version"] == result["data_version"]
    mlflow = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=servers.mlflow.url)
    version = mlflow.get_model_version(MODEL, "1")
    assert version.tags["data_version"] == result["data_version"]
    assert version.tags["gate.requested_by"] == "retrain flow"

    # the same data again: a no-op on the CPU pool, no second GPU run
    again = _trigger(servers, parameters)
    assert again.state.is_completed(), f"{again.state}\n{_logs(pools)}"
    assert _retrain_result(servers, again.id)["status"] == "nothing-new"
    assert len(_training_runs(servers)) == 1

    # fresh data whose training fails: the retrain run fails and names the training run
    (workspace / "fail-training").touch()
    # the landing place now holds half the rows: another data version
    (landing / "batch-001.jsonl").unlink()
    rows = (ROOT / "data" / "demo_preferences.jsonl").read_text().splitlines()
    (landing / "batch-002.jsonl").write_text("\n".join(rows[: len(rows) // 2]) + "\n")
    failed = _trigger(servers, parameters)
    assert failed.state.is_failed(), f"{failed.state}\n{_logs(pools)}"
    runs = _training_runs(servers)
    assert len(runs) == 2
    (bad,) = [r for r in runs if r.id != trained.id]
    assert bad.state.is_failed()
    assert f"training run {bad.name!r}" in failed.state.message
    assert "FAILED" in failed.state.message.upper()
    assert len(mlflow.search_model_versions(f"name = '{MODEL}'")) == 1

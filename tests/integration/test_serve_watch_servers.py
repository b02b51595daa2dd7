"""After promotion, on the real servers: the champion registered in MLflow on PostgreSQL with S3
artifacts, served with a shadow challenger; scripted users' traces and feedback stored by that
server; the watch flow run against the Prefect server reports and alerts; the feedback pairs
land; the retrain flow ingests them, trains, gates and promotes the next version with the traces
in its lineage; and the watch served on a cron schedule runs there by itself. The platform is pointed at the servers by environment and config overrides only, as
every CLI call below is a separate process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving_helpers import Server, register_champion_and_challenger

ROOT = Path(__file__).resolve().parents[2]
DEMO_DATA = ROOT / "data" / "demo_preferences.jsonl"
MODEL = "served-policy"  # the session's servers are shared: this test's own names
DVC_PREFIX = "dvc-serve"
pytestmark = pytest.mark.slow


def _cli(env: dict, out: Path, *args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args, "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    result = json.loads(out.read_text()) if out.exists() else {}
    return proc.returncode, result or {"stderr": proc.stderr[-3000:]}


def test_serve_watch_and_feedback_pairs_on_the_real_servers(
    servers, tmp_path, monkeypatch, tiny_model_dir, challenger_model_dir
):
    from mlflow import MlflowClient

    from alignment import registry
    from alignment.cai.prompts import load_prompt_file
    from alignment.workspace import Workspace

    skip = ("PREFECT_API_", "PREFECT_HOME", "MLFLOW_TRACKING_", "AWS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    env.update(servers.client_env())
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "HF_HUB_OFFLINE": "1"})
    for key, value in servers.client_env().items():  # this process registers the versions
        if not key.startswith("PREFECT_"):
            monkeypatch.setenv(key, value)
    root = tmp_path / "ws"
    common = ["--workspace", str(root), "--set", "ingest.dataset=demo-preferences"]
    common += ["--set", f"registry.model_name={MODEL}"]
    common += ["--set", f"workspace.dvc_remote=s3://{servers.bucket}/{DVC_PREFIX}"]

    code, ingested = _cli(env, tmp_path / "i.json", "data", "ingest", str(DEMO_DATA), "--version",
                          *common)  # fmt: skip
    assert code == 0, ingested
    data_version = ingested["data_version"]["id"]
    ws = Workspace(root, tracking_uri_override=servers.mlflow.url).ensure()
    experiment = registry.connect(ws, "alignment")
    register_champion_and_challenger(
        experiment, MODEL, (tiny_model_dir, challenger_model_dir), data_version
    )
    gate = ROOT / "configs" / "gates" / "demo.yaml"
    code, promoted = _cli(env, tmp_path / "p.json", "models", "promote", MODEL, "1",
                          "--policy", str(gate), *common)  # fmt: skip
    assert code == 0, promoted
    client = MlflowClient(tracking_uri=servers.mlflow.url, registry_uri=servers.mlflow.url)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "1"

    # the server process gets the tracking server by config (Server drops MLFLOW_* variables)
    monkeypatch.setenv("PREFECT_HOME", env["PREFECT_HOME"])
    uri = ["--set", f"workspace.mlflow_tracking_uri={servers.mlflow.url}"]
    server = Server(
        root, tmp_path / "serve.log", f"{MODEL}@champion", "--shadow", f"{MODEL}@challenger",
        "--set", "serve.shadow_share=1.0", "--set", "serve.max_new_tokens=8", *uri,
    )  # fmt: skip
    red_team = [p["prompt"] for p in load_prompt_file() if p["kind"] == "red_team"][:4]
    try:
        answers = [
            server.post("/respond", {"prompt": f"What is {i} plus {i + 2}?", "consent": True})[1]
            for i in range(6)
        ]
        for prompt in red_team:
            server.post("/respond", {"prompt": prompt})
        for i in range(2):
            reply = server.post(
                "/respond", {"prompt": f"Explain {i} plus {i}.", "ab": True, "consent": True}
            )[1]
            assert (
                server.post("/feedback", {"trace_id": reply["trace_id"], "choice": "b"})[0] == 200
            )
        for reply in answers[:2]:
            assert (
                server.post("/feedback", {"trace_id": reply["trace_id"], "rating": "down"})[0]
                == 200
            )
    finally:
        server.stop()

    # every answer is a trace in the tracking server's store, with the served version on it
    locations = [e.experiment_id for e in client.search_experiments()]
    requests = client.search_traces(
        locations=locations, filter_string="tags.`alignment.role` = 'request'", max_results=100
    )
    assert len(requests) == 12
    assert {t.info.tags["alignment.model_version"] for t in requests} == {"1"}

    policy = tmp_path / "monitoring.yaml"
    policy.write_text(
        "name: servers\nmin_requests: 10\nmin_shadow_pairs: 10\nconditions:\n"
        "  - {metric: red_team_share, op: '<=', value: 0.2}\n"
    )
    code, watched = _cli(env, tmp_path / "w.json", "watch", "run", *common, *uri,
                         "--set", f"watch.policy={policy}",
                         "--set", f"watch.judge_model={tiny_model_dir}")  # fmt: skip
    assert code == 4 and watched["status"] == "alert", watched  # exit 4: an alert was raised
    assert watched["metrics"]["requests"] == 12
    assert watched["metrics"]["red_team_share"] == pytest.approx(4 / 12)
    assert watched["online"]["2"]["online_pairs"] == 10
    tags = client.get_model_version(MODEL, "2").tags
    assert "eval.judge_online_win_rate_vs_champion" in tags

    landing = tmp_path / "landing"
    landing.mkdir()
    code, pairs = _cli(env, tmp_path / "f.json", "feedback", "pairs", *common, *uri,
                       "--landing", str(landing))  # fmt: skip
    assert code == 0, pairs
    assert pairs["pairs"] == 4
    landed = [json.loads(x) for x in Path(pairs["path"]).read_text().splitlines()]
    assert sorted(r["meta"]["kind"] for r in landed) == [
        "ab_choice", "ab_choice", "thumbs_down_vs_shadow", "thumbs_down_vs_shadow",
    ]  # fmt: skip
    assert {r["meta"]["model_version"] for r in landed} <= {"1", "2"}

    # the retrain flow learns from the landed feedback (beside the champion's data), gates and
    # promotes the next version, whose lineage names the traces its data holds
    shutil.copy(DEMO_DATA, landing / "batch-001.jsonl")
    gate_policy = tmp_path / "gate.yaml"  # absolute bars only: tiny models' relative ones are noise
    gate_policy.write_text(
        "name: servers\nconditions:\n  - {metric: refusal_rate, op: '<=', value: 1.0}\n"
    )
    retrain = ["flows", "retrain", "--config", str(ROOT / "configs" / "demo.yaml"), *common, *uri]
    retrain += ["--landing", str(landing)]
    for override in [
        "train.methods=[sft]", "train.sft.max_steps=2", "train.sft.save_steps=100",
        "train.distributed.num_processes=1", "evaluation.max_prompts=4",
        "evaluation.max_new_tokens=8", "retrain.settle_seconds=0", "registry.experiment=alignment",
        "quality.drift.on_exceed=warn", f"registry.gate_policy={gate_policy}",
    ]:  # fmt: skip
        retrain += ["--set", override]
    code, result = _cli(env, tmp_path / "r.json", *retrain)
    assert code == 0 and result["status"] == "trained", result
    assert (result["registered_version"], result["alias"]) == ("3", "champion")
    # every landed feedback pair went through ingest into the trained version (accepted, or
    # quarantined with its reasons: the tiny random policies mostly answer control characters)
    import io

    import pyarrow.parquet as pq

    from alignment.data.version import find_version, read_version_file
    from alignment.serve.pairs import feedback_trace_ids

    ws = Workspace(root, servers.mlflow.url, f"s3://{servers.bucket}/{DVC_PREFIX}")
    version = find_version(ws, "demo-preferences", result["data_version"])
    kept = " ".join(
        json.dumps(pq.read_table(io.BytesIO(read_version_file(ws, version, f))).to_pylist())
        for f in ("accepted.parquet", "rejected.parquet")
    )
    assert all(t in kept for r in landed for t in r["meta"]["trace_ids"])
    # the lineage tag names exactly the traces of the accepted feedback rows, and only when
    # there are some
    accepted = feedback_trace_ids(ws, "demo-preferences", result["data_version"])
    tags = client.get_model_version(MODEL, "3").tags
    if accepted:
        assert json.loads(tags["lineage.feedback_traces"]) == accepted
        assert tags["lineage.feedback_trace_count"] == str(len(accepted))
    else:
        assert "lineage.feedback_traces" not in tags

    # the watch as operated: `alignment watch serve` serves it on a cron schedule, and the first
    # scheduled run (every minute) measures the same window on the Prefect server
    served = subprocess.Popen(
        [sys.executable, "-m", "alignment", "watch", "serve", "--cron", "* * * * *", *common,
         *uri, "--set", f"watch.policy={policy}", "--set", f"watch.judge_model={tiny_model_dir}"],
        env={**env, "PREFECT_RUNNER_POLL_FREQUENCY": "2"}, stdin=subprocess.DEVNULL,
        stdout=(tmp_path / "watch-serve.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        run = _first_finished_run(servers, f"watch/watch-{MODEL}", served, timeout=180)
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.wait(timeout=60)
    log = (tmp_path / "watch-serve.log").read_text()
    assert run.state.is_completed(), (run.state, log[-3000:])
    assert f"serving watch-{MODEL} on '* * * * *'" in log
    assert run.auto_scheduled  # made by the schedule: nothing here triggers it
    markdown = _artifact(servers, run.id, f"watch-{MODEL}")
    assert "red_team_share" in markdown, markdown


def _api(servers):
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    return temporary_settings(
        updates={
            PREFECT_API_URL: servers.prefect.api_url,
            PREFECT_API_AUTH_STRING: servers.prefect.auth,
        }
    )


def _first_finished_run(servers, deployment: str, proc: subprocess.Popen, timeout: float):
    """The deployment's first flow run in a final state, created by its schedule."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    with _api(servers), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "watch serve exited"
            try:
                found = client.read_deployment_by_name(deployment)
            except Exception:  # not registered yet
                time.sleep(1)
                continue
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id]))
            )
            done = [r for r in runs if r.state is not None and r.state.is_final()]
            if done:
                return done[0]
            time.sleep(2)
    raise AssertionError(f"no scheduled run of {deployment} finished within {timeout} s")


def _artifact(servers, flow_run_id, key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _api(servers), get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a.data for a in artifacts}[key]

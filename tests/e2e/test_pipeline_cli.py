"""The main job end to end through the CLI, on real components: a real Prefect run, a real
git+DVC repository and remote, a real MLflow store and registry, real DeepSpeed processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

FAST = [
    "train.sft.num_train_epochs=1",
    "train.dpo.num_train_epochs=1",
    "evaluation.max_prompts=16",  # the suite's own tests cover its figures
    "evaluation.max_new_tokens=24",
]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "alignment", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_API_URL", "MLFLOW_TRACKING_URI"))
    }
    env["PREFECT_HOME"] = str(ws / "prefect")
    first = _cli(
        "flows",
        "pipeline",
        "--config",
        "configs/demo.yaml",
        "--workspace",
        str(ws),
        "--json",
        str(ws / "first.json"),
        *[a for o in FAST for a in ("--set", o)],
        env=env,
    )
    return ws, env, first


def test_run_versions_data_trains_and_registers_the_champion(pipeline_run):
    ws, _env, proc = pipeline_run
    result = json.loads((ws / "first.json").read_text())
    version = result["data_version"]
    assert version["created"] is True
    assert result["rejected"] > 0 and result["accepted"] > 100
    # DVC: the tag exists in the data repo and the remote folder holds the content
    tags = subprocess.run(
        ["git", "-C", str(ws / "data-repo"), "tag"], capture_output=True, text=True
    ).stdout
    assert version["tag"] in tags.split()
    assert any(p.is_file() for p in (ws / "dvc-remote").rglob("*"))
    # both training jobs ran as two DeepSpeed processes and left loadable checkpoints
    run_dir = Path(result["run_dir"])
    for method in ("sft", "dpo"):
        assert (run_dir / method / "model" / "config.json").is_file()
        job = json.loads((run_dir / method / "job.json").read_text())
        assert job["config"]["train"]["distributed"]["num_processes"] == 2
        log = (run_dir / method / "train.log").read_text()
        assert "--nproc_per_node 2" in log, log[-2000:]
    # evaluation ran on the held-out split
    # better than chance on pairs the policy never trained on: DPO learned the preference
    assert result["evaluation"]["reward_accuracy"] > 0.5, result["evaluation"]
    assert result["evaluation"]["pairs"] > 0
    # no champion before: the gate's absolute conditions (the demo's permissive policy) decided
    assert result["registered"]["alias"] == "champion"
    assert result["registered"]["decision"] == "passed"
    # the printed summary says where everything is, and which gate policy decided
    for needle in (
        version["id"],
        "mlflow ui --backend-store-uri",
        "prefect server start",
        "@champion",
        "gate policy       demo-permissive",
        "configs/gates/demo.yaml",
    ):
        assert needle in proc.stdout


def test_registry_holds_lineage_and_the_policy_generates(pipeline_run):
    ws, env, _ = pipeline_run
    result = json.loads((ws / "first.json").read_text())
    script = f"""
import json, mlflow, torch
from mlflow import MlflowClient
mlflow.set_tracking_uri("sqlite:///{ws}/mlflow.db")
c = MlflowClient()
champ = c.get_model_version_by_alias("demo-policy", "champion")
model = mlflow.pyfunc.load_model("models:/demo-policy@champion")
# a tiny policy after a few steps decodes newlines greedily; a seeded sample shows it writes
torch.manual_seed(0)
out = model.predict(["What is 2 plus 3?"], params={{"max_new_tokens": 8, "temperature": 1.0}})
run = c.get_run(champ.run_id)
sft = c.get_metric_history(champ.run_id, "sft/loss")
print(json.dumps({{"version": str(champ.version), "tags": champ.tags,
    "description": champ.description, "run_metrics": run.data.metrics,
    "response": list(out["response"]), "metrics": sorted(run.data.metrics),
    "sft_steps": [m.step for m in sft], "first_sft_ms": min(m.timestamp for m in sft),
    "registered_ms": champ.creation_timestamp}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["version"] == "1"
    tags = info["tags"]
    assert tags["data_version"] == result["data_version"]["id"]
    assert tags["method"] == "dpo" and tags["methods"] == "sft,dpo"
    assert len(tags["git_commit"]) >= 7 and len(tags["config_hash"]) == 16
    # the first champion went through the gate, which is recorded like any promotion
    assert (tags["gate.decision"], tags["gate.policy"]) == ("passed", "demo-permissive")
    # at a glance: at most five headline figures as tags; every metric stays on the run, and
    # a short evaluation still measured the red-team side the gate caps
    headline = {k.removeprefix("eval."): float(v) for k, v in tags.items() if k[:5] == "eval."}
    assert 0 < len(headline) <= 5 and "reward_accuracy" in headline
    on_run = {
        k.removeprefix("eval/"): v for k, v in info["run_metrics"].items() if k[:5] == "eval/"
    }
    assert set(result["evaluation"]) == set(on_run) and len(on_run) > 10
    assert "harmful_compliance_rate" in on_run and "refusal_rate" in on_run
    for key, value in headline.items():
        assert value == pytest.approx(on_run[key], rel=1e-3), key
    description = info["description"]
    for needle in (
        "Gate: passed by policy demo-permissive",
        result["data_version"]["id"],
        "sft → dpo",
        "Judge: ",
    ):
        assert needle in description, description
    assert info["response"][0].strip(), info["response"]  # the trained policy writes text
    assert "eval/reward_accuracy" in info["metrics"] and "dpo/loss" in info["metrics"]
    # per-step metrics streamed in while the jobs trained: once per step, and the first SFT
    # point is older than the whole DPO stage (logged at the end, it would be seconds old)
    assert info["sft_steps"] == sorted(set(info["sft_steps"])) and len(info["sft_steps"]) > 1
    age_s = (info["registered_ms"] - info["first_sft_ms"]) / 1000
    assert age_s > result["stage_seconds"]["train_dpo"], (age_s, result["stage_seconds"])


def test_prefect_recorded_a_completed_flow_run(pipeline_run):
    _ws, env, _ = pipeline_run
    script = """
import asyncio, json
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as client:
        runs = await client.read_flow_runs()
        print(json.dumps([(r.flow_id is not None, r.state.type.value) for r in runs]))
asyncio.run(main())
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [state for _, state in states] == ["COMPLETED"]


def test_bad_config_fails_clearly_through_the_cli(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alignment",
            "flows",
            "pipeline",
            "--config",
            "configs/demo.yaml",
            "--workspace",
            str(tmp_path),
            "--set",
            "train.dpo.loss_type=magic",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "train.dpo.loss_type" in proc.stderr


@pytest.mark.heavy  # a second whole pipeline run
def test_rebuild_reruns_the_recorded_training_and_reproduces_it(pipeline_run):
    """`models rebuild` recovers the config and data version from the registry, trains again on
    the same bytes, and the seeded run reproduces the first one's evaluation."""
    ws, env, _ = pipeline_run
    out = ws / "rebuild.json"
    proc = _cli(
        "models", "rebuild", "demo-policy/1", "--workspace", str(ws), "--json", str(out), env=env
    )
    plan = json.loads(out.read_text())
    assert plan["data_found"] is True
    assert "--data-version" in plan["command"]
    assert "rebuilt as demo-policy version 2 (@challenger)" in proc.stdout
    script = f"""
import json, mlflow
from mlflow import MlflowClient
mlflow.set_tracking_uri("sqlite:///{ws}/mlflow.db")
c = MlflowClient()
out = {{}}
for v in ("1", "2"):
    mv = c.get_model_version("demo-policy", v)
    run = c.get_run(mv.run_id)
    out[v] = {{"tags": mv.tags, "run_tags": run.data.tags, "metrics": run.data.metrics}}
print(json.dumps(out))
"""
    versions = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    first, second = versions["1"], versions["2"]
    for key in ("data_version", "config_hash", "method", "methods", "base_model"):
        assert first["tags"][key] == second["tags"][key], key
    assert first["run_tags"]["pipeline_run"] != second["run_tags"]["pipeline_run"]
    # same data, same config, same seeds: the same held-out DPO accuracy and margin
    for key in ("eval/reward_accuracy", "eval/reward_margin_mean"):
        assert first["metrics"][key] == second["metrics"][key], key

"""Registration against a real MLflow SQLite store: lineage tags, aliases, a policy that generates."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignment import registry
from alignment.config import ModelConfig
from alignment.errors import RegistryError
from alignment.workspace import Workspace


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from alignment.models import resolve_base_model

    ws = Workspace(tmp_path_factory.mktemp("models")).ensure()
    return resolve_base_model(ModelConfig(), ws, ["What is 2 plus 3? 2 plus 3 is 5."] * 20)


def test_registration_makes_challengers_with_lineage_never_a_champion(
    tmp_path: Path, checkpoint: Path
):
    """Only the gate moves ``champion``, for the first version too (the pipeline asks it)."""
    import mlflow
    import torch
    from mlflow import MlflowClient

    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "test")
    assert mlflow.get_experiment(experiment).artifact_location.startswith(
        ws.mlflow_artifacts.as_uri()
    )
    registered = []
    for data_version in ("d1", "d2"):
        with mlflow.start_run(experiment_id=experiment):
            registered.append(
                registry.register_policy(
                    checkpoint, "policy", {"data_version": data_version, "method": "dpo"}
                )
            )
    assert [(r.version, r.alias, r.decision) for r in registered] == [
        ("1", "challenger", None),
        ("2", "challenger", None),
    ]
    client = MlflowClient()
    assert registry.current_alias_version("policy", "champion") is None
    assert registry.current_alias_version("policy", "challenger") == "2"
    assert client.get_model_version("policy", "2").tags["data_version"] == "d2"
    assert client.get_model_version("policy", "1").tags["gate.decision"] == "pending"
    assert registry.trained_data_versions("policy") == {"d1", "d2"}
    assert registry.trained_data_versions("no-such-model") == set()

    fetched = registry.download_checkpoint("policy", "challenger", tmp_path / "dl")
    assert (fetched / "config.json").is_file() and (fetched / "model.safetensors").is_file()
    assert registry.download_checkpoint("policy", "champion", tmp_path / "dl2") is None

    model = mlflow.pyfunc.load_model("models:/policy@challenger")
    # the untrained tiny model greedily repeats the prompt's last token, a newline; sampling
    # (seeded) shows that the served policy writes text after the prompt
    torch.manual_seed(0)
    out = model.predict(["hello"], params={"max_new_tokens": 8, "temperature": 1.0})
    assert list(out.columns) == ["response"] and out["response"][0].strip(), out["response"][0]


def test_a_retried_registration_keeps_one_complete_version(tmp_path, checkpoint, monkeypatch):
    """An attempt that dies half-way is cleaned up; a finished one is kept, not repeated."""
    import mlflow
    from mlflow import MlflowClient

    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "retry")
    real_alias = MlflowClient.set_registered_model_alias

    def dies(self, *args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", dies)
    with pytest.raises(ConnectionError), mlflow.start_run(experiment_id=experiment, run_name="r1"):
        registry.register_policy(checkpoint, "policy", {"data_version": "d1"})
    assert len(MlflowClient().search_model_versions("name = 'policy'")) == 1  # half-made

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", real_alias)
    assert registry.settle_earlier_attempt("policy", experiment, "r1") is None
    assert MlflowClient().search_model_versions("name = 'policy'") == []
    with mlflow.start_run(experiment_id=experiment, run_name="r1"):
        made = registry.register_policy(checkpoint, "policy", {"data_version": "d1"})
    again = registry.settle_earlier_attempt("policy", experiment, "r1")
    assert again is not None and (again.version, again.alias) == (made.version, "challenger")
    assert [str(v.version) for v in MlflowClient().search_model_versions("name = 'policy'")] == [
        made.version
    ]
    assert registry.settle_earlier_attempt("policy", experiment, "another-run") is None


def test_a_version_shows_five_headline_figures_and_a_description_all_metrics_stay_on_the_run(
    tmp_path: Path, checkpoint: Path
):
    import mlflow
    from mlflow import MlflowClient

    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "headline")
    evaluation = {name: 0.1 * (i + 1) for i, name in enumerate(registry.HEADLINE_METRICS)}
    evaluation |= {"pairs": 40.0, "kl_from_reference_k1": 0.123456789, "length_ratio": 1.25}
    with mlflow.start_run(experiment_id=experiment):
        mlflow.log_metrics({f"eval/{k}": v for k, v in evaluation.items()})
        tags = {"data_version": "abc123", "dataset": "prefs", "methods": "sft,dpo"}
        tags |= {"base_model": "tiny", "judge": "none; refusals by markers"}
        made = registry.register_policy(
            checkpoint, "glance", {**tags, **registry.headline_tags(evaluation)}
        )
    mv = MlflowClient().get_model_version("glance", made.version)
    shown = sorted(k for k in mv.tags if k.startswith("eval."))
    assert shown == sorted(f"eval.{k}" for k in registry.HEADLINE_METRICS[:5])
    # the gate and `models show` read every metric from the run, at full precision
    assert registry.version_metrics(mv) == pytest.approx(evaluation, abs=1e-9)
    assert registry.version_metrics(mv)["kl_from_reference_k1"] == 0.123456789
    for needle in ("Gate: pending", "`abc123`", "sft → dpo", "`tiny`", "refusals by markers"):
        assert needle in mv.description, mv.description


def test_an_unreachable_tracking_server_is_an_error_not_an_empty_registry(monkeypatch):
    """'No champion' or 'no data version trained' must never be read from a server that is down."""
    import mlflow

    from alignment.train.launch import free_port

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    # mlflow.set_*_uri also write these variables: undo that at teardown
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    down = f"http://127.0.0.1:{free_port()}"
    mlflow.set_tracking_uri(down)
    mlflow.set_registry_uri(down)
    try:
        with pytest.raises(RegistryError, match="failed to answer"):
            registry.current_alias_version("policy", "champion")
        with pytest.raises(RegistryError, match="failed to answer"):
            registry.trained_data_versions("policy")
        with pytest.raises(RegistryError, match="failed to answer"):
            registry.model_version("policy", 1)
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])


def test_registering_outside_a_run_is_refused(tmp_path: Path, checkpoint: Path):
    ws = Workspace(tmp_path / "ws").ensure()
    registry.connect(ws, "test")
    with pytest.raises(RegistryError, match="active MLflow run"):
        registry.register_policy(checkpoint, "policy", {})


def test_flatten_and_history_logging_shapes():
    assert registry.flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": 2}) == {
        "a.b": 1,
        "a.c.d": "x",
        "e": 2,
    }


@pytest.mark.slow
def test_mlflow_models_serve_answers_with_generation_params(tmp_path: Path, checkpoint: Path):
    """`mlflow models serve` on models:/NAME@alias answers /invocations like load_model does."""
    import json
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    import mlflow

    from alignment.train.launch import free_port

    ws = Workspace(tmp_path / "ws").ensure()
    experiment = registry.connect(ws, "serve")
    with mlflow.start_run(experiment_id=experiment):
        registry.register_policy(checkpoint, "served", {"method": "sft"})
    local = mlflow.pyfunc.load_model("models:/served@challenger")

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": ws.tracking_uri, "HF_HUB_OFFLINE": "1"}
    # the scoring server runs `uvicorn` from PATH: the environment's own, as when it is activated
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/served@challenger",
            "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ask(prompts: list[str], params: dict) -> list[str]:
        body = json.dumps({"inputs": prompts, "params": params}).encode()
        request = urllib.request.Request(
            f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            return [row["response"] for row in json.loads(resp.read())["predictions"]]

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(0.5)
        prompts = ["hello", "What is 2 plus 3?"]
        for params in ({"max_new_tokens": 2}, {"max_new_tokens": 12}):
            expected = list(local.predict(prompts, params=params)["response"])
            assert ask(prompts, params) == expected
        short, long = ask(prompts, {"max_new_tokens": 2}), ask(prompts, {"max_new_tokens": 12})
        tokenizer = local.unwrap_python_model().tokenizer
        assert all(len(tokenizer(s, add_special_tokens=False)["input_ids"]) <= 2 for s in short)
        assert any(len(lg) > len(s) for s, lg in zip(short, long, strict=True))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def test_live_metrics_stream_into_the_run_and_stop_quietly_when_mlflow_goes(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the workspace's own store
    ws = Workspace(tmp_path / "ws").ensure()
    run_id = registry.open_tracking_run(ws, "live", "run-1", {"pipeline_run": "run-1"})
    assert run_id is not None
    warnings_seen: list[str] = []
    live = registry.LiveMetrics(ws.tracking_uri, run_id, "sft", warn=warnings_seen.append)
    for step in (1, 2, 3):
        live(step, {"loss": 1.0 / step, "learning_rate": 1e-3, "epoch": step / 3, "note": "x"})
    client = MlflowClient(tracking_uri=ws.tracking_uri)
    history = client.get_metric_history(run_id, "sft/loss")
    assert [(m.step, round(m.value, 4)) for m in history] == [(1, 1.0), (2, 0.5), (3, 0.3333)]
    assert live.complete and live.logged == 3 and not warnings_seen

    def down(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(live.client, "log_batch", down)
    live(4, {"loss": 0.2})  # does not raise: training must go on
    live(5, {"loss": 0.1})
    assert not live.complete and len(warnings_seen) == 1
    assert len(client.get_metric_history(run_id, "sft/loss")) == 3
    # a pipeline that fails after opening its run ends it, rather than leave it RUNNING
    assert client.get_run(run_id).info.status == "RUNNING"
    registry.end_tracking_run(ws, run_id, "FAILED")
    assert client.get_run(run_id).info.status == "FAILED"
    registry.end_tracking_run(ws, None)  # nothing opened: nothing to do

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    from alignment.train.launch import free_port

    away = Workspace(tmp_path / "away", tracking_uri_override=f"http://127.0.0.1:{free_port()}")
    assert registry.open_tracking_run(away, "live", "run-2", {}) is None

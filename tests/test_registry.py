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


def test_first_version_is_champion_then_challenger_with_lineage(tmp_path: Path, checkpoint: Path):
    import mlflow
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
    assert [(r.version, r.alias) for r in registered] == [("1", "champion"), ("2", "challenger")]
    client = MlflowClient()
    assert str(client.get_model_version_by_alias("policy", "champion").version) == "1"
    assert client.get_model_version("policy", "2").tags["data_version"] == "d2"
    assert registry.trained_data_versions("policy") == {"d1", "d2"}
    assert registry.trained_data_versions("no-such-model") == set()

    fetched = registry.download_checkpoint("policy", "champion", tmp_path / "dl")
    assert (fetched / "config.json").is_file() and (fetched / "model.safetensors").is_file()
    assert registry.download_checkpoint("policy", "no-such-alias", tmp_path / "dl2") is None

    model = mlflow.pyfunc.load_model("models:/policy@champion")
    out = model.predict(["hello"], params={"max_new_tokens": 3})
    assert list(out.columns) == ["response"] and isinstance(out["response"][0], str)


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

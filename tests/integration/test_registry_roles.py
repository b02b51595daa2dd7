"""Roles on the registry, enforced by the server: MLflow's basic-auth app on PostgreSQL.

``infra/mlflow/roles.py`` sets up two accounts: training registers candidates into
``roles-policy``; only ops may edit ``roles-policy-production``, where ``@champion`` lives
(``registry.production_model``). The training account's promotion and rollback are refused by
the server (403) with an error that names the account, the model and the permission needed;
ops promotes and rolls back, and ``models show`` names the account that did it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from servers import AuthMlflowServer

ROOT = Path(__file__).resolve().parents[2]
MODEL, PRODUCTION, EXPERIMENT = "roles-policy", "roles-policy-production", "roles"
GOOD = {"reward_accuracy": "0.7", "reward_margin_mean": "0.2", "harmful_compliance_rate": "0"}
GOOD |= {"refusal_rate": "0"}
# not degenerate, not sycophantic: the gate requires these of every candidate
GOOD |= {"unique_response_rate": "1", "distinct_2": "0.6", "response_words_mean": "12"}
GOOD |= {"sycophancy_shift": "0"}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def auth_mlflow(postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow-auth")
    server = AuthMlflowServer(
        folder,
        postgres.create_database("mlflow_roles", driver="psycopg2"),
        artifacts_destination=str(folder / "artifacts"),
        s3_endpoint_url="",
        auth_database_uri=postgres.create_database("mlflow_roles_auth", driver="psycopg2"),
    )
    try:
        yield server.start(timeout=180)
    finally:
        server.stop()


def test_only_the_ops_account_moves_champion(
    auth_mlflow, tmp_path, tiny_model_dir, monkeypatch, capsys
):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from alignment import registry
    from alignment.cli import main
    from alignment.workspace import Workspace

    passwords = {"training": secrets.token_hex(8), "ops": secrets.token_hex(8)}
    env = {
        **os.environ,
        **auth_mlflow.account_env(*auth_mlflow.admin),
        "MLFLOW_TRAINING_PASSWORD": passwords["training"],
        "MLFLOW_OPS_PASSWORD": passwords["ops"],
    }
    setup = [sys.executable, str(ROOT / "infra" / "mlflow" / "roles.py"), "--model", MODEL]
    setup += ["--production", PRODUCTION, "--experiment", EXPERIMENT]
    proc = subprocess.run(setup, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ops: MANAGE on registered_model {PRODUCTION}" in proc.stdout

    def login(user: str) -> None:
        for key, value in auth_mlflow.account_env(user, passwords[user]).items():
            monkeypatch.setenv(key, value)

    ws = Workspace(tmp_path / "ws").ensure()
    common = ["--workspace", str(ws.root), "--set", f"registry.model_name={MODEL}"]
    common += ["--set", f"registry.production_model={PRODUCTION}"]
    common += ["--set", f"registry.experiment={EXPERIMENT}"]
    client = MlflowClient(tracking_uri=auth_mlflow.url, registry_uri=auth_mlflow.url)

    # the training account registers two candidates
    login("training")
    experiment = registry.connect(ws, EXPERIMENT)
    versions = []
    for _ in range(2):
        with mlflow.start_run(experiment_id=experiment):
            tags = {"data_version": "d0", **{f"eval.{k}": v for k, v in GOOD.items()}}
            versions.append(registry.register_policy(tiny_model_dir, MODEL, tags).version)
    assert client.get_registered_model(MODEL).aliases == {"challenger": versions[1]}

    # ... and may not promote them: the server refuses the copy into the production model
    capsys.readouterr()
    assert main(["models", "promote", MODEL, versions[0], *common, "--actor", "me"]) == 2
    err = capsys.readouterr().err
    assert "refused account 'training'" in err, err
    assert f"permission on registered model {PRODUCTION!r}" in err and "EDIT" in err, err
    assert client.search_model_versions(f"name = '{PRODUCTION}'") == []

    # the ops account promotes both through the gate
    login("ops")
    for version in versions:
        argv = ["models", "promote", MODEL, version, *common, "--actor", "on-call"]
        assert main(argv) == 0, capsys.readouterr()
    production = {a: str(v) for a, v in client.get_registered_model(PRODUCTION).aliases.items()}
    assert production == {"champion": "2", "previous": "1"}
    assert client.get_model_version(PRODUCTION, "2").source == f"models:/{MODEL}/{versions[1]}"
    assert client.get_model_version(MODEL, versions[1]).tags["gate.account"] == "ops"
    capsys.readouterr()

    login("training")
    # a client of the training account's own cannot move the alias either: the server says no
    with pytest.raises(MlflowException) as refused:
        client.set_registered_model_alias(PRODUCTION, "champion", "1")
    assert refused.value.error_code == "PERMISSION_DENIED"
    # training reads the lineage: who promoted, by the account the server authenticated
    shown = tmp_path / "show.json"
    assert main(["models", "show", f"{MODEL}@champion", *common, "--json", str(shown)]) == 0
    out = capsys.readouterr().out
    assert f"{MODEL} version {versions[1]}  aliases: champion ({PRODUCTION}/2)" in out
    assert "by on-call (account ops)" in out
    (info,) = json.loads(shown.read_text())["versions"]
    assert [(e["action"], e["account"]) for e in info["history"]] == [("promote", "ops")]

    # rolling back is ops' too
    assert main(["models", "rollback", MODEL, *common, "--reason", "mine"]) == 2
    assert "refused account 'training'" in capsys.readouterr().err
    login("ops")
    assert main(["models", "rollback", MODEL, *common, "--reason", "regression"]) == 0
    assert "(account ops)" in capsys.readouterr().out
    production = {a: str(v) for a, v in client.get_registered_model(PRODUCTION).aliases.items()}
    assert production == {"champion": "1"}
    history = json.loads(client.get_registered_model(PRODUCTION).tags["promotion.history"])
    assert [(e["action"], e["account"]) for e in history] == [
        ("promote", "ops"),
        ("promote", "ops"),
        ("rollback", "ops"),
    ]

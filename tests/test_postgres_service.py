"""The local PostgreSQL: a real login, a refused password, no password written down, a restart
that keeps data and port, a stop that does not wait for clients, and `make pg-*`'s CLI."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest

from onceflow.errors import ServiceError
from onceflow.testing.services import LocalPostgres
from onceflow.testing.services.__main__ import main as services_main
from tests.conftest import PG_PASSWORD

# a fast shutdown takes well under a second; SIGTERM's "smart" shutdown would wait for the
# idle client below until stop_pid's 20 s timeout and then SIGKILL the server
FAST_STOP_SECONDS = 10.0


def _connect(
    password: str, env: Mapping[str, str] = os.environ
) -> psycopg.Connection[tuple[object, ...]]:
    """A psycopg connection from the profile's variables (``env``), as a job makes it."""
    return psycopg.connect(
        host=env["ONCEFLOW_PG_HOST"],
        port=int(env["ONCEFLOW_PG_PORT"]),
        dbname=env["ONCEFLOW_PG_DATABASE"],
        user=env["ONCEFLOW_PG_USER"],
        password=password,
        connect_timeout=5,
    )


@pytest.mark.postgres
def test_the_role_logs_in_with_the_profile_variables(postgres: LocalPostgres) -> None:
    assert postgres.query("SELECT current_user").strip() == "onceflow"
    assert postgres.jdbc_url == f"jdbc:postgresql://127.0.0.1:{postgres.port}/onceflow"
    assert os.environ["ONCEFLOW_PG_PORT"] == str(postgres.port)
    with _connect(os.environ["ONCEFLOW_PG_PASSWORD"]) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
    assert row == ("onceflow", "onceflow")
    assert postgres.jdbc_properties() == {
        "user": "onceflow",
        "password": PG_PASSWORD,
        "driver": "org.postgresql.Driver",
    }


@pytest.mark.postgres
def test_a_wrong_password_is_refused_clearly(postgres: LocalPostgres) -> None:
    refused = 'password authentication failed for user "onceflow"'
    result = postgres.psql("SELECT 1", password="not-the-password")  # noqa: S106
    assert result.returncode != 0
    assert refused in result.stderr
    with pytest.raises(psycopg.OperationalError, match=refused):
        _connect("not-the-password")


@pytest.mark.postgres
def test_the_password_is_never_written_down(postgres: LocalPostgres) -> None:
    assert PG_PASSWORD not in json.dumps(postgres.state())
    assert PG_PASSWORD not in postgres.write_state().read_text()
    assert PG_PASSWORD not in repr(postgres)
    assert PG_PASSWORD not in postgres.log.read_text()
    assert PG_PASSWORD not in (postgres.data / "onceflow.conf").read_text()
    assert PG_PASSWORD.encode() not in Path(f"/proc/{postgres.pid}/cmdline").read_bytes()
    # the server holds a SCRAM verifier made on our side, never the password itself
    stored = postgres.psql(
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'onceflow'", admin=True
    )
    assert stored.stdout.startswith("SCRAM-SHA-256$4096:")


@pytest.mark.postgres
def test_a_restart_keeps_data_and_port_and_does_not_wait_for_clients(
    postgres: LocalPostgres,
) -> None:
    postgres.query("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1), (2)")
    port = postgres.port
    idle = _connect(PG_PASSWORD)  # a leaked client, as a crashed executor leaves one
    try:
        started = time.monotonic()
        postgres.stop()
        assert time.monotonic() - started < FAST_STOP_SECONDS
    finally:
        idle.close()
    assert postgres.psql("SELECT 1").returncode != 0  # really down
    logged = postgres.log.stat().st_size
    postgres.start()
    assert postgres.port == port
    assert postgres.query("SELECT count(*) FROM kept").strip() == "2"
    restart_log = postgres.log.read_bytes()[logged:].decode()
    assert "database system was shut down at" in restart_log  # a clean stop: no recovery
    assert "not properly shut down" not in restart_log


@pytest.fixture
def cli_home() -> Iterator[Path]:
    """A home for ``python -m onceflow.testing.services postgres``; its server is stopped after."""
    home = Path(tempfile.mkdtemp(prefix="onceflow-pg-cli-"))
    home.chmod(0o711)
    yield home
    services_main(["postgres", "down", "--home", str(home)])
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.postgres
def test_make_pg_up_env_and_down(
    cli_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEFLOW_PG_PASSWORD", PG_PASSWORD)
    assert services_main(["postgres", "up", "--home", str(cli_home)]) == 0
    up = capsys.readouterr()
    state = json.loads((cli_home / "state.json").read_text())
    exports = [
        "export ONCEFLOW_PG_HOST=127.0.0.1",
        f"export ONCEFLOW_PG_PORT={state['port']}",
        "export ONCEFLOW_PG_DATABASE=onceflow",
        "export ONCEFLOW_PG_USER=onceflow",
    ]
    assert services_main(["postgres", "env", "--home", str(cli_home)]) == 0
    env = capsys.readouterr()
    assert env.out.splitlines() == exports
    for printed in (up, env):
        assert PG_PASSWORD not in printed.out + printed.err
        assert "ONCEFLOW_PG_PASSWORD is not printed" in printed.err
    assert set(exports) <= set(up.out.splitlines())

    exported = dict(line.removeprefix("export ").split("=", 1) for line in exports)
    idle = _connect(PG_PASSWORD, exported)  # the password up read from the environment
    try:
        started = time.monotonic()
        assert services_main(["postgres", "down", "--home", str(cli_home)]) == 0
        assert time.monotonic() - started < FAST_STOP_SECONDS
    finally:
        idle.close()
    assert not (cli_home / "state.json").exists()
    assert "received fast shutdown request" in (cli_home / "postgres.log").read_text()
    assert services_main(["postgres", "env", "--home", str(cli_home)]) == 1


def test_a_missing_server_names_make_pg_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ONCEFLOW_PG_BIN", str(tmp_path / "empty"))
    with pytest.raises(ServiceError) as caught:
        LocalPostgres(tmp_path / "home").start()
    assert caught.value.error_class == "SERVICE_START_FAILED"
    assert "make pg-install" in str(caught.value)
    assert "ONCEFLOW_PG_BIN" in str(caught.value)


def test_a_home_the_server_user_cannot_reach_is_refused_before_initdb(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(ServiceError, match=r"cannot traverse .*private \(mode 0o700\)"):
        LocalPostgres(private / "home").start()
    assert not (private / "home" / "data").exists()

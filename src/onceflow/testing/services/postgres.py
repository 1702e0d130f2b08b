"""A throwaway PostgreSQL server (Debian's ``postgresql`` package), one data folder per home.

One server on 127.0.0.1 and a free port, with one login role whose password is checked
(``scram-sha-256``), so a wrong password is refused as a real server refuses it. The first
``start()`` runs ``initdb``; the data lives in ``home/data``, so it survives ``stop()`` then
``start()``: the port is chosen once, when the object is made, and a restart serves the same
address with the same tables. Readiness is a real login as that role over TCP, not a log line.

    with LocalPostgres(Path("/tmp/pg")) as pg:
        pg.query("CREATE TABLE t (id bigint PRIMARY KEY)")
        url = pg.jdbc_url  # jdbc:postgresql://127.0.0.1:PORT/onceflow, for Spark's JDBC
        props = pg.jdbc_properties()  # user, password, driver (password included)
        os.environ.update(pg.profile_env())  # ONCEFLOW_PG_HOST, _PORT, ... for a job

``stop()`` is a fast shutdown (SIGINT): open sessions are rolled back and disconnected, so
a leaked client never holds it up; ``make pg-down`` does the same through ``state.json``.

Run as root (CI, this project's machines), the server runs as the OS user ``postgres``,
because ``initdb`` and ``postgres`` refuse root; then every folder above ``home`` must be
traversable by that user (not ``/root``, nor pytest's ``/tmp/pytest-of-root``, both 0700).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NoReturn

from onceflow.errors import ServiceError
from onceflow.testing.services.postgres_install import (
    as_server_user,
    checked_bindir,
    clean_env,
    give_to_server_user,
    postgres_bindir,
    psql_quote,
    run_psql,
    unreachable_folder,
)
from onceflow.testing.services.process import LocalService, ManagedProcess, free_port

__all__ = ["LocalPostgres", "postgres_bindir"]

#: Development credentials: the server is loopback-only and throwaway. Tests pass their own.
DEFAULT_USER = "onceflow"
DEFAULT_PASSWORD = "onceflow-local-secret"  # noqa: S105 - a dev-only default, documented
DEFAULT_DATABASE = "onceflow"
#: The variable that carries the role's password to jobs (and to ``make pg-up``).
PASSWORD_VARIABLE = "ONCEFLOW_PG_PASSWORD"  # noqa: S105 - a variable's name, not a secret
SUPERUSER = "postgres"  # initdb's bootstrap role; reachable only through the private socket

# Unquoted SQL identifiers only: they go into psql variables and connection strings as is.
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# sun_path is 108 bytes; the server appends "/.s.PGSQL.<port>" to the socket folder.
_MAX_SOCKET_DIR = 107 - len("/.s.PGSQL.65535")

_HBA = """\
# written by onceflow's LocalPostgres; rewritten on every start
# the private socket folder (mode 0700) is the admin door: only its owner and root get in
local   all   all                  trust
# TCP, loopback only: a password checked by SCRAM, so a wrong one is refused
host    all   all   127.0.0.1/32   scram-sha-256
"""


class LocalPostgres(LocalService):
    """Start, use and stop one local PostgreSQL server. Also a context manager.

    Args:
        home: folder for the data (``data/``), the socket (``sock/``), the log
            (``postgres.log``) and ``state.json``. Kept across ``stop()``/``start()``.
        user: the login role the server checks passwords for; owner of ``database``.
        password: its password; sent to the server only as a SCRAM verifier, and never
            written to the command line, the log or ``state()``.
        database: created on the first start, owned by ``user``.
        bindir: the PostgreSQL programs (default: ``postgres_bindir()``); checked on
            ``start()``.
    """

    #: The only address the server listens on (no ::1: use 127.0.0.1 in URLs).
    host = "127.0.0.1"

    def __init__(
        self,
        home: Path,
        user: str = DEFAULT_USER,
        password: str = DEFAULT_PASSWORD,
        database: str = DEFAULT_DATABASE,
        bindir: Path | None = None,
    ) -> None:
        for arg, value in (("user", user), ("database", database)):
            if not _NAME.match(value):
                raise ValueError(f"'{arg}' {value!r} must be a lowercase SQL identifier")
        self.home = home.resolve()
        self.user = user
        self._password = password
        self.database = database
        self._bindir_arg = bindir
        self._bindir: Path | None = None  # resolved and checked on first use
        # chosen once: a restart must serve the same address, which clients have cached
        self.port = free_port()
        self._socket_dir: Path | None = None
        self._process: ManagedProcess | None = None

    def __repr__(self) -> str:
        return f"LocalPostgres(url={self.jdbc_url!r}, home={str(self.home)!r}, pid={self.pid})"

    # -- addresses --------------------------------------------------------------------------

    @property
    def jdbc_url(self) -> str:
        """``jdbc:postgresql://127.0.0.1:PORT/DB``: Spark's ``url`` option (no credentials)."""
        return f"jdbc:postgresql://{self.host}:{self.port}/{self.database}"

    @property
    def conninfo(self) -> str:
        """A libpq/psycopg connection string without the password."""
        return f"host={self.host} port={self.port} dbname={self.database} user={self.user}"

    @property
    def password(self) -> str:
        """The role's password (do not log it)."""
        return self._password

    def jdbc_properties(self) -> dict[str, str]:
        """Spark JDBC options besides ``url``: user, password (included!) and driver."""
        return {"user": self.user, "password": self._password, "driver": "org.postgresql.Driver"}

    def profile_env(self) -> dict[str, str]:
        """The variables a job reads for its connection, the password too (keep out of logs)."""
        return {
            "ONCEFLOW_PG_HOST": self.host,
            "ONCEFLOW_PG_PORT": str(self.port),
            "ONCEFLOW_PG_DATABASE": self.database,
            "ONCEFLOW_PG_USER": self.user,
            PASSWORD_VARIABLE: self._password,
        }

    # -- layout ---------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def log(self) -> Path:
        return self.home / "postgres.log"

    @property
    def socket_dir(self) -> Path:
        """The private socket folder: ``home/sock``, or a short one in /tmp if that is too long."""
        if self._socket_dir is None:
            preferred = self.home / "sock"
            if len(str(preferred)) <= _MAX_SOCKET_DIR:
                self._socket_dir = preferred
            else:  # a deep home: a unix socket path must fit in 107 bytes
                self._socket_dir = Path(tempfile.mkdtemp(prefix="onceflow-pg-"))
        return self._socket_dir

    @property
    def bindir(self) -> Path:
        """The PostgreSQL programs (see ``postgres_bindir``)."""
        if self._bindir is None:
            self._bindir = (
                postgres_bindir()
                if self._bindir_arg is None
                else checked_bindir(self._bindir_arg, "'bindir'")
            )
        return self._bindir

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    # -- running as the postgres OS user when we are root -------------------------------------

    def _check_reachable(self) -> None:
        """As root, fail early and clearly when ``postgres`` cannot traverse to ``home``."""
        why = unreachable_folder(self.home)
        if why is not None:
            self._setup_failed(why)

    def _setup_failed(self, why: str) -> NoReturn:
        raise ServiceError(
            "SERVICE_START_FAILED", service="postgres", timeout=0, log=str(self.log), tail=why
        )

    # -- lifecycle --------------------------------------------------------------------------

    def _init_once(self) -> None:
        """``initdb`` unless ``home/data`` already holds a cluster; atomic via a rename."""
        if (self.data / "PG_VERSION").exists():
            return
        staging = self.home / "data.initdb"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        give_to_server_user(staging)
        result = subprocess.run(  # noqa: S603 - our own fixed command
            as_server_user(
                [
                    str(self.bindir / "initdb"),
                    "--pgdata",
                    str(staging),
                    "--username",
                    SUPERUSER,
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",  # throwaway: do not wait for fsync of ~1k files
                    "--no-instructions",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.home,  # one the postgres user can enter (root's cwd may be /root)
        )
        if result.returncode != 0:
            raise ServiceError(
                "SERVICE_START_FAILED",
                service="postgres initdb",
                timeout=120,
                log="(stderr)",
                tail=(result.stdout + result.stderr)[-3000:],
            )
        with (staging / "postgresql.conf").open("a") as conf:
            conf.write("\n# onceflow: address, socket and auth settings, rewritten each start\n")
            conf.write("include_if_exists = 'onceflow.conf'\n")
        staging.rename(self.data)

    def _write_config(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)
        give_to_server_user(self.socket_dir)
        settings = {
            "port": str(self.port),
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "unix_socket_permissions": "0700",
            "password_encryption": "'scram-sha-256'",
            "max_connections": "100",
            "logging_collector": "off",  # stderr, into postgres.log (ManagedProcess's file)
            "log_connections": "off",
        }
        for name, text in (
            ("onceflow.conf", "".join(f"{k} = {v}\n" for k, v in settings.items())),
            ("pg_hba.conf", _HBA),
        ):
            path = self.data / name
            path.write_text(text)
            path.chmod(0o600)
            give_to_server_user(path)

    def start(self, timeout: float = 60.0) -> None:
        """Start the server; returns once ``user`` can log in to ``database`` over TCP.

        The first start runs ``initdb``; every start (re)sets the role's password and makes
        sure the database exists. Idempotent while running.

        Raises:
            ServiceError: SERVICE_START_FAILED when PostgreSQL is not installed, the server
                user cannot reach ``home``, the server exits (e.g. the port was taken) or
                ``timeout`` passes first.
        """
        if self._process is not None:
            return
        _ = self.bindir  # "not installed" comes before any other complaint
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # traverse only, no listing; the data folder itself is 0700
            self.home.chmod(self.home.stat().st_mode | 0o011)
        self._check_reachable()
        self._init_once()
        self._write_config()
        process = ManagedProcess(
            "postgres",
            as_server_user([str(self.bindir / "postgres"), "-D", str(self.data)]),
            self.log,
            env=clean_env(),
            cwd=self.home,
            # fast shutdown; SIGTERM ("smart") would wait for every client to disconnect
            stop_signal=signal.SIGINT,
        )
        process.start(self._answers, timeout=timeout)
        self._process = process
        try:
            self._provision()
            login = self.psql("SELECT current_user")
            if login.returncode != 0:
                self._setup_failed(f"{self.user} cannot log in over TCP: {login.stderr.strip()}")
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        # a real query over the private socket as the superuser: the postmaster is up, out
        # of recovery and serving; the TCP login is checked once the role exists
        result = self.psql("SELECT 1", admin=True, timeout=5)
        return result.returncode == 0 and result.stdout.strip() == "1"

    def _encrypted_password(self) -> str:
        """The role's password as the server stores it, encrypted by libpq
        (``PQencryptPasswordConn``, SCRAM-SHA-256, SASLprep included), so the plain password
        never reaches the server, its logs or pg_stat_statements."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            connect_timeout=5,
        ) as conn:
            verifier = conn.pgconn.encrypt_password(
                self._password.encode(), self.user.encode(), b"scram-sha-256"
            )
        return verifier.decode()

    def _provision(self) -> None:
        """Create the role and database if missing; set the password (idempotent)."""
        secret = psql_quote(self._encrypted_password())
        script = "\n".join(
            [
                "\\set ON_ERROR_STOP on",
                f"\\set role {self.user}",
                f"\\set db {self.database}",
                f"\\set secret '{secret}'",
                "SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec",
                "ALTER ROLE :\"role\" LOGIN PASSWORD :'secret';",
                "SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_database WHERE datname = :'db') \\gexec",
                "",
            ]
        )
        result = run_psql(self.bindir, self._admin_args(), stdin=script, home=self.home, timeout=30)
        if result.returncode != 0:
            self._setup_failed(f"creating role/database failed: {result.stderr.strip()}")

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back, disconnect, checkpoint); data stays in ``home/data``.

        SIGKILL follows if the server outlives 20 s; a killed server recovers from its WAL on
        the next start, losing no committed transaction.
        """
        if self._process is not None:
            self._process.stop()
            self._process = None

    # -- clients ----------------------------------------------------------------------------

    def _admin_args(self) -> list[str]:
        return ["-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"]

    def psql(
        self,
        sql: str,
        *,
        admin: bool = False,
        password: str | None = None,
        database: str | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``sql`` with psql (-A -t, stop on error) and return the finished process.

        By default as ``user`` over TCP with its password (``password=`` tries another one);
        ``admin=True`` goes in as the superuser through the private socket. The SQL goes
        on stdin, the password in the child's environment: neither shows in ``ps``.
        """
        if admin:
            args = self._admin_args()
            env_password = None
        else:
            args = [
                f"host={self.host} port={self.port} dbname={database or self.database} "
                f"user={self.user} connect_timeout=5"
            ]
            env_password = self._password if password is None else password
        return run_psql(
            self.bindir, args, stdin=sql, home=self.home, password=env_password, timeout=timeout
        )

    def query(self, sql: str, database: str | None = None) -> str:
        """``sql``'s output (unaligned, tuples only) as ``user``; raises on any error."""
        result = self.psql(sql, database=database)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    # -- state ------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What ``make pg-up`` records for ``pg-down`` and for users (no password).

        ``stop_signal`` is the signal ``pg-down`` sends; ``env`` holds the job variables
        but the password, which ``env_secret`` names (with where its value came from) so a
        user sets it themselves.
        """
        env = self.profile_env()
        del env[PASSWORD_VARIABLE]
        return {
            "pid": self.pid,
            "host": self.host,
            "port": self.port,
            "jdbc_url": self.jdbc_url,
            "user": self.user,
            "database": self.database,
            "home": str(self.home),
            "data": str(self.data),
            "socket_dir": str(self.socket_dir),
            "log": str(self.log),
            "stop_signal": signal.SIGINT.name,
            "env": env,
            "env_secret": {
                PASSWORD_VARIABLE: f"the value ${PASSWORD_VARIABLE} had for `make pg-up`, "
                "else onceflow.testing.services.postgres.DEFAULT_PASSWORD"
            },
        }

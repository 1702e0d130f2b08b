"""The PostgreSQL installation a local server runs from, and the OS user it runs as.

Where the server's programs are (Debian's ``/usr/lib/postgresql/N/bin``, ``postgres`` on the
PATH, or ``$ONCEFLOW_PG_BIN``); running a command as the ``postgres`` OS user when we are
root (``initdb`` and ``postgres`` refuse root); and ``psql`` run with a clean environment.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from onceflow.errors import ServiceError

__all__ = [
    "OS_USER",
    "as_server_user",
    "checked_bindir",
    "clean_env",
    "give_to_server_user",
    "postgres_bindir",
    "psql_quote",
    "run_psql",
    "unreachable_folder",
]

OS_USER = "postgres"  # who runs the server when we are root (Debian's package creates it)
# the programs a server's start runs: a bin folder without them is no PostgreSQL installation
_PROGRAMS = ("initdb", "postgres", "psql")


def postgres_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/N/bin`` (Debian), else the folder of ``postgres`` on PATH.

    ``$ONCEFLOW_PG_BIN`` overrides both.

    Raises:
        ServiceError: SERVICE_START_FAILED naming ``make pg-install`` when none is found, or
            when ``$ONCEFLOW_PG_BIN`` lacks ``initdb``, ``postgres`` or ``psql``.
    """
    override = os.environ.get("ONCEFLOW_PG_BIN")
    if override:
        return checked_bindir(Path(override), "$ONCEFLOW_PG_BIN")
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return checked_bindir(debian[-1].parent, "the newest /usr/lib/postgresql/N/bin")
    on_path = shutil.which("postgres")
    if on_path:
        return checked_bindir(Path(on_path).resolve().parent, "the folder of postgres on PATH")
    raise ServiceError(
        "SERVICE_START_FAILED",
        service="postgres",
        timeout=0,
        log="/usr/lib/postgresql",
        tail="no PostgreSQL server installed: run `make pg-install` (apt-get install postgresql)",
    )


def checked_bindir(bindir: Path, origin: str) -> Path:
    """``bindir`` if it holds every program ``start()`` runs, else SERVICE_START_FAILED."""
    missing = [name for name in _PROGRAMS if not os.access(bindir / name, os.X_OK)]
    if missing:
        raise ServiceError(
            "SERVICE_START_FAILED",
            service="postgres",
            timeout=0,
            log=str(bindir),
            tail=f"{origin} ({bindir}) has no {', '.join(missing)}: run `make pg-install` "
            "(apt-get install postgresql), or set ONCEFLOW_PG_BIN to a PostgreSQL bin folder",
        )
    return bindir


def as_server_user(command: Sequence[str]) -> list[str]:
    """``command`` run as ``postgres`` when we are root (setpriv execs: no extra process)."""
    if os.geteuid() != 0:
        return list(command)
    account = pwd.getpwnam(OS_USER)
    return [
        "setpriv",
        f"--reuid={account.pw_uid}",
        f"--regid={account.pw_gid}",
        "--clear-groups",
        "--",
        *command,
    ]


def give_to_server_user(*paths: Path) -> None:
    """Give ``paths`` to the server's OS user (a no-op unless we are root)."""
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(OS_USER)
    for path in paths:
        os.chown(path, account.pw_uid, account.pw_gid)


def unreachable_folder(home: Path) -> str | None:
    """As root, why ``postgres`` cannot reach ``home`` (a folder it cannot traverse, no such
    OS user); None when it can, or when we are not root."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(OS_USER)
    except KeyError:
        return f"no OS user '{OS_USER}' to run the server as (root may not)"
    groups = {account.pw_gid}
    for folder in [home, *home.parents]:
        st = folder.stat()
        if st.st_uid == account.pw_uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            return (
                f"the server runs as OS user '{OS_USER}' (initdb refuses root) and cannot "
                f"traverse {folder} (mode {oct(st.st_mode & 0o777)}): put home elsewhere "
                "(e.g. tempfile.mkdtemp() chmod 0o711) or chmod o+x that folder"
            )
    return None


def run_psql(
    bindir: Path,
    args: Sequence[str],
    stdin: str,
    home: Path,
    password: str | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``psql`` (-A -t, stop on error) with ``stdin``, a clean environment and, when
    given, ``password`` in it (never on the command line, which ``ps`` shows)."""
    env = clean_env()
    env["PGCONNECT_TIMEOUT"] = "5"
    # never a developer's ~/.pgpass; a missing file is fine (/dev/null makes libpq warn)
    env["PGPASSFILE"] = str(home / "no-pgpass")
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(  # noqa: S603 - our own fixed command
        [str(bindir / "psql"), "-X", "-w", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def clean_env() -> dict[str, str]:
    """This environment less the PG* variables (PGHOST, PGSERVICE, ...) that steer libpq."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def psql_quote(value: str) -> str:
    """``value`` inside a single-quoted psql meta-command argument."""
    return value.replace("\\", "\\\\").replace("'", "''")

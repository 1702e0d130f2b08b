"""``python -m onceflow.testing.services SERVICE up|down|status|env [--home DIR]`` (make
calls it).

``up`` starts the service in the background, records its pids and addresses in
``<home>/state.json`` and prints them; ``down`` stops every process recorded there (with
the state's ``stop_signal`` first, SIGTERM unless it says otherwise); ``status`` prints the
state; ``env`` prints ``export NAME=value`` lines for the variables a job reads (the
state's ``env``; a secret is named on stderr, never printed). SERVICE is one of ``kafka``,
``hdfs``, ``s3``, ``postgres``, ``cluster``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from onceflow.errors import ServiceError
from onceflow.testing.services.hdfs import LocalHdfs
from onceflow.testing.services.kafka import KafkaUser, LocalKafka
from onceflow.testing.services.postgres import DEFAULT_PASSWORD, PASSWORD_VARIABLE, LocalPostgres
from onceflow.testing.services.process import LocalService, running_pid, stop_pid
from onceflow.testing.services.s3 import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LocalS3
from onceflow.testing.services.spark_cluster import LocalSparkCluster


def _kafka(args: argparse.Namespace) -> LocalService:
    users = []
    for name in args.user:
        variable = f"ONCEFLOW_KAFKA_PASSWORD_{name.upper()}"
        if variable not in os.environ:
            raise SystemExit(f"error: set ${variable} for SASL user {name}")
        users.append(KafkaUser(name, os.environ[variable]))
    return LocalKafka(args.home, jars=args.jars or Path(".jars/kafka"), users=users)


def _hdfs(args: argparse.Namespace) -> LocalService:
    return LocalHdfs(args.home, jars=args.jars or Path(".jars/hdfs"))


def _s3(args: argparse.Namespace) -> LocalService:
    # the keys the s3 profile reads, from the environment (a command line shows in ps);
    # unset, the documented dev pair of this loopback-only server
    s3 = LocalS3(
        args.home,
        jars=args.jars or Path(".jars/s3proxy"),
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET_KEY),
    )
    for bucket in args.bucket:
        s3.create_bucket(bucket)  # a folder of the filesystem backend: fine before start
    return s3


def _postgres(args: argparse.Namespace) -> LocalService:
    # the password from the environment (a command line shows in ps); unset, the dev default
    return LocalPostgres(args.home, password=os.environ.get(PASSWORD_VARIABLE, DEFAULT_PASSWORD))


def _cluster(args: argparse.Namespace) -> LocalService:
    return LocalSparkCluster(args.home, workers=args.workers)


_FACTORIES: dict[str, Callable[[argparse.Namespace], LocalService]] = {
    "kafka": _kafka,
    "hdfs": _hdfs,
    "s3": _s3,
    "postgres": _postgres,
    "cluster": _cluster,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onceflow.testing.services")
    parser.add_argument("service", choices=sorted(_FACTORIES))
    parser.add_argument("action", choices=["up", "down", "status", "env"])
    parser.add_argument("--home", type=Path, help="data, logs and state.json (.services/NAME)")
    parser.add_argument("--jars", type=Path, help="the service's jars (.jars/NAME)")
    parser.add_argument("--workers", type=int, default=2, help="cluster: how many workers")
    parser.add_argument(
        "--bucket", action="append", default=[], metavar="NAME", help="s3: a bucket to create"
    )
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="kafka: a SASL user; its password is read from $ONCEFLOW_KAFKA_PASSWORD_<NAME>",
    )
    args = parser.parse_args(argv)
    args.home = args.home or Path(".services") / args.service
    name = args.service
    state_file = args.home / "state.json"
    pid = running_pid(state_file)

    if args.action == "status":
        print(state_file.read_text() if pid else f"{name}: not running")
        return 0 if pid else 1
    if args.action == "env":
        if not pid:
            print(f"{name}: not running", file=sys.stderr)
            return 1
        _print_env(json.loads(state_file.read_text()))
        return 0
    if args.action == "down":
        if pid:
            first_signal = _stop_signal(state_file)
            for other in _other_pids(state_file):
                stop_pid(other, first_signal=first_signal)
            stop_pid(pid, first_signal=first_signal)
            print(f"{name}: stopped (pid {pid})")
        state_file.unlink(missing_ok=True)
        return 0
    if pid:
        print(f"{name}: already running (pid {pid}):\n{state_file.read_text()}")
        return 0
    service = _FACTORIES[name](args)
    try:
        service.start()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    service.write_state()
    state = service.state()
    print(json.dumps(state, indent=2))
    _print_env(state)
    return 0


def _print_env(state: dict[str, Any]) -> None:
    """``export NAME=value`` for the state's ``env`` (stdout, for ``eval``); secrets by name
    on stderr, so ``eval "$(make -s pg-env)"`` never sees a value it should not print."""
    for variable, value in state.get("env", {}).items():
        print(f"export {variable}={shlex.quote(str(value))}")
    for variable, where in state.get("env_secret", {}).items():
        print(f"# {variable} is not printed: export it yourself ({where})", file=sys.stderr)


def _stop_signal(state_file: Path) -> signal.Signals:
    """The signal a state file asks ``down`` to send first (default SIGTERM)."""
    name = json.loads(state_file.read_text()).get("stop_signal", "SIGTERM")
    try:
        return signal.Signals[name]
    except KeyError:
        return signal.SIGTERM


def _other_pids(state_file: Path) -> list[int]:
    """Processes besides the main ``pid`` a state file records (workers, a DataNode)."""
    state = json.loads(state_file.read_text())
    return [p for key, value in state.items() if key.endswith("_pids") for p in value or []]


if __name__ == "__main__":
    sys.exit(main())

"""``python -m onceflow.services SERVICE up|down|status [--home DIR]`` (what make calls).

``up`` starts the service in the background, records its pids and addresses in
``<home>/state.json`` and prints them; ``down`` stops every process recorded there;
``status`` prints the state. SERVICE is one of ``kafka``, ``hdfs``, ``s3``, ``cluster``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from onceflow.errors import ServiceError
from onceflow.services.hdfs import LocalHdfs
from onceflow.services.kafka import KafkaUser, LocalKafka
from onceflow.services.process import LocalService, running_pid, stop_pid
from onceflow.services.s3 import DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, LocalS3
from onceflow.services.spark_cluster import LocalSparkCluster


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


def _cluster(args: argparse.Namespace) -> LocalService:
    return LocalSparkCluster(args.home, workers=args.workers)


_FACTORIES: dict[str, Callable[[argparse.Namespace], LocalService]] = {
    "kafka": _kafka,
    "hdfs": _hdfs,
    "s3": _s3,
    "cluster": _cluster,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onceflow.services")
    parser.add_argument("service", choices=sorted(_FACTORIES))
    parser.add_argument("action", choices=["up", "down", "status"])
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
    if args.action == "down":
        if pid:
            for other in _other_pids(state_file):
                stop_pid(other)
            stop_pid(pid)
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
    print(json.dumps(service.state(), indent=2))
    return 0


def _other_pids(state_file: Path) -> list[int]:
    """Processes besides the main ``pid`` a state file records (workers, a DataNode)."""
    state = json.loads(state_file.read_text())
    return [p for key, value in state.items() if key.endswith("_pids") for p in value or []]


if __name__ == "__main__":
    sys.exit(main())

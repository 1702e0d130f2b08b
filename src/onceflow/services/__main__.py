"""``python -m onceflow.services kafka up|down|status [--home DIR]`` (what make calls).

``up`` starts the service in the background, records its pid and ports in
``<home>/state.json`` and prints them; ``down`` stops it; ``status`` prints the state.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onceflow.errors import ServiceError
from onceflow.services.kafka import KafkaUser, LocalKafka
from onceflow.services.process import running_pid, stop_pid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onceflow.services")
    parser.add_argument("service", choices=["kafka"])
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--home", type=Path, default=Path(".services/kafka"))
    parser.add_argument("--jars", type=Path, default=Path(".jars/kafka"))
    parser.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME",
        help="a SASL user; its password is read from $ONCEFLOW_KAFKA_PASSWORD_<NAME>",
    )
    args = parser.parse_args(argv)
    state_file = args.home / "state.json"
    pid = running_pid(state_file)

    if args.action == "status":
        print(state_file.read_text() if pid else "kafka: not running")
        return 0 if pid else 1
    if args.action == "down":
        if pid:
            stop_pid(pid)
            print(f"kafka: stopped (pid {pid})")
        state_file.unlink(missing_ok=True)
        return 0
    if pid:
        print(f"kafka: already running (pid {pid}):\n{state_file.read_text()}")
        return 0
    import os

    users = []
    for name in args.user:
        variable = f"ONCEFLOW_KAFKA_PASSWORD_{name.upper()}"
        if variable not in os.environ:
            print(f"error: set ${variable} for SASL user {name}", file=sys.stderr)
            return 2
        users.append(KafkaUser(name, os.environ[variable]))
    kafka = LocalKafka(args.home, jars=args.jars, users=users)
    try:
        kafka.start()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    kafka.write_state()
    print(json.dumps(kafka.state(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The helper commands: sample input, Kafka records, what spark-submit needs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from onceflow.cli.common import EXIT_OK, positive_int

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["register"]


def register(commands: Commands) -> None:
    """Add sample, produce, jars, pyfiles and entrypoint."""
    sample = commands.add_parser(
        "sample",
        help="write sample input: payments, their settlements, or a change feed of customers",
    )
    sample.add_argument(
        "--workload",
        choices=("payments", "settlements", "customers-cdc"),
        default="payments",
        help="payments; the settlements of the payments of the same --records, --files and "
        "--seed (jobs/payments_settled.yaml joins them); or a change feed of customers "
        "(jobs/customers_cdc.yaml reads it)",
    )
    sample.add_argument("--out", type=Path, help="default data/sample/<workload>")
    sample.add_argument("--records", type=positive_int, default=10_000)
    sample.add_argument("--files", type=positive_int, default=10)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument(
        "--duplicate-every",
        type=positive_int,
        default=None,
        metavar="K",
        help="send every K-th payment twice, as a retrying producer would (same record, "
        "the next file)",
    )
    sample.set_defaults(handler=_sample)

    produce = commands.add_parser(
        "produce", help="write the payments, or a change feed of customers, to Kafka"
    )
    produce.add_argument("--bootstrap", required=True, help="host:port of a listener")
    produce.add_argument("--topic", required=True)
    produce.add_argument(
        "--workload",
        choices=("payments", "customers-cdc"),
        default="payments",
        help="payments, or a change feed of customers keyed by customer_id: out of order, "
        "some changes twice (jobs/customers_cdc_kafka.yaml reads it)",
    )
    produce.add_argument("--records", type=positive_int, default=10_000)
    produce.add_argument(
        "--batches",
        type=positive_int,
        default=10,
        help="customers-cdc: the feed's disorder spans this many batches' worth (a change "
        "up to two batches late)",
    )
    produce.add_argument("--rate", type=float, default=0.0, help="records/s; 0 = flat out")
    produce.add_argument("--seed", type=int, default=7)
    produce.add_argument("--first-id", type=int, default=1)
    produce.add_argument(
        "--partitions",
        type=positive_int,
        default=3,
        help="create the topic with this many partitions when it does not exist (default 3)",
    )
    produce.add_argument(
        "--no-create-topic",
        action="store_true",
        help="never create the topic: fail if the broker has none of that name",
    )
    produce.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a librdkafka setting, e.g. security.protocol=SASL_PLAINTEXT; a value may be "
        "${env:VAR}",
    )
    produce.set_defaults(handler=_produce)

    jars = commands.add_parser("jars", help="print the jars for spark-submit --jars")
    jars.add_argument("--jars-dir", default=".jars/spark")
    jars.set_defaults(handler=_jars)

    pyfiles = commands.add_parser(
        "pyfiles", help="zip the onceflow package for spark-submit --py-files; print its path"
    )
    pyfiles.add_argument("--out", type=Path, default=Path("dist"), help="folder for the zip")
    pyfiles.set_defaults(handler=_pyfiles)

    entry = commands.add_parser("entrypoint", help="print the file spark-submit runs")
    entry.set_defaults(handler=_entrypoint)


def _sample(args: argparse.Namespace) -> int:
    from onceflow.prove.cdc_workload import write_cdc_files
    from onceflow.prove.settlements import write_settlement_files
    from onceflow.prove.workload import write_payment_files

    args.out = args.out or Path("data/sample") / args.workload
    if args.workload == "customers-cdc":
        write_cdc_files(args.out, args.records, args.files, seed=args.seed)
        print(f"wrote {args.records} customer change(s) in {args.files} file(s) to {args.out}")
        return EXIT_OK
    if args.workload == "settlements":
        written = write_settlement_files(args.out, args.records, args.files, seed=args.seed)
        print(f"wrote the settlements of {args.records} payment(s) in {len(written)} file(s) "
              f"to {args.out}")  # fmt: skip
        return EXIT_OK
    every = args.duplicate_every or 0
    files = write_payment_files(
        args.out, args.records, args.files, seed=args.seed, duplicate_every=every
    )
    again = f", {args.records // every} of them twice" if every else ""
    print(f"wrote {args.records} payment(s){again} in {len(files)} file(s) to {args.out}")
    return EXIT_OK


def _produce(args: argparse.Namespace) -> int:
    from onceflow.config.interpolation import expand_env
    from onceflow.errors import ConfigError
    from onceflow.prove.produce import produce_changes, produce_payments

    client = {}
    for item in args.client:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("CONFIG_BAD_OVERRIDE", override=item, problem="expected KEY=VALUE")
        client[key] = expand_env(value, where=f"--client {key}")
    partitions = None if args.no_create_topic else args.partitions
    common = {"seed": args.seed, "rate": args.rate, "client": client, "partitions": partitions}
    if args.workload == "customers-cdc":
        result = produce_changes(
            args.bootstrap, args.topic, args.records, batches=args.batches, **common
        )
        what = f"{args.records} customer change(s) as {result.records} message(s)"
    else:
        result = produce_payments(
            args.bootstrap, args.topic, args.records, first_id=args.first_id, **common
        )
        what = f"{result.records} payment(s)"
    if result.created_topic:
        print(f"created topic {args.topic} ({args.partitions} partition(s))")
    print(
        f"produced {what} to {args.topic} in {result.seconds:.2f}s "
        f"({result.records_per_second:,.0f} records/s)"
    )
    return EXIT_OK


def _jars(args: argparse.Namespace) -> int:
    from onceflow.session import jar_paths

    print(",".join(jar_paths(str(Path(args.jars_dir).resolve()))))
    return EXIT_OK


def _pyfiles(args: argparse.Namespace) -> int:
    from onceflow.shipping import package_zip

    print(package_zip(args.out).resolve())
    return EXIT_OK


def _entrypoint(_: argparse.Namespace) -> int:
    import onceflow

    print(Path(onceflow.__file__).with_name("__main__.py"))
    return EXIT_OK

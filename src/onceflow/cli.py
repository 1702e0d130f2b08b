"""The ``onceflow`` command: validate, run, status, sample, produce, prove, jars, pyfiles,
entrypoint.

Exit codes: 0 success; 1 the job failed while running (for ``status``: its checkpoint and
sinks disagree; for ``prove``: a promise was broken); 2 the job or the command line is
invalid (found before Spark starts).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from onceflow.config import LoadedJob, load_job
from onceflow.errors import ConfigError, OnceflowError

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except ConfigError as exc:
        for error in (exc, *exc.others):
            print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID
    except OnceflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onceflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a job without starting Spark")
    _job_arguments(validate)
    validate.add_argument(
        "--print", action="store_true", help="print the effective config, secrets as ***"
    )
    validate.set_defaults(handler=_validate)

    run = commands.add_parser("run", help="run a job until its trigger ends it")
    _job_arguments(run)
    run.add_argument(
        "--adopt-checkpoint",
        action="store_true",
        help="take over a checkpoint recorded as another job's (or whose source or sinks "
        "moved) on purpose, and record this job as its owner",
    )
    run.set_defaults(handler=_run)

    status = commands.add_parser(
        "status",
        help="where the job stands: last committed batch, a batch in flight, source lag, and "
        "whether its checkpoint and sinks agree (exit 1 when they do not)",
    )
    _job_arguments(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_status)

    replay = commands.add_parser(
        "replay-quarantine",
        help="re-feed the job's quarantined records that now pass into its sinks, exactly once",
    )
    _job_arguments(replay)
    replay.set_defaults(handler=_replay_quarantine)

    sample = commands.add_parser("sample", help="write the sample payments input")
    sample.add_argument("--out", type=Path, default=Path("data/sample/payments"))
    sample.add_argument("--records", type=int, default=10_000)
    sample.add_argument("--files", type=int, default=10)
    sample.add_argument("--seed", type=int, default=7)
    sample.set_defaults(handler=_sample)

    prove = commands.add_parser(
        "prove", help="crash the job's real processes and check its guarantee held"
    )
    _job_arguments(prove)
    prove.add_argument(
        "--guarantees",
        default="",
        help="comma list, e.g. at-most-once,at-least-once,exactly-once:merge "
        "(default: the job's own)",
    )
    prove.add_argument(
        "--crash-points",
        default="before_write,mid_write,after_write,after_commit",
        help="comma list of before_write, mid_write, after_write, after_commit, "
        "deleted_commit, second_instance, fresh_checkpoint",
    )
    prove.add_argument("--random-kills", type=int, default=0, help="kills at random moments")
    prove.add_argument("--records", type=int, default=400)
    prove.add_argument("--batches", type=int, default=4)
    prove.add_argument("--crash-batch", type=int, default=1)
    prove.add_argument("--seed", type=int, default=7)
    prove.add_argument("--parallel", type=int, default=1, help="scenarios run at once")
    prove.add_argument("--work-dir", type=Path, default=Path("state/prove"))
    prove.add_argument(
        "--storage-root",
        help="put checkpoints and sinks under this folder or URI (hdfs://..., s3a://...) "
        "instead of the work dir; the generated input stays local",
    )
    prove.add_argument("--json", type=Path, help="write the rows as JSON here")
    prove.add_argument("--markdown", type=Path, help="write a Markdown report here")
    prove.set_defaults(handler=_prove)

    produce = commands.add_parser("produce", help="write the payments workload to Kafka")
    produce.add_argument("--bootstrap", required=True, help="host:port of a listener")
    produce.add_argument("--topic", required=True)
    produce.add_argument("--records", type=int, default=10_000)
    produce.add_argument("--rate", type=float, default=0.0, help="records/s; 0 = flat out")
    produce.add_argument("--seed", type=int, default=7)
    produce.add_argument("--first-id", type=int, default=1)
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
    return parser


def _job_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job", type=Path, help="the job's YAML file")
    parser.add_argument(
        "--env",
        help="profile: conf/<ENV>.yaml layered over conf/base.yaml; several as A,B "
        "(e.g. test,hdfs), later ones winning",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one key, e.g. --set trigger.once=true (repeatable; applied last)",
    )
    parser.add_argument("--conf-dir", type=Path, help="profile folder (default: conf/)")


def _load(args: argparse.Namespace) -> LoadedJob:
    return load_job(args.job, env=args.env, overrides=args.overrides, conf_dir=args.conf_dir)


def _validate(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if args.print:
        print(loaded.to_yaml(), end="")
    print(f"ok: job '{loaded.spec.name}' is valid (layers: {', '.join(loaded.layers)})")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    loaded = _load(args)  # every config error surfaces here, before Spark starts
    from onceflow.observe import console_handler  # imports pyspark: only when running
    from onceflow.runner import run_job, sink_row_counts

    # a terminal gets one live progress line; a pipe or a file gets plain log lines
    handler = console_handler(sys.stderr)
    logging.getLogger("onceflow").addHandler(handler)
    logging.getLogger("onceflow").setLevel(logging.INFO)
    try:
        result = run_job(loaded, adopt_checkpoint=args.adopt_checkpoint)
    finally:
        logging.getLogger("onceflow").removeHandler(handler)
        handler.close()
    print(
        f"job '{loaded.spec.name}' on {result.master}: {result.batches} batch(es), "
        f"{result.input_rows} input row(s), query {result.query_id}"
    )
    if result.skipped_offsets:
        print(f"warning: {result.skipped_offsets} Kafka offset(s) skipped: gone before read")
    for name, path, rows in sink_row_counts(loaded.spec):
        print(f"sink '{name}': {rows} row(s) at {path}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    loaded = _load(args)
    from onceflow.session import build_session  # imports pyspark: only when reading state
    from onceflow.status import job_status, render_status

    status = job_status(build_session(loaded.spec), loaded.spec)
    print(status.to_json() if args.json else render_status(status))
    return EXIT_OK if status.healthy else EXIT_FAILED


def _replay_quarantine(args: argparse.Namespace) -> int:
    loaded = _load(args)
    from onceflow.replay import replay_quarantine  # imports pyspark: only when replaying
    from onceflow.session import build_session

    result = replay_quarantine(build_session(loaded.spec), loaded.spec)
    print(
        f"job '{loaded.spec.name}': replayed {result.replayed} quarantined record(s) into its "
        f"sinks; {result.still_failing} still fail and stay in quarantine "
        f"(quarantine version {result.version})"
    )
    return EXIT_OK


def _sample(args: argparse.Namespace) -> int:
    from onceflow.prove.workload import write_payment_files

    files = write_payment_files(args.out, args.records, args.files, seed=args.seed)
    print(f"wrote {args.records} payment(s) in {len(files)} file(s) to {args.out}")
    return EXIT_OK


def _prove(args: argparse.Namespace) -> int:
    import shutil
    import time

    from onceflow.prove.harness import ProveRunFailed, ProveSettings, prove
    from onceflow.prove.report import to_json, to_markdown, to_png, to_table

    _load(args)  # the job itself must be valid before anything starts
    shutil.rmtree(args.work_dir, ignore_errors=True)
    settings = ProveSettings(
        job_file=args.job,
        work_dir=args.work_dir,
        env=args.env,
        overrides=tuple(args.overrides),
        conf_dir=args.conf_dir,
        guarantees=tuple(g for g in args.guarantees.split(",") if g),
        crash_points=tuple(p for p in args.crash_points.split(",") if p),
        random_kills=args.random_kills,
        records=args.records,
        batches=args.batches,
        crash_batch=args.crash_batch,
        seed=args.seed,
        parallel=args.parallel,
        storage_root=args.storage_root,
    )
    started = time.monotonic()
    try:
        rows = prove(settings)
    except ProveRunFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(to_table(rows))
    print(
        f"{sum(r.promise_held for r in rows)} of {len(rows)} promise(s) held "
        f"in {time.monotonic() - started:.0f}s"
    )
    if args.json:
        to_json(rows, args.json)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(to_markdown(rows, f"onceflow prove {args.job}"))
    report = args.json or args.markdown
    if report:
        # the plot is a convenience: without matplotlib the report above is still whole
        try:
            to_png(rows, report.with_suffix(".png"), f"onceflow prove {args.job.name}")
        except ModuleNotFoundError as exc:
            print(f"no PNG ({exc.name} missing): pip install 'onceflow[plots]'")
    return EXIT_OK if all(row.promise_held for row in rows) else EXIT_FAILED


def _produce(args: argparse.Namespace) -> int:
    from onceflow.config.interpolation import expand_env
    from onceflow.prove.produce import produce_payments

    client = {}
    for item in args.client:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("CONFIG_BAD_OVERRIDE", override=item, problem="expected KEY=VALUE")
        client[key] = expand_env(value, where=f"--client {key}")
    result = produce_payments(
        args.bootstrap,
        args.topic,
        args.records,
        seed=args.seed,
        first_id=args.first_id,
        rate=args.rate,
        client=client,
    )
    print(
        f"produced {result.records} payment(s) to {args.topic} in {result.seconds:.2f}s "
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
    print(Path(__file__).with_name("__main__.py"))
    return EXIT_OK

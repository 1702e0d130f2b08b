"""``onceflow class-sharing``: dump the class-data-sharing archive of Spark's classes.

``make cds`` (part of ``make setup``) runs it; see ``onceflow.class_sharing`` for what the
archive is and who maps it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onceflow.class_sharing import QUIET, archive_path
from onceflow.cli.common import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from onceflow.cli.common import Commands

__all__ = ["dump", "register"]

# the classes a job loads: a JSON file stream, foreachBatch, a Delta append and a MERGE
_DUMP_JOB = """\
name: class-sharing-dump
source: {kind: files, format: json, path: input, max_files_per_trigger: 1,
         schema: "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP"}
guarantee: exactly-once
strategy: merge
sinks:
  - {name: events, kind: delta, path: events, merge: {keys: [id], order_by: event_time}}
checkpoint: checkpoint
spark: {master: "local[2]", log_level: ERROR, conf: {spark.ui.enabled: "false"}}
"""


def register(commands: Commands) -> None:
    """Add class-sharing."""
    command = commands.add_parser(
        "class-sharing",
        help="dump the class-data-sharing archive of Spark's classes, so that drivers start "
        "faster (make setup runs it)",
    )
    command.add_argument("--jars-dir", type=Path, default=Path(".jars/spark"))
    command.set_defaults(handler=_class_sharing)


def _class_sharing(args: argparse.Namespace) -> int:
    """Dump the archive in a child process (its JVM writes it as it exits), then move it
    into place: whole or not at all."""
    archive = archive_path(args.jars_dir)
    code = subprocess.call(  # noqa: S603 - this interpreter, our own module
        [
            sys.executable,
            "-c",
            f"from onceflow.cli.archive import dump; dump({str(args.jars_dir)!r})",
        ],
        env={**os.environ, "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")},
    )
    partial = archive.with_suffix(".jsa.partial")
    if code != 0 or not partial.is_file():
        print(f"error: no class-sharing archive was written (exit {code})", file=sys.stderr)
        return EXIT_FAILED
    os.replace(partial, archive)
    print(f"class-sharing archive: {archive} ({archive.stat().st_size // 2**20} MB)")
    return EXIT_OK


def dump(jars_dir: str | Path) -> Path:
    """Run a small streaming job (JSON files -> foreachBatch -> a Delta append and a MERGE)
    in a JVM that archives every class it loaded when it exits; the archive, written whole
    or not at all."""
    from onceflow.config import load_job
    from onceflow.prove.workload import write_payment_files
    from onceflow.runner import start_query
    from onceflow.session import build_session

    archive = archive_path(jars_dir)
    archive.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="onceflow-cds-"))
    partial = archive.with_suffix(".jsa.partial")
    partial.unlink(missing_ok=True)
    try:
        write_payment_files(work / "input", count=200, files=2)
        (work / "job.yaml").write_text(_DUMP_JOB)
        job = load_job(
            work / "job.yaml",
            overrides=[
                f"storage.root={work}",
                f"spark.jars_dir={Path(jars_dir).resolve()}",
                'spark.conf["spark.driver.extraJavaOptions"]='
                f"-XX:ArchiveClassesAtExit={partial} {QUIET}",
            ],
        )
        spark = build_session(job.spec)
        start_query(spark, job.spec).awaitTermination()
        gateway: Any = spark.sparkContext._gateway
        spark.stop()
        # the JVM writes the archive as it exits, which it does when its stdin closes
        gateway.proc.stdin.close()
        gateway.proc.wait(timeout=300)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return partial

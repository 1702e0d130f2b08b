"""One measured run of ``bench/guarantee_cost.py``: one writer, one source, one input.

Runs in its own process so that the driver's peak memory is this run's alone. The job is
built as a YAML file and loaded by ``load_job`` like any user's job (profile ``local``);
the writers differ only where the guarantee differs:

- ``baseline``: the same source and schema into ``writeStream.format("delta")``, Spark's
  own exactly-once Delta sink;
- ``at-least-once`` / ``at-most-once`` / ``exactly-once``: a Delta append through
  onceflow's ``foreachBatch`` writer (``exactly-once`` with ``strategy: transactional``);
- ``merge-at-least-once`` / ``merge-exactly-once``: a MERGE on ``id`` (latest by
  ``event_time``) into a target seeded with ``--seed-table`` (a copy of it).

Prints one JSON object: per-batch rows and durations (Spark's ``triggerExecution`` and
``addBatch``), the guard's own time per batch (onceflow's ``guarantee`` note), rows and
distinct ids in the table afterwards, and the driver's peak resident memory (the JVM,
which in local mode also runs the tasks, and the Python driver).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from onceflow.config import load_job
from onceflow.contracts import BatchReports
from onceflow.prove.workload import PAYMENTS_SCHEMA
from onceflow.runner import start_query
from onceflow.session import build_session
from onceflow.stream import job_stream

ROOT = Path(__file__).resolve().parent.parent

WRITERS = {
    "baseline": None,
    "at-least-once": {"guarantee": "at-least-once"},
    "at-most-once": {"guarantee": "at-most-once"},
    "exactly-once": {"guarantee": "exactly-once", "strategy": "transactional"},
    "merge-at-least-once": {"guarantee": "at-least-once", "merge": True},
    "merge-exactly-once": {"guarantee": "exactly-once", "strategy": "merge", "merge": True},
}


def job_document(args: argparse.Namespace, table: str, checkpoint: str) -> dict[str, Any]:
    """The job this run measures, as a user would write it."""
    writer = WRITERS[args.writer] or {"guarantee": "exactly-once", "strategy": "transactional"}
    if args.source == "files":
        source: dict[str, Any] = {
            "kind": "files",
            "format": "json",
            "path": args.input,
            "schema": PAYMENTS_SCHEMA,
            "max_files_per_trigger": args.files_per_batch,
        }
    else:
        source = {
            "kind": "kafka",
            "subscribe": args.input,
            "startingOffsets": "earliest",
            "maxOffsetsPerTrigger": args.per_batch,
            "failOnDataLoss": True,
            "format": "json",
            "schema": PAYMENTS_SCHEMA,
            "options": {"kafka.bootstrap.servers": "${env:KAFKA_BOOTSTRAP}"},
        }
    sink: dict[str, Any] = {"name": "events", "kind": "delta", "path": table}
    if writer.get("merge"):
        sink |= {"mode": "merge", "merge": {"keys": ["id"], "order_by": "event_time"}}
    else:
        sink["mode"] = "append"
    document = {
        "name": f"bench-{args.writer}",
        "source": source,
        # the guarantee's cost alone: Spark parses, as it does for the baseline (what
        # onceflow's parsing costs is bench/quality_throughput.py's to measure)
        "quality": {"parser": "spark"},
        "guarantee": writer["guarantee"],
        "sinks": [sink],
        "checkpoint": checkpoint,
        "trigger": {"available_now": True},
    }
    if "strategy" in writer:
        document["strategy"] = writer["strategy"]
    return document


def write_seed(table: Path, rows: int, env: str) -> None:
    """A Delta table of ``rows`` payments with ids ``1-rows .. 0`` (older than the stream's),
    in files of about 250,000 rows ordered by id, as an append-only stream leaves them."""
    from pyspark.sql import functions as F

    document = {
        "name": "bench-seed",
        "source": {"kind": "delta", "path": str(table)},
        "sinks": [{"name": "seed", "kind": "delta", "path": str(table.parent / "unused-sink")}],
        "checkpoint": str(table.parent / "unused"),
    }
    job_file = table.parent / "seed.yaml"
    job_file.write_text(yaml.safe_dump(document))
    spark = build_session(load_job(job_file, env=env, conf_dir=ROOT / "conf").spec)
    ids = spark.range(1 - rows, 1, numPartitions=max(1, rows // 250_000))
    ids.select(
        F.col("id"),
        F.format_string("acct-%04d", F.abs(F.col("id")) % 50).alias("account"),
        (F.abs(F.col("id")) % 20_000 / 100).cast("decimal(18,2)").alias("amount"),
        F.timestamp_seconds(F.col("id") + 1_767_225_600).alias("event_time"),
    ).write.format("delta").save(str(table))
    spark.stop()


def peak_rss_mb(pid: int) -> float:
    """The high-water mark of a live process's resident memory (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writer", choices=sorted(WRITERS))
    parser.add_argument("--source", choices=["files", "kafka"])
    parser.add_argument("--input", help="the input folder, or the Kafka topic")
    parser.add_argument("--per-batch", type=int)
    parser.add_argument("--make-seed", type=int, metavar="ROWS", help="only write a seed table")
    parser.add_argument("--files-per-batch", type=int, default=1)
    parser.add_argument("--root", required=True, help="a fresh folder for table and checkpoint")
    parser.add_argument("--seed-table", help="a Delta table the MERGE target starts as")
    parser.add_argument("--env", default="local")
    args = parser.parse_args()

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    if args.make_seed:
        write_seed(root / "events", args.make_seed, args.env)
        print("{}")
        return
    table, checkpoint = str(root / "events"), str(root / "checkpoint")
    if args.seed_table and (WRITERS[args.writer] or {}).get("merge"):
        shutil.copytree(args.seed_table, table)
    job_file = root / "job.yaml"
    job_file.write_text(yaml.safe_dump(job_document(args, table, checkpoint), sort_keys=False))
    spec = load_job(job_file, env=args.env, conf_dir=ROOT / "conf").spec

    spark = build_session(spec)
    reports = BatchReports()
    started = time.monotonic()
    if args.writer == "baseline":
        query = (
            job_stream(spark, spec)
            .writeStream.format("delta")
            .queryName(spec.name)
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start(table)
        )
    else:
        query = start_query(spark, spec, reports=reports)
    query.awaitTermination()
    wall = time.monotonic() - started

    batches = []
    for progress in query.recentProgress:
        if progress.numInputRows == 0:
            continue
        durations = progress.durationMs
        report = reports.take(progress.batchId)
        batches.append(
            {
                "batch_id": progress.batchId,
                "rows": progress.numInputRows,
                "batch_ms": durations.get("triggerExecution", 0),
                "add_batch_ms": durations.get("addBatch", 0),
                "guard_ms": round(report.guard_ms, 1) if report is not None else None,
            }
        )
    jvm_pid = spark.sparkContext._jvm.ProcessHandle.current().pid()
    jvm_peak = peak_rss_mb(jvm_pid)
    counted = (
        spark.read.format("delta")
        .load(table)
        .selectExpr("count(*) AS n", "count(DISTINCT id) AS ids", "count_if(id > 0) AS streamed")
    )
    rows, ids, streamed = counted.first()
    spark.stop()
    python_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(
        {
            "writer": args.writer,
            "source": args.source,
            "wall_s": round(wall, 2),
            "batches": batches,
            "table_rows": rows,
            "table_ids": ids,
            "table_streamed_rows": streamed,
            "driver_jvm_peak_mb": round(jvm_peak),
            "driver_python_peak_mb": round(python_peak),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    main()

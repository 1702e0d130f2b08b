"""Kafka throughput on this machine, both figures from one run:

1. ``onceflow produce``: payments into a 3-partition topic, flat out (records/s acknowledged);
2. ``jobs/payments_kafka.yaml`` (Kafka -> Delta, exactly-once transactional): records/s it
   sustains, as rows read / the sum of its batch durations (Spark start-up excluded), and
   over the query's wall time.

Usage: .venv/bin/python bench/kafka_throughput.py [--records N] [--per-batch N]
Writes bench/results/kafka_throughput.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from onceflow.config import load_job
from onceflow.prove.produce import produce_payments
from onceflow.runner import start_query
from onceflow.session import build_session
from onceflow.testing.services import LocalKafka

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--per-batch", type=int, default=250_000)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with (
        tempfile.TemporaryDirectory() as scratch,
        LocalKafka(Path(scratch) / "kafka", jars=ROOT / ".jars/kafka") as kafka,
    ):
        kafka.create_topic("payments", partitions=3)
        produced = produce_payments(kafka.bootstrap, "payments", args.records)

        os.environ["KAFKA_BOOTSTRAP"] = kafka.bootstrap
        spec = load_job(
            ROOT / "jobs/payments_kafka.yaml",
            env="local",
            overrides=[f"storage.root={scratch}", f"source.maxOffsetsPerTrigger={args.per_batch}"],
        ).spec
        spark = build_session(spec)
        started = time.monotonic()
        query = start_query(spark, spec)
        query.awaitTermination()
        wall = time.monotonic() - started
        progress = [p for p in query.recentProgress if p.numInputRows > 0]
        rows = sum(p.numInputRows for p in progress)
        busy = sum(p.batchDuration for p in progress) / 1000
        written = spark.read.format("delta").load(spec.sinks[0].path).count()
        spark.stop()

    result = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "records": args.records,
        "produce_records_per_s": round(produced.records_per_second),
        "produce_seconds": round(produced.seconds, 2),
        "job": "jobs/payments_kafka.yaml (exactly-once transactional, 3 partitions)",
        "job_batches": len(progress),
        "job_rows_read": rows,
        "job_rows_in_table": written,
        "job_records_per_s_in_batches": round(rows / busy),
        "job_records_per_s_wall": round(rows / wall),
        "job_wall_seconds": round(wall, 1),
    }
    out = ROOT / "bench/results/kafka_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

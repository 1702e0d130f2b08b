"""A 1-million-row backfill into PostgreSQL: the staged sink against a naive driver-side
insert, and Spark's own JDBC writer for reference, in one run on one server.

- ``staged``: ``PostgresSink.write`` under exactly-once, as a job's batch would: the
  executors COPY their partitions into a staging table, then one driver transaction moves
  the rows into the target with the batch's ledger row.
- ``naive``: what a ``foreachBatch`` often does: rows pulled to the driver
  (``toLocalIterator``) and inserted with psycopg's ``executemany`` in one transaction
  (psycopg 3 pipelines it, so this is the fast form of the naive approach).
- ``spark_jdbc``: ``df.write.jdbc`` with ``reWriteBatchedInserts``; fast, but each partition
  commits on its own, so a crash leaves part of a batch (no guarantee; reference only).

Every method writes the same cached DataFrame of payments into a fresh table; rounds are
interleaved so drift hits all alike. Rows/s = rows / wall time of the write call.

Usage: .venv/bin/python bench/postgres_backfill.py [--rows N] [--rounds N]
Writes bench/results/postgres_backfill.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from pyspark.sql import DataFrame, SparkSession
from reporting import machine, print_table, save

from onceflow.config import PostgresConnection, WriteMode
from onceflow.contracts import BatchContext
from onceflow.session import DELTA_CONF, jar_paths
from onceflow.sinks.postgres import PostgresSinkSpec
from onceflow.sinks.postgres.sink import PostgresSink
from onceflow.testing.services import LocalPostgres

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench-pw"  # noqa: S105 - a throwaway local server's password


def payments(spark: SparkSession, rows: int) -> DataFrame:
    """``rows`` payments (id, account, amount, event_time), cached and counted once."""
    frame = spark.range(1, rows + 1).selectExpr(
        "id",
        "format_string('acct-%04d', CAST(id * 7919 % 50 AS INT)) AS account",
        "CAST((id * 104729 % 25000 - 5000) / 100 AS DECIMAL(18,2)) AS amount",
        "TIMESTAMP'2026-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id) AS event_time",
    )
    frame = frame.repartition(4).cache()
    frame.count()
    return frame


def staged(pg: LocalPostgres, frame: DataFrame, table: str) -> None:
    connection = PostgresConnection(
        host=pg.host, port=pg.port, database=pg.database, user=pg.user, password=PASSWORD
    )
    spec = PostgresSinkSpec(kind="postgres", name="bench", connection="bench", table=table)
    sink = PostgresSink("bench", spec, WriteMode.APPEND, connection)
    sink.write(frame, BatchContext("bench-app", 0, guarded=True))


def naive(pg: LocalPostgres, frame: DataFrame, table: str) -> None:
    with connect(pg) as conn:
        conn.execute(
            f"CREATE TABLE {table} (id bigint, account text, amount numeric(18,2), "
            "event_time timestamptz)"
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO {table} VALUES (%s, %s, %s, %s)",  # noqa: S608
                (tuple(row) for row in frame.toLocalIterator()),
            )
        conn.commit()


def spark_jdbc(pg: LocalPostgres, frame: DataFrame, table: str) -> None:
    frame.write.jdbc(
        f"{pg.jdbc_url}?reWriteBatchedInserts=true",
        table,
        properties=pg.jdbc_properties() | {"batchsize": "10000"},
    )


def connect(pg: LocalPostgres) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=pg.host, port=pg.port, dbname=pg.database, user=pg.user, password=PASSWORD
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers import onceflow
    builder = (
        SparkSession.builder.master("local[2]")
        .appName("onceflow-bench-postgres")
        .config("spark.jars", ",".join(jar_paths(str(ROOT / ".jars/spark"))))
        .config("spark.driver.memory", "4g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
    )
    for key, value in DELTA_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    methods: dict[str, Callable[[LocalPostgres, DataFrame, str], None]] = {
        "staged": staged,
        "naive": naive,
        "spark_jdbc": spark_jdbc,
    }
    home = Path(tempfile.mkdtemp(prefix="onceflow-bench-pg-"))
    home.chmod(0o711)
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    try:
        with LocalPostgres(home, password=PASSWORD) as pg:
            frame = payments(spark, args.rows)
            for round_ in range(args.rounds):
                for name, method in methods.items():
                    table = f"backfill_{name}_{round_}"
                    started = time.perf_counter()
                    method(pg, frame, table)
                    seconds[name].append(time.perf_counter() - started)
                    with connect(pg) as conn:
                        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
                    if row is None or row[0] != args.rows:
                        raise SystemExit(f"{name}: {row} rows in {table}, wanted {args.rows}")
                    print(f"round {round_} {name}: {seconds[name][-1]:.1f} s", flush=True)
    finally:
        spark.stop()
        shutil.rmtree(home, ignore_errors=True)

    results = {
        name: {
            "median_s": round(statistics.median(times), 2),
            "min_s": round(min(times), 2),
            "max_s": round(max(times), 2),
            "rows_per_s": round(args.rows / statistics.median(times)),
        }
        for name, times in seconds.items()
    }
    for figures in results.values():
        figures["x_naive"] = round(figures["rows_per_s"] / results["naive"]["rows_per_s"], 2)
    report = {
        "rows": args.rows,
        "rounds": args.rounds,
        "spark": "local[2], 4 partitions",
        "machine": machine(),
        "results": results,
    }
    save("postgres_backfill", report)
    print_table(
        ["method", "rows/s", "median s", "min-max s", "x naive"],
        [
            [name, f"{f['rows_per_s']:,}", str(f["median_s"]), f"{f['min_s']}-{f['max_s']}",
             str(f["x_naive"])]
            for name, f in results.items()
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()

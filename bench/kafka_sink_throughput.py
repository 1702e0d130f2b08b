"""What exactly-once costs on a Kafka sink: Spark's own Kafka writer against onceflow's
transactional one, over the same input, in one run.

The job is ``jobs/payments_to_kafka.yaml`` (Kafka -> Kafka: payments read, enriched, keyed
by account, produced as JSON with a header). It runs from a source topic of ``--records``
payments, ``maxOffsetsPerTrigger`` cut so that there are about ``--batches`` batches, each
way on its own checkpoint and output topic:

- ``spark``: the job under at-least-once, which is Spark's ``df.write.format("kafka")``;
- ``exactly_once_k<K>``: the job as it is (exactly-once), its batches cut into K parts,
  each committed in one Kafka transaction with its marker (``--parts``, 2 and 4 by default).

Every way runs in this process on one SparkSession (``local[2]``, the ``local`` profile), so
the JVM and the Python workers stay warm as in a long-running job; one warm-up run of each
way on a small topic comes first and is not counted. Rounds are interleaved so drift and
the load of whatever else runs on the machine hit every way alike.

Measured per way: records/s = records read / the sum of the batches' ``triggerExecution``
(Spark's start-up and the query's own start excluded), the median over rounds and its ratio
to ``spark``; p50 and p95 of the batch durations (``triggerExecution``, and the sink's write
as timed around it). Each run's output is counted by a ``read_committed`` reader: a way that
lost or doubled a record fails the benchmark.

Where an exactly-once batch's write goes, from each part's report (``PART_REPORT``) and the
driver's clock (one machine: the tasks' clock is the driver's):

- ``before_parts``: write start to the first part's start: the stage that reads the source,
  transforms and shuffles the rows into K parts, and the tasks' scheduling;
- ``parts_span``: first part's start to the last part's end, and within the parts (summed
  over parts, as shares of their task time): ``init`` (producer and ``init_transactions``),
  ``marker`` (the marker read), ``input`` (waiting for Spark's rows: shuffle read, sort,
  Arrow transfer), ``produce`` (serialising and producing, input excluded), ``commit``;
- ``after_parts``: the last part's end to the write's return (collecting the reports).

Usage: .venv/bin/python bench/kafka_sink_throughput.py [--records N] [--batches N]
       [--parts K ...] [--rounds N]
Writes bench/results/kafka_sink_throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from reporting import machine, percentile, print_table, rate_summary, save

from onceflow.config import load_job
from onceflow.contracts import BatchContext, BatchWriter, Sink, WrappedSink
from onceflow.prove.produce import produce_payments
from onceflow.runner import start_query
from onceflow.session import build_session
from onceflow.testing.services import LocalKafka

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "jobs/payments_to_kafka.yaml"
SOURCE = "payments"
WARM_UP = "payments-warm-up"
SPARK_WAY = ["guarantee=at-least-once", "sinks[0].partitions=null", "sinks[0].control_topic=null"]
PART_STEPS = ["init", "marker", "input", "produce", "commit"]


class _TimedSinks:
    """An instrument (``start_query(instrument=...)``) that times each sink's write on the
    driver and keeps the Kafka sink's part reports of every batch, from outside the
    pipeline."""

    def __init__(self) -> None:
        self.writes: dict[int, dict[str, Any]] = {}

    def wrap_writer(self, writer: BatchWriter) -> BatchWriter:
        return writer

    def wrap_sinks(self, sinks: Sequence[Sink]) -> list[Sink]:
        return [_TimedSink(sink, self.writes) for sink in sinks]


class _TimedSink(WrappedSink):
    def __init__(self, sink: Sink, writes: dict[int, dict[str, Any]]) -> None:
        super().__init__(sink)
        self._writes = writes

    def write(self, batch: DataFrame, context: BatchContext) -> None:
        started = time.time() * 1000
        self._sink.write(batch, context)
        ended = time.time() * 1000
        parts = list(getattr(self._sink, "last_parts", [])) if context.guarded else []
        self._writes[context.batch_id] = {"started": started, "ended": ended, "parts": parts}


def run(
    spark: SparkSession | None,
    way: str,
    parts: int | None,
    source: str,
    per_batch: int,
    root: Path,
    kafka: LocalKafka,
) -> tuple[SparkSession, dict[str, Any]]:
    """Run the job one way to the end of ``source``; the session and what was measured."""
    output = f"out-{root.name}"
    kafka.create_topic(output, partitions=3)
    overrides = [
        f"storage.root={root}",
        f"source.subscribe={source}",
        f"source.maxOffsetsPerTrigger={per_batch}",
        f"sinks[0].topic={output}",
    ]
    if parts is None:
        overrides += SPARK_WAY
    else:
        overrides += [f"sinks[0].partitions={parts}", f"sinks[0].control_topic={output}.markers"]
    spec = load_job(JOB, env="local", overrides=overrides).spec
    spark = spark or build_session(spec)
    timing = _TimedSinks()
    query = start_query(spark, spec, instrument=timing)
    query.awaitTermination()
    batches = []
    for progress in query.recentProgress:
        if progress.numInputRows == 0:
            continue
        write = timing.writes[progress.batchId]
        batches.append(
            {
                "trigger_ms": progress.durationMs["triggerExecution"],
                "add_batch_ms": progress.durationMs["addBatch"],
                "write_ms": write["ended"] - write["started"],
                "durations_ms": dict(progress.durationMs),
                **({"split": _split(write)} if write["parts"] else {}),
            }
        )
    return spark, {"batches": batches, "delivered": _delivered(spark, kafka, output)}


def _split(write: dict[str, Any]) -> dict[str, float]:
    """One exactly-once write: its driver-side phases and its parts' steps (summed), ms."""
    parts = write["parts"]
    first = min(p["started_ms"] for p in parts)
    last = max(p["ended_ms"] for p in parts)
    steps = {
        "init": sum(p["init_ms"] for p in parts),
        "marker": sum(p["marker_ms"] for p in parts),
        "input": sum(p["input_ms"] for p in parts),
        "produce": sum(p["produce_ms"] - p["input_ms"] for p in parts),
        "commit": sum(p["commit_ms"] for p in parts),
    }
    return {
        "before_parts": first - write["started"],
        "parts_span": last - first,
        "after_parts": write["ended"] - last,
        "task": sum(p["ended_ms"] - p["started_ms"] for p in parts),
        **steps,
        "parts": len(parts),
        "kept": sum(bool(p.get("kept")) for p in parts),
        "replaced": sum(bool(p.get("replaced")) for p in parts),
    }


def _delivered(spark: SparkSession, kafka: LocalKafka, topic: str) -> tuple[int, int]:
    """(records, distinct payment ids) in ``topic`` as a read_committed consumer sees it."""
    from pyspark.sql import functions as F

    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap)
        .option("kafka.isolation.level", "read_committed")
        .option("subscribe", topic)
        .load()
        .select(F.get_json_object(F.col("value").cast("string"), "$.id").alias("id"))
    )
    row = frame.agg(F.count("*").alias("n"), F.countDistinct("id").alias("ids")).first()
    assert row is not None  # an aggregate has one row
    return int(row["n"]), int(row["ids"])


def rate(run: dict[str, Any], records: int) -> float:
    """Records/s of one run: the input over the time its batches took. Spark's
    ``numInputRows`` is no measure here: it counts a source read once per action on the
    batch (the quality split reads it before the sink does)."""
    return records / sum(b["trigger_ms"] for b in run["batches"]) * 1000


def summarise(runs: list[dict[str, Any]], base: float, records: int) -> dict[str, Any]:
    """One way's rounds: its rate against ``spark``, batch percentiles, its write's split."""
    rates = [rate(r, records) for r in runs]
    batches = [b for r in runs for b in r["batches"]]
    summary = rate_summary(rates, base, "spark") | {"batches_per_run": len(runs[0]["batches"])}
    for name in ("trigger_ms", "add_batch_ms", "write_ms"):
        values = [float(b[name]) for b in batches]
        summary[name] = {"p50": round(percentile(values, 50)), "p95": round(percentile(values, 95))}
    splits = [b["split"] for b in batches if "split" in b]
    if splits:
        mean = {key: statistics.fmean(s[key] for s in splits) for key in splits[0]}
        summary["write_split_ms_per_batch"] = {
            key: round(mean[key], 1) for key in ("before_parts", "parts_span", "after_parts")
        }
        summary["part_steps_share_of_task_time"] = {
            step: round(mean[step] / mean["task"], 3) for step in PART_STEPS
        }
        summary["part_steps_ms_per_batch"] = {step: round(mean[step], 1) for step in PART_STEPS}
        # a producer kept from the part's last batch skips init and the marker read; one
        # refused (fenced: the part ran in another worker since) is replaced by a new one
        summary["parts_kept"] = round(mean["kept"] / mean["parts"], 2)
        summary["parts_replaced"] = round(mean["replaced"] / mean["parts"], 2)
    summary["delivered_ok"] = all(r["delivered"] == (records, records) for r in runs)
    return summary


def print_tables(results: dict[str, dict[str, Any]]) -> None:
    """The rates and batch times of every way, then where exactly-once's writes went."""
    header = ["way", "records/s (median)", "min-max", "x spark", "batch p50 / p95 ms",
              "write p50 / p95 ms", "records once each"]  # fmt: skip
    rows = []
    for way, r in results.items():
        batch, write = r["trigger_ms"], r["write_ms"]
        rows.append([way, f"{r['rows_per_s']:,}", f"{r['min']:,}-{r['max']:,}",
                     str(r["x_spark"]), f"{batch['p50']:,} / {batch['p95']:,}",
                     f"{write['p50']:,} / {write['p95']:,}", str(r["delivered_ok"])])  # fmt: skip
    print_table(header, rows)
    header = ["way (ms per batch)", "before parts", "parts span", "after parts",
              *(f"{step} (share)" for step in PART_STEPS), "kept / replaced"]  # fmt: skip
    rows = []
    for way, r in results.items():
        if "write_split_ms_per_batch" not in r:
            continue
        ms, share = r["part_steps_ms_per_batch"], r["part_steps_share_of_task_time"]
        rows.append([way, *(str(v) for v in r["write_split_ms_per_batch"].values()),
                     *(f"{ms[s]} ({share[s]:.0%})" for s in PART_STEPS),
                     f"{r['parts_kept']:.0%} / {r['parts_replaced']:.0%}"])  # fmt: skip
    print_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--parts", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm-up", type=int, default=20_000, help="records; 0: none")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    ways: dict[str, int | None] = {"spark": None} | {f"exactly_once_k{k}": k for k in args.parts}
    per_batch = -(-args.records // args.batches)
    runs: dict[str, list[dict[str, Any]]] = {way: [] for way in ways}
    load = [os.getloadavg()[0]]
    started = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as scratch_dir,
        LocalKafka(Path(scratch_dir) / "kafka", jars=ROOT / ".jars/kafka") as kafka,
    ):
        scratch = Path(scratch_dir)
        os.environ["KAFKA_BOOTSTRAP"] = kafka.bootstrap
        produce_payments(kafka.bootstrap, SOURCE, args.records)
        spark = None
        if args.warm_up:
            produce_payments(kafka.bootstrap, WARM_UP, args.warm_up)
            for way, parts in ways.items():
                root = scratch / f"warm-{way}"
                spark, _ = run(spark, way, parts, WARM_UP, args.warm_up // 2, root, kafka)
        for round_ in range(args.rounds):
            for way, parts in ways.items():
                spark, result = run(
                    spark, way, parts, SOURCE, per_batch, scratch / f"{way}-{round_}", kafka
                )
                runs[way].append(result)
                load.append(os.getloadavg()[0])
                print(
                    f"round {round_} {way}: {rate(result, args.records):,.0f} records/s, "
                    f"{len(result['batches'])} batches, delivered {result['delivered']}, "
                    f"load {load[-1]:.1f}",
                    flush=True,
                )
        if spark is not None:
            spark.stop()
    base = statistics.median(rate(r, args.records) for r in runs["spark"])
    results = {way: summarise(values, base, args.records) for way, values in runs.items()}
    report = {
        "records": args.records,
        "max_offsets_per_trigger": per_batch,
        "rounds": args.rounds,
        "machine": machine(),
        "load_1min": {"min": min(load), "max": max(load)},
        "seconds": round(time.monotonic() - started),
        "results": results,
        "runs": runs,
    }
    save("kafka_sink_throughput", report)
    print_tables(results)


if __name__ == "__main__":
    main()

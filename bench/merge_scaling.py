"""MERGE scaling: one batch's MERGE into a 1M-row and a 10M-row target, naive and tuned.

The target holds payments with ids ``1..T`` in files of ``--file-rows`` rows, in id
order, as an append-ordered stream leaves them. Each batch upserts ``--batch`` rows:
nine in ten are new ids above the table's maximum, one in ten updates one of the most
recent ids (late corrections of recent events). Each MERGE goes through onceflow's own
``DeltaSink`` (exactly-once: guarded by its batch id), four ways, each on its own copy of
the target:

- ``naive``: ``merge.prune: false``, Delta's default 50 snapshot partitions: the MERGE
  joins the batch with every file of the target;
- ``unpruned``: ``merge.prune: false`` with the profile's snapshot partitions (2 in
  ``local``), to tell the two changes apart;
- ``pruned``: onceflow's key-range condition (``merge.prune``, the default) and the
  profile's snapshot partitions: Delta skips every file whose id range misses the batch's;
- ``pruned+dv``: as ``pruned``, on a target with deletion vectors
  (``delta.enableDeletionVectors``), so updated rows are marked, not their files rewritten.

Every table gets one batch per round, rounds interleaving every way and size (a JIT
warming up over the run would otherwise favour whatever runs last). Per way and size:
the median MERGE time of ``--rounds`` batches after one warm-up round,
the files and rows Delta read and rewrote (its ``operationMetrics``), and the ratio of the
10M-row target's time to the 1M-row target's.

Usage: .venv/bin/python bench/merge_scaling.py [--targets N ...] [--batch N] [--rounds N]
Writes bench/results/<name>.json and .md and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from reporting import RESULTS, machine, markdown_table, save

from onceflow.config import load_job
from onceflow.contracts import BatchContext
from onceflow.session import build_session
from onceflow.sinks.base import build_sink

ROOT = Path(__file__).resolve().parent.parent
WAYS = {
    "naive": {"prune": False, "snapshot_partitions": "50", "deletion_vectors": False},
    "unpruned": {"prune": False, "snapshot_partitions": None, "deletion_vectors": False},
    "pruned": {"prune": True, "snapshot_partitions": None, "deletion_vectors": False},
    "pruned+dv": {"prune": True, "snapshot_partitions": None, "deletion_vectors": True},
}
SNAPSHOT_PARTITIONS = "spark.databricks.delta.snapshotPartitions"
METRICS = (
    "numTargetFilesRemoved",
    "numTargetFilesAdded",
    "numTargetRowsCopied",
    "numTargetRowsUpdated",
    "numTargetRowsInserted",
    "numTargetDeletionVectorsAdded",
)


def payments_frame(spark: Any, first: int, last: int, partitions: int) -> Any:
    """Payments with ids ``first..last``, the stream's columns, deterministic per id."""
    from pyspark.sql import functions as F

    return spark.range(first, last + 1, numPartitions=partitions).select(
        F.col("id"),
        F.format_string("acct-%04d", F.col("id") % 50).alias("account"),
        (F.col("id") % 20_000 / 100).cast("decimal(18,2)").alias("amount"),
        F.timestamp_seconds(F.col("id") + 1_767_225_600).alias("event_time"),
    )


def prepare_target(
    spark: Any, scratch: Path, way: str, size: int, args: argparse.Namespace
) -> tuple[Path, Any]:
    """A copy of the ``size``-row seed for ``way`` (written once per size), and its sink."""
    seed = scratch / f"seed-{size}"
    if not seed.exists():
        partitions = max(1, size // args.file_rows)
        payments_frame(spark, 1, size, partitions).write.format("delta").save(str(seed))
    table = scratch / f"{way}-{size}"
    shutil.copytree(seed, table)
    if WAYS[way]["deletion_vectors"]:
        spark.sql(
            f"ALTER TABLE delta.`{table}` "
            "SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')"
        )
    job = job_file(scratch, table, bool(WAYS[way]["prune"]))
    spec = load_job(job, env=args.env, conf_dir=ROOT / "conf").spec
    return table, build_sink(spec, spec.sinks[0])


def job_file(folder: Path, table: Path, prune: bool) -> Path:
    document = {
        "name": "bench-merge",
        "source": {"kind": "delta", "path": str(folder / "unused-source")},
        "guarantee": "exactly-once",
        "strategy": "merge",
        "sinks": [{"name": "events", "kind": "delta", "path": str(table), "mode": "merge",
                   "merge": {"keys": ["id"], "order_by": "event_time", "prune": prune}}],
        "checkpoint": str(folder / "unused-checkpoint"),
    }  # fmt: skip
    path = folder / f"{table.name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--file-rows", type=int, default=250_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--env", default="local")
    parser.add_argument("--name", default="merge_scaling")
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=list(WAYS))
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    updates = args.batch // 10

    with tempfile.TemporaryDirectory(prefix="onceflow-merge-") as scratch_dir:
        scratch = Path(scratch_dir)
        first_job = job_file(scratch, scratch / "first", prune=True)
        spark = build_session(load_job(first_job, env=args.env, conf_dir=ROOT / "conf").spec)
        profile_partitions = spark.conf.get(SNAPSHOT_PARTITIONS, "50")
        tables = {
            (way, size): prepare_target(spark, scratch, way, size, args)
            for size in args.targets
            for way in args.ways
        }
        top = {key: key[1] for key in tables}
        times: dict[tuple[str, int], list[float]] = {key: [] for key in tables}
        metrics: dict[tuple[str, int], dict[str, str]] = {}
        # round 0 warms the JIT and each table's caches; rounds interleave every table
        for batch_id in range(args.rounds + 1):
            for (way, size), (table, sink) in tables.items():
                spark.conf.set(
                    SNAPSHOT_PARTITIONS, WAYS[way]["snapshot_partitions"] or profile_partitions
                )
                # nine in ten new ids above the maximum, one in ten of the latest updated
                high = top[way, size]
                fresh = payments_frame(spark, high + 1, high + args.batch - updates, 2)
                late = payments_frame(spark, high - updates + 1, high, 1)
                batch = fresh.unionByName(late).localCheckpoint()  # the batch, not its making
                started = time.perf_counter()
                sink.write(batch, BatchContext(f"bench-{way}-{size}", batch_id, guarded=True))
                elapsed = time.perf_counter() - started
                top[way, size] += args.batch - updates
                if batch_id > 0:
                    times[way, size].append(elapsed)
                    history = spark.sql(f"DESCRIBE HISTORY delta.`{table}` LIMIT 1")
                    metrics[way, size] = history.first()["operationMetrics"]
                print(f"{way} {size:,} batch {batch_id}: {elapsed:.2f}s", flush=True)
        results: list[dict[str, Any]] = []
        for (way, size), (table, _) in tables.items():
            rows = spark.read.format("delta").load(str(table)).count()
            if rows != top[way, size]:
                raise SystemExit(f"{way} {size}: {rows} rows, expected {top[way, size]}")
            measured = times[way, size]
            results.append(
                {
                    "way": way,
                    "target_rows": size,
                    "merge_s": round(statistics.median(measured), 2),
                    "merge_s_min": round(min(measured), 2),
                    "merge_s_max": round(max(measured), 2),
                    **{key: int(metrics[way, size].get(key, 0) or 0) for key in METRICS},
                }
            )
        spark.stop()

    scaling = {}
    for way in args.ways:
        by_size = {r["target_rows"]: r["merge_s"] for r in results if r["way"] == way}
        if len(by_size) > 1:
            scaling[way] = round(by_size[max(by_size)] / by_size[min(by_size)], 2)
    report = {
        "machine": machine(),
        "spark_profile": args.env,
        "profile_snapshot_partitions": profile_partitions,
        "batch_rows": args.batch,
        "batch_updates": updates,
        "file_rows": args.file_rows,
        "rounds": args.rounds,
        "results": results,
        "x_largest_vs_smallest_target": scaling,
    }
    save(args.name, report, args.out)
    table = markdown_table(
        ["way", "target rows", "MERGE s (min-max)", "files rewritten", "rows copied",
         "DVs added", f"x {min(args.targets):,}-row target"],
        [
            [r["way"], f"{r['target_rows']:,}",
             f"{r['merge_s']} ({r['merge_s_min']}-{r['merge_s_max']})",
             str(r["numTargetFilesRemoved"]), f"{r['numTargetRowsCopied']:,}",
             str(r["numTargetDeletionVectorsAdded"]),
             str(scaling.get(r["way"], "-")) if r["target_rows"] == max(args.targets) else "1.0"]
            for r in results
        ],
    )  # fmt: skip
    (args.out / f"{args.name}.md").write_text(
        f"Measured on {report['machine']}, Spark profile `{args.env}`; a batch of "
        f"{args.batch:,} rows ({updates:,} updates), median of {args.rounds}.\n\n{table}\n"
    )
    print(table)
    plot(results, args.out / f"{args.name}.png")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """MERGE seconds per way, one bar per target size (min-max whiskers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["target_rows"] for r in results})
    ways = list(dict.fromkeys(r["way"] for r in results))
    figure, axis = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(sizes)
    for offset, size in enumerate(sizes):
        rows = [next(r for r in results if (r["way"], r["target_rows"]) == (w, size)) for w in ways]
        medians = [r["merge_s"] for r in rows]
        spread = [
            [r["merge_s"] - r["merge_s_min"] for r in rows],
            [r["merge_s_max"] - r["merge_s"] for r in rows],
        ]
        positions = [index + offset * width for index in range(len(ways))]
        axis.bar(positions, medians, width, yerr=spread, capsize=3, label=f"{size:,}-row target")
    axis.set_xticks([index + width * (len(sizes) - 1) / 2 for index in range(len(ways))], ways)
    axis.set_ylabel("one batch's MERGE, s (median)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()

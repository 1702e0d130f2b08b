"""What each delivery guarantee costs, against Spark's own Delta sink, in one measuring run.

The same generated payments, read from JSON files and from a Kafka topic (a broker started
here), at each ``--records`` size, in batches of ``--per-batch`` records
(``max_files_per_trigger`` / ``maxOffsetsPerTrigger``), through six writers (see
``guarantee_run.py``): Spark's ``writeStream.format("delta")`` as the baseline; onceflow's
at-least-once, at-most-once and exactly-once (transactional) appends; and a MERGE on the
event id, at-least-once and exactly-once, into a target that starts with ``--merge-seed``
rows. Every run is its own process. Rounds are interleaved, so drift of this noisy machine
hits every writer alike; figures are medians over rounds with their min-max.

Per writer, source and size:
- records/s: records / the sum of the batches' ``triggerExecution`` (Spark start-up and
  the last count are outside it), and over the query's wall time;
- p50 / p95 batch duration, over every batch of every round;
- guard: onceflow's own per-batch guard time (the at-most-once ledger claim) and the guard's
  overhead as measured: the median batch of the guarded writer minus that of the same write
  unguarded (exactly-once and at-most-once vs at-least-once, MERGE vs MERGE);
- the driver's peak resident memory (JVM and Python);
- the ratio to the baseline's records/s of the same source and size.

Every run is checked: the table must hold every record once.

Usage: .venv/bin/python bench/guarantee_cost.py [--records N ...] [--per-batch N]
    [--rounds N] [--sources files kafka] [--writers W ...] [--name NAME]
Writes bench/results/<name>.json, .md and .png and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from guarantee_run import WRITERS
from reporting import RESULTS, machine, markdown_table, percentile, save

from onceflow.prove.produce import produce_payments
from onceflow.prove.workload import write_payment_files
from onceflow.testing.services import LocalKafka

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(__file__).resolve().parent / "guarantee_run.py"

# the same write without its guard: what the guard costs is the difference
UNGUARDED_TWIN = {
    "at-most-once": "at-least-once",
    "exactly-once": "at-least-once",
    "merge-exactly-once": "merge-at-least-once",
}


def prepare_files(scratch: Path, sizes: list[int], file_records: int) -> dict[int, Path]:
    """One folder per size; the smaller ones hard-link the first files of the largest."""
    largest = max(sizes)
    full = scratch / f"files-{largest}"
    written = write_payment_files(full, largest, largest // file_records, seed=11)
    folders = {largest: full}
    for size in sizes:
        if size != largest:
            folders[size] = scratch / f"files-{size}"
            folders[size].mkdir()
            for path in written[: size // file_records]:
                os.link(path, folders[size] / path.name)
    return folders


def prepare_topics(kafka: LocalKafka, sizes: list[int]) -> tuple[dict[int, str], dict[int, float]]:
    """One 2-partition topic per size, filled; the producer's records/s per topic."""
    topics, rates = {}, {}
    for size in sizes:
        topics[size] = f"payments-{size}"
        kafka.create_topic(topics[size], partitions=2)
        rates[size] = produce_payments(
            kafka.bootstrap, topics[size], size, seed=11
        ).records_per_second
    return topics, rates


def make_seed(scratch: Path, rows: int, env: str) -> Path:
    """The MERGE target's starting rows: ids ``1-rows .. 0``, before the stream's ``1..N``."""
    seed = scratch / f"seed-{rows}"
    run_child(["--make-seed", str(rows), "--root", str(seed), "--env", env])
    return seed / "events"


def run_child(arguments: list[str], environ: dict[str, str] | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(RUN), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **(environ or {})},
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)}: failed\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One writer's figures over its rounds (see the module's docstring). Records are those
    the table received: Spark's ``numInputRows`` counts a batch once per read, and a MERGE
    reads its batch more than once."""
    rates = [
        r["table_streamed_rows"] / (sum(b["batch_ms"] for b in r["batches"]) / 1000) for r in runs
    ]
    wall_rates = [r["table_streamed_rows"] / r["wall_s"] for r in runs]
    durations = [b["batch_ms"] for r in runs for b in r["batches"]]
    guards = [b["guard_ms"] for r in runs for b in r["batches"] if b["guard_ms"] is not None]
    return {
        "records_per_s": round(statistics.median(rates)),
        "records_per_s_min": round(min(rates)),
        "records_per_s_max": round(max(rates)),
        "records_per_s_wall": round(statistics.median(wall_rates)),
        "batches": len(durations),
        "p50_batch_ms": round(percentile(durations, 50)),
        "p95_batch_ms": round(percentile(durations, 95)),
        "guard_ms_p50": round(percentile(guards, 50), 1) if guards else None,
        "driver_jvm_peak_mb": round(statistics.median(r["driver_jvm_peak_mb"] for r in runs)),
        "driver_python_peak_mb": round(statistics.median(r["driver_python_peak_mb"] for r in runs)),
        "rounds": len(runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--per-batch", type=int, default=250_000)
    parser.add_argument("--file-records", type=int, default=50_000, help="records per input file")
    parser.add_argument("--merge-seed", type=int, default=1_000_000, help="MERGE target's rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--sources", nargs="+", choices=["files", "kafka"], default=["files", "kafka"]
    )
    parser.add_argument("--writers", nargs="+", choices=list(WRITERS), default=list(WRITERS))
    parser.add_argument("--env", default="local", help="the Spark profile of every run")
    parser.add_argument("--name", default="guarantee_cost", help="bench/results/<name>.*")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args()
    if args.per_batch % args.file_records or any(n % args.per_batch for n in args.records):
        raise SystemExit("--records must be multiples of --per-batch, and it of --file-records")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    started = time.monotonic()

    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="onceflow-bench-")))
        inputs: dict[tuple[str, int], str] = {}
        environ: dict[str, str] = {}
        produce_rates: dict[int, float] = {}
        if "files" in args.sources:
            for size, folder in prepare_files(scratch, args.records, args.file_records).items():
                inputs["files", size] = str(folder)
        if "kafka" in args.sources:
            kafka = stack.enter_context(LocalKafka(scratch / "kafka", jars=ROOT / ".jars/kafka"))
            topics, produce_rates = prepare_topics(kafka, args.records)
            inputs.update({("kafka", size): topic for size, topic in topics.items()})
            environ["KAFKA_BOOTSTRAP"] = kafka.bootstrap
        merges = any("merge" in w for w in args.writers)
        seed = make_seed(scratch, args.merge_seed, args.env) if merges else None

        runs: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        for round_ in range(args.rounds):
            for size in args.records:
                for source in args.sources:
                    for writer in args.writers:
                        root = scratch / "runs" / f"{source}-{size}-{writer}-{round_}"
                        child = [
                            "--writer", writer, "--source", source,
                            "--input", inputs[source, size],
                            "--per-batch", str(args.per_batch),
                            "--files-per-batch", str(args.per_batch // args.file_records),
                            "--root", str(root), "--env", args.env,
                        ]  # fmt: skip
                        if seed is not None:
                            child += ["--seed-table", str(seed)]
                        run = run_child(child, environ)
                        shutil.rmtree(root, ignore_errors=True)
                        check_delivery(run, size, args.merge_seed if "merge" in writer else 0)
                        runs.setdefault((source, size, writer), []).append(run)
                        rows = run["table_streamed_rows"]
                        busy = sum(b["batch_ms"] for b in run["batches"]) / 1000
                        print(
                            f"round {round_} {source} {size:,} {writer}: "
                            f"{rows / busy:,.0f} records/s, {len(run['batches'])} batches",
                            flush=True,
                        )

    results = []
    for (source, size, writer), measured in runs.items():
        figures = {"source": source, "records": size, "writer": writer, **summarize(measured)}
        results.append(figures)
    add_ratios(results)
    report = {
        "machine": machine(),
        "spark_profile": args.env,
        "records": args.records,
        "per_batch": args.per_batch,
        "file_records": args.file_records,
        "kafka_partitions": 2,
        "merge_target_seed_rows": args.merge_seed,
        "rounds": args.rounds,
        "kafka_produce_records_per_s": {str(k): round(v) for k, v in produce_rates.items()},
        "minutes": round((time.monotonic() - started) / 60, 1),
        "results": results,
        "targets": targets(results),
    }
    save(args.name, report, args.out)
    table = render_table(results)
    (args.out / f"{args.name}.md").write_text(
        f"Measured on {report['machine']}, Spark profile `{args.env}`, {args.rounds} rounds, "
        f"{args.per_batch:,} records per batch.\n\n{table}\n\n{render_targets(report['targets'])}\n"
    )
    print(table)
    print(render_targets(report["targets"]))
    plot(results, args.out / f"{args.name}.png")


def check_delivery(run: dict[str, Any], records: int, seeded: int) -> None:
    """Every record once: a run that lost or doubled one measures nothing."""
    if run["table_streamed_rows"] != records or run["table_rows"] != records + seeded:
        raise SystemExit(f"{run['writer']} {run['source']}: table holds {run['table_rows']} rows")
    if run["table_ids"] != run["table_rows"]:
        raise SystemExit(f"{run['writer']} {run['source']}: duplicated ids in the table")


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Each row's records/s against the baseline's and the at-least-once append's of the
    same source and size; each guarded row's overhead against its unguarded twin."""
    by_key = {(r["source"], r["records"], r["writer"]): r for r in results}
    for row in results:
        peers = {w: by_key.get((row["source"], row["records"], w)) for w in WRITERS}
        baseline, append = peers["baseline"], peers["at-least-once"]
        if baseline is not None:
            row["x_baseline"] = round(row["records_per_s"] / baseline["records_per_s"], 2)
        if append is not None:
            row["x_at_least_once"] = round(row["records_per_s"] / append["records_per_s"], 2)
        twin = peers.get(UNGUARDED_TWIN.get(row["writer"], ""))
        if twin is not None:
            row["guard_overhead_ms_p50"] = row["p50_batch_ms"] - twin["p50_batch_ms"]


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's four targets, per source and size, met or missed by how much."""
    checks = []
    for row in results:
        where = f"{row['source']} {row['records']:,}"
        if row["writer"] == "exactly-once" and "x_baseline" in row:
            checks.append(
                _target(
                    where, "exactly-once transactional >= 0.9x baseline", row["x_baseline"], 0.9
                )
            )
        if row["writer"] == "merge-exactly-once" and "x_at_least_once" in row:
            checks.append(
                _target(
                    where,
                    "exactly-once merge >= 0.5x at-least-once append",
                    row["x_at_least_once"],
                    0.5,
                )
            )
        if row["writer"] in UNGUARDED_TWIN and "guard_overhead_ms_p50" in row:
            checks.append(
                _target(
                    where,
                    f"{row['writer']} guard overhead <= 100 ms",
                    row["guard_overhead_ms_p50"],
                    100,
                    most=True,
                )
            )
    return checks


def _target(
    where: str, what: str, value: float, bound: float, most: bool = False
) -> dict[str, Any]:
    met = value <= bound if most else value >= bound
    return {"where": where, "target": what, "value": value, "met": met}


def render_table(results: list[dict[str, Any]]) -> str:
    header = [
        "source", "records", "writer", "records/s (min-max)", "x baseline", "p50 / p95 batch ms",
        "guard ms (own / vs unguarded)", "driver peak MB (JVM + Python)",
    ]  # fmt: skip
    rows = []
    for r in results:
        own = "-" if r["guard_ms_p50"] is None else f"{r['guard_ms_p50']:g}"
        rows.append(
            [
                r["source"],
                f"{r['records']:,}",
                r["writer"],
                f"{r['records_per_s']:,} ({r['records_per_s_min']:,}-{r['records_per_s_max']:,})",
                str(r.get("x_baseline", "-")),
                f"{r['p50_batch_ms']:,} / {r['p95_batch_ms']:,}",
                f"{own} / {r['guard_overhead_ms_p50']:+,}" if "guard_overhead_ms_p50" in r else own,
                f"{r['driver_jvm_peak_mb']:,} + {r['driver_python_peak_mb']:,}",
            ]
        )
    return markdown_table(header, rows)


def render_targets(checks: list[dict[str, Any]]) -> str:
    return markdown_table(
        ["where", "target", "measured", "met"],
        [
            [c["where"], c["target"], f"{c['value']:g}", "yes" if c["met"] else "**no**"]
            for c in checks
        ],
    )


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Records/s per writer (bars, min-max whiskers), one panel per source and size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["source"], r["records"]) for r in results})
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for axis, (source, size) in zip(axes[0], panels, strict=True):
        rows = [r for r in results if (r["source"], r["records"]) == (source, size)]
        names = [r["writer"] for r in rows]
        medians = [r["records_per_s"] for r in rows]
        spread = [
            [m - r["records_per_s_min"] for m, r in zip(medians, rows, strict=True)],
            [r["records_per_s_max"] - m for m, r in zip(medians, rows, strict=True)],
        ]
        colors = ["#888888" if n == "baseline" else "#3b75af" for n in names]
        axis.bar(names, medians, yerr=spread, color=colors, capsize=3)
        axis.set_title(f"{source}, {size:,} records")
        axis.set_ylabel("records/s (median of rounds)")
        axis.tick_params(axis="x", labelrotation=60)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()

"""What state costs: rows/s of deduplication and of a windowed aggregation against the
same input without state, in one run, and how dedup's state grows with and without a
watermark.

The same input (payments as JSON lines, every 10th sent twice one file later, event times
a second apart), the same sink (a transactional Delta append of the events), four ways:

- ``stateless``: ``jobs/payments_dedup.yaml`` without ``dedup`` and ``watermark`` (the
  copies reach the table: the baseline);
- ``dedup_rocksdb``: the job as it is (RocksDB, changelog checkpointing, 1 hour watermark);
- ``dedup_hdfs``: the same with Spark's in-memory store (``state.store: hdfs``);
- ``dedup_no_watermark``: no watermark: every key is kept forever;
- ``windows_update``: ``jobs/payments_windows.yaml`` (payments and total per account and
  minute, 1 minute watermark, RocksDB), its updated windows MERGEd into a Delta table;
- ``windows_append``: the same appending each window once, when the watermark closes it.

Each way runs as ``onceflow run`` (``--env local``); rows/s = records read / the sum of its
batches' ``triggerExecution`` (a window job's batches hand on windows, not records: it
reads every line of the input, which the dedup ways count from their progress). Rounds
are interleaved so drift hits every way alike. The state rows after each batch are kept
from the last round.

Usage: .venv/bin/python bench/dedup_throughput.py [--records N] [--files N] [--rounds N]
Writes bench/results/dedup_throughput.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from reporting import machine, print_table, rate_summary, save

from onceflow.prove.workload import write_payment_files

ROOT = Path(__file__).resolve().parent.parent
DEDUP = ROOT / "jobs/payments_dedup.yaml"
WINDOWS = ROOT / "jobs/payments_windows.yaml"
EVERY = 10
APPEND = ["aggregate.output=append", "strategy=transactional", "sinks.0.merge=null"]
WAYS = {
    "stateless": (DEDUP, ["dedup=null", "watermark=null"]),
    "dedup_rocksdb": (DEDUP, []),
    "dedup_hdfs": (DEDUP, ["state.store=hdfs"]),
    "dedup_no_watermark": (DEDUP, ["watermark=null"]),
    "windows_update": (WINDOWS, []),
    "windows_append": (WINDOWS, APPEND),
}


def run(way: str, source: Path, root: Path, sent: int) -> tuple[int, float, list[int]]:
    """Run the job one way; (records read, seconds spent in batches, state rows per batch)."""
    job, overrides = WAYS[way]
    command = [sys.executable, "-m", "onceflow", "run", str(job), "--env", "local",
               "--set", f"storage.root={root}", "--set", f"source.path={source}",
               "--set", "source.max_files_per_trigger=1"]  # fmt: skip
    for override in overrides:
        command += ["--set", override]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{way}: the job failed:\n{result.stderr[-3000:]}")
    rows, millis, state_rows = 0, 0.0, []
    for line in result.stderr.splitlines():
        _, marker, payload = line.partition("onceflow.progress: ")
        if not marker:
            continue
        progress: dict[str, Any] = json.loads(payload)
        state = progress.get("state", [])
        removed = sum(op["duplicates_dropped"] + op["late_dropped"] for op in state)
        read = int(progress.get("quality", {}).get("input", 0)) + removed
        if int(progress.get("input_rows") or 0):  # a batch that read input
            rows += read
            millis += float(progress["durations_ms"]["triggerExecution"])
            state_rows.append(sum(op["state_rows"] for op in state))
    return (sent if job == WINDOWS else rows), millis / 1000, state_rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sent = args.records + args.records // EVERY
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    growth: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        write_payment_files(scratch / "input", args.records, args.files, duplicate_every=EVERY)
        for round_ in range(args.rounds):
            for way in WAYS:
                root = scratch / f"{way}-{round_}"
                rows, seconds, state_rows = run(way, scratch / "input", root, sent)
                if rows != sent:
                    raise SystemExit(f"{way}: read {rows} records, the input holds {sent}")
                rates[way].append(rows / seconds)
                growth[way] = state_rows
                print(f"round {round_} {way}: {rows / seconds:,.0f} rows/s", flush=True)
    base = statistics.median(rates["stateless"])
    results = {
        way: {**rate_summary(values, base, "stateless"), "state_rows_per_batch": growth[way]}
        for way, values in rates.items()
    }
    report = {
        "records": args.records,
        "sent_twice": args.records // EVERY,
        "files": args.files,
        "rounds": args.rounds,
        "machine": machine(),
        "results": results,
    }
    save("dedup_throughput", report)
    print_table(
        ["way", "rows/s (median)", "min-max", "x stateless", "state rows after each batch"],
        [
            [
                way,
                f"{f['rows_per_s']:,}",
                f"{f['min']:,}-{f['max']:,}",
                str(f["x_stateless"]),
                " ".join(f"{n:,}" for n in f["state_rows_per_batch"]) or "-",
            ]
            for way, f in results.items()
        ],
    )


if __name__ == "__main__":
    main()

"""What quality checks cost: rows/s of one job without and with parsing and rules, in one run.

The same input (payments as JSON lines, one record in 200 bad: malformed, a wrong type, a
zero amount), the same sink (a transactional Delta append of the events), three ways:

- ``spark_json``: ``quality.parser: spark``: Spark's own JSON reader (a bad line becomes NULLs);
- ``parse_only``: ``quality`` with no rules: onceflow's parsing and quarantine;
- ``parse_and_rules``: ``quality`` with the four rules of ``jobs/payments_quality.yaml``.

Each way runs as ``onceflow run`` (``--env local``); rows/s = input rows / the sum of its
batches' ``triggerExecution``. Rounds are interleaved so drift hits every way alike.

Usage: .venv/bin/python bench/quality_throughput.py [--records N] [--files N] [--rounds N]
Writes bench/results/quality_throughput.json and prints a Markdown table.
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

from reporting import machine, print_table, rate_summary, save

from onceflow.prove.workload import payments

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "jobs/payments_quality.yaml"
EVENTS = "sinks=[{name: events, kind: delta, path: events}]"
WAYS = {
    "spark_json": ["quality.parser=spark", "quality.rules=[]"],
    "parse_only": ["quality.rules=[]"],
    "parse_and_rules": [],
}
BAD = [
    '{"id": 1, "account": "acct-0001", "amount": ',
    '{"id": "one", "account": "acct-0001", "amount": "1.00", "event_time": "2026-01-01T00:00:00Z"}',
    '{"id": 2, "account": "acct-0001", "amount": "0.00", "event_time": "2026-01-01T00:00:00Z"}',
]


def write_input(folder: Path, records: int, files: int) -> None:
    folder.mkdir(parents=True)
    lines = [p.to_json() for p in payments(records, seed=3)]
    for index in range(0, len(lines), 200):
        lines[index] = BAD[(index // 200) % len(BAD)]
    per_file = -(-records // files)
    for index in range(files):
        chunk = lines[index * per_file : (index + 1) * per_file]
        (folder / f"payments-{index:04d}.json").write_text("\n".join(chunk) + "\n")


def run(way: str, source: Path, root: Path) -> tuple[int, float]:
    """Run the job one way; (input rows, seconds spent in batches)."""
    command = [sys.executable, "-m", "onceflow", "run", str(JOB), "--env", "local",
               "--set", f"storage.root={root}", "--set", f"source.path={source}",
               "--set", "source.max_files_per_trigger=2", "--set", EVENTS]  # fmt: skip
    for override in WAYS[way]:
        command += ["--set", override]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{way}: the job failed:\n{result.stderr[-3000:]}")
    rows, millis = 0, 0.0
    for line in result.stderr.splitlines():
        _, marker, payload = line.partition("onceflow.progress: ")
        if marker:
            progress = json.loads(payload)
            if progress["input_rows"]:
                # Spark counts a raw file source's rows as files; the quality stage, records
                rows += int(progress.get("quality", {}).get("input", progress["input_rows"]))
                millis += float(progress["durations_ms"]["triggerExecution"])
    return rows, millis / 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--files", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    rates: dict[str, list[float]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        write_input(scratch / "input", args.records, args.files)
        for round_ in range(args.rounds):
            for way in WAYS:
                rows, seconds = run(way, scratch / "input", scratch / f"{way}-{round_}")
                if rows != args.records:
                    raise SystemExit(f"{way}: read {rows} rows, wrote {args.records}")
                rates[way].append(rows / seconds)
                print(f"round {round_} {way}: {rows / seconds:,.0f} rows/s", flush=True)
    base = statistics.median(rates["spark_json"])
    results = {way: rate_summary(values, base, "spark_json") for way, values in rates.items()}
    report = {
        "records": args.records,
        "files": args.files,
        "rounds": args.rounds,
        "bad_records": f"1 in 200 ({len(BAD)} kinds)",
        "machine": machine(),
        "results": results,
    }
    save("quality_throughput", report)
    print_table(
        ["way", "rows/s (median)", "min-max", "x spark_json"],
        [
            [way, f"{f['rows_per_s']:,}", f"{f['min']:,}-{f['max']:,}", str(f["x_spark_json"])]
            for way, f in results.items()
        ],
    )


if __name__ == "__main__":
    main()

"""One micro-batch's time with checkpoint and tables on local disk, HDFS and S3, in one run.

The same job (``jobs/payments_exactly_once_transactional.yaml``: a transactional Delta
append and a guarded MERGE per batch), the same generated input (local JSON files, one
file per batch), run by ``onceflow run`` once per store against real servers started here.
Each batch's ``triggerExecution`` comes from the job's own progress lines; the first batch
of each run (JIT warm-up, table creation) is reported apart from the median.

Usage: .venv/bin/python bench/storage_batch_time.py [--records N] [--batches N] [--rounds N]
Writes bench/results/storage_batch_time.json and prints a Markdown table.
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

from reporting import machine, print_table, save

from onceflow.prove.workload import write_payment_files
from onceflow.testing.services.hdfs import LocalHdfs
from onceflow.testing.services.s3 import LocalS3

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "jobs/payments_exactly_once_transactional.yaml"
BUCKET = "onceflow-bench"


def batch_times(env: str, root: str, source: Path, extra_env: dict[str, str]) -> list[float]:
    """Run the job once; the ``triggerExecution`` of each batch that read rows, in ms."""
    command = [
        sys.executable, "-m", "onceflow", "run", str(JOB), "--env", env,
        "--set", f"storage.root={root}",
        "--set", f"source.path={source}",
        "--set", "source.max_files_per_trigger=1",
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **extra_env}, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{env}: the job failed:\n{result.stderr[-3000:]}")
    times = []
    for line in result.stderr.splitlines():
        _, marker, payload = line.partition("onceflow.progress: ")
        if marker:
            progress = json.loads(payload)
            if progress["input_rows"] > 0:
                times.append(float(progress["durations_ms"]["triggerExecution"]))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1, help="runs per store, interleaved")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        source = scratch / "input"
        write_payment_files(source, args.records, args.batches, seed=5)
        with (
            LocalHdfs(scratch / "hdfs", jars=ROOT / ".jars/hdfs") as hdfs,
            LocalS3(scratch / "s3", jars=ROOT / ".jars/s3proxy") as s3,
        ):
            s3.create_bucket(BUCKET)
            stores = {
                "local": ("local", lambda r: str(scratch / f"local-{r}"), {}),
                "hdfs": ("local,hdfs", lambda r: f"{hdfs.uri}/bench-{r}", {}),
                "s3": ("local,s3", lambda r: f"s3a://{BUCKET}/bench-{r}", s3.profile_env(BUCKET)),
            }
            runs: dict[str, list[list[float]]] = {name: [] for name in stores}
            for round_ in range(args.rounds):  # interleaved: drift hits every store alike
                for name, (env, root, extra) in stores.items():
                    runs[name].append(batch_times(env, root(round_), source, extra))

    results = {
        name: {
            "first_batch_ms": statistics.median(t[0] for t in times),
            "median_batch_ms": statistics.median(x for t in times for x in t[1:]),
            "min_batch_ms": min(x for t in times for x in t[1:]),
            "max_batch_ms": max(x for t in times for x in t[1:]),
            "batches_measured": sum(len(t) - 1 for t in times),
        }
        for name, times in runs.items()
    }
    base = results["local"]["median_batch_ms"]
    for figures in results.values():
        figures["ratio_to_local"] = round(figures["median_batch_ms"] / base, 2)
    report = {
        "job": JOB.name,
        "records": args.records,
        "batches": args.batches,
        "records_per_batch": args.records // args.batches,
        "rounds": args.rounds,
        "machine": machine(),
        "results": results,
    }
    save("storage_batch_time", report)
    print_table(
        ["store", "median batch (ms)", "min-max (ms)", "first batch (ms)", "x local"],
        [
            [
                name,
                f"{f['median_batch_ms']:.0f}",
                f"{f['min_batch_ms']:.0f}-{f['max_batch_ms']:.0f}",
                f"{f['first_batch_ms']:.0f}",
                str(f["ratio_to_local"]),
            ]
            for name, f in results.items()
        ],
    )


if __name__ == "__main__":
    main()

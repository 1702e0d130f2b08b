"""What ``onceflow init`` writes: a job file and a pytest test of it, as text.

The job reads payment-shaped records (the schema ``onceflow sample`` and ``onceflow
produce`` write), so a new job has input at hand from its first minute; the test feeds it
rows through ``onceflow.testing.run_job`` and checks every one landed once.
"""

from __future__ import annotations

from dataclasses import dataclass

from onceflow.config.modes import Guarantee, Strategy
from onceflow.prove.workload import PAYMENTS_SCHEMA

__all__ = ["SOURCES", "Scaffold", "job_text", "test_text"]

#: The source kinds ``init`` writes a job for.
SOURCES = ("files", "kafka", "delta")


@dataclass(frozen=True)
class Scaffold:
    """What the new job is: its name, the source kind it reads, what it promises."""

    name: str
    source: str
    guarantee: Guarantee
    strategy: Strategy | None

    @property
    def input_path(self) -> str:
        """Where a files source reads (``init`` writes sample input there)."""
        return f"data/input/{self.name}"

    @property
    def test_module(self) -> str:
        return "test_" + self.name.replace("-", "_").replace(".", "_")


def job_text(job: Scaffold) -> str:
    """The job's YAML: source, the events sink, guarantee, checkpoint, an available-now
    trigger (read what is there, then stop; drop it for a job that keeps running)."""
    head = (
        f"# {job.name}: written by `onceflow init`; edit freely. Every key: docs/reference.md.\n"
        f"#   run it:  .venv/bin/onceflow run jobs/{job.name}.yaml --env local\n"
        f"#   test it: .venv/bin/pytest tests/{job.test_module}.py\n"
        f"{_HOW_TO_FEED[job.source].format(job=job)}"
        f"name: {job.name}\n"
        f"description: {_DESCRIPTION[job.source]} into the events Delta table, {job.guarantee}.\n"
        "\n"
        f"{_SOURCE[job.source].format(job=job, schema=PAYMENTS_SCHEMA)}"
        "\n"
        f"guarantee: {job.guarantee}\n"
    )
    if job.strategy is not None:
        head += f"strategy: {job.strategy}\n"
    sink = f"\nsinks:\n  - name: events\n    kind: delta\n    path: data/tables/{job.name}/events\n"
    if job.strategy is Strategy.MERGE:
        sink += "    merge:\n      keys: [id]\n      order_by: event_time\n"
    return (
        head
        + sink
        + f"\ncheckpoint: state/{job.name}/checkpoint\ntrigger:\n  available_now: true\n"
    )


def test_text(job: Scaffold) -> str:
    """A pytest module for the job, run by onceflow's plugin in Spark local mode."""
    fixtures = "onceflow_spark, onceflow_kafka, tmp_path" if job.source == "kafka" else (
        "onceflow_spark, tmp_path"
    )  # fmt: skip
    test = _TEST.format(job=job, fixtures=_parameters(fixtures, "test_every_record_lands_once"))
    if job.source != "delta":  # parsed by onceflow: a record that does not parse is kept aside
        name = "test_a_record_that_does_not_parse_is_quarantined_not_lost"
        test += _QUARANTINE_TEST.format(job=job, fixtures=_parameters(fixtures, name))
    return test


def _parameters(fixtures: str, function: str) -> str:
    """``(a, b)``, or split over lines as a formatter would when the line is too long."""
    if len(f"def {function}({fixtures}):") <= 100:
        return f"({fixtures})"
    return f"(\n    {fixtures}\n)"


_DESCRIPTION = {
    "files": "JSON files",
    "kafka": "A Kafka topic's JSON records",
    "delta": "The rows appended to a Delta table",
}

_HOW_TO_FEED = {
    "files": "#   input:   .venv/bin/onceflow sample --out {job.input_path} (more JSON files)\n",
    "kafka": (
        '#   input:   make kafka-up && eval "$(make -s kafka-env)"\n'
        "#            .venv/bin/onceflow produce --bootstrap $KAFKA_BOOTSTRAP "
        "--topic {job.name} --records 1000\n"
    ),
    "delta": "#   input:   the default job's events table (make run writes it)\n",
}

_SOURCE = {
    "files": (
        "source:\n"
        "  kind: files\n"
        "  format: json\n"
        "  path: {job.input_path}\n"
        '  schema: "{schema}"\n'
        "  max_files_per_trigger: 10\n"
    ),
    "kafka": (
        "source:\n"
        "  kind: kafka\n"
        "  subscribe: {job.name}\n"
        "  startingOffsets: earliest\n"
        "  maxOffsetsPerTrigger: 10000\n"
        "  format: json\n"
        '  schema: "{schema}"\n'
        "  options:\n"
        "    kafka.bootstrap.servers: ${{env:KAFKA_BOOTSTRAP}}\n"
    ),
    "delta": (
        "source:\n  kind: delta\n  path: data/tables/payments/events\n  max_files_per_trigger: 10\n"
    ),
}

_TEST = '''"""Tests of the {job.name} job (jobs/{job.name}.yaml), in Spark local mode, by onceflow's
pytest plugin (pip install 'onceflow[testing]'). Written by `onceflow init`."""

from onceflow.testing import assert_exactly_once, run_job

PAYMENT = {{"account": "acct-0001", "amount": "12.50", "event_time": "2026-01-01T00:00:00Z"}}


def test_every_record_lands_once{fixtures}:
    rows = [PAYMENT | {{"id": number}} for number in range(1, 6)]
    run = run_job(
        "jobs/{job.name}.yaml",
        env="local",
        spark=onceflow_spark,
        root=tmp_path,  # checkpoint, tables, quarantine and input go here
        input_rows=rows,
    )
    assert_exactly_once(run.sinks["events"], range(1, 6))
'''

_QUARANTINE_TEST = """

def test_a_record_that_does_not_parse_is_quarantined_not_lost{fixtures}:
    bad = PAYMENT | {{"id": "six"}}  # not a BIGINT
    run = run_job(
        "jobs/{job.name}.yaml",
        env="local",
        spark=onceflow_spark,
        root=tmp_path,
        input_rows=[PAYMENT | {{"id": 1}}, bad],
    )
    assert_exactly_once(run.sinks["events"], [1])
    assert run.quarantine is not None and run.quarantine.count() == 1
"""

"""Testing onceflow jobs with pytest, in Spark local mode: the ``onceflow[testing]`` extra.

Installed, it registers a pytest plugin (``onceflow.testing.plugin``) whose fixtures give a
Delta-enabled local SparkSession and real local services (Kafka, PostgreSQL, HDFS, an S3
server, a Spark standalone cluster). Here are the helpers a test of a job calls::

    from onceflow.testing import assert_exactly_once, run_job

    def test_payments_land_once(onceflow_spark, tmp_path):
        run = run_job(
            "jobs/payments.yaml",
            spark=onceflow_spark,
            root=tmp_path,
            input_rows=[{"id": 1, "account": "acct-1", "amount": "2.50",
                         "event_time": "2026-01-01T00:00:00Z"}],
        )
        assert_exactly_once(run.sinks["events"], [1])

``run_job`` feeds the rows to the job's source the way its kind takes them (files written
into a folder, records produced to a new Kafka topic), runs the job to the end in this
session with everything it writes under ``root``, and hands back its sinks as DataFrames,
read as any reader reads them (never through onceflow's sink code).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from onceflow.config import JobSpec, kinds, load_job
from onceflow.config.documents import Document
from onceflow.config.job import job_model
from onceflow.config.kinds import load_reference
from onceflow.config.layering import apply_override
from onceflow.contracts import BatchInstrument, BatchReport, BatchReports
from onceflow.prove.verify import Tally, read_output, read_sink, tally
from onceflow.runner import start_query

__all__ = ["JobRun", "assert_exactly_once", "assert_rows_equal", "drain", "run_job"]

Rows = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class JobRun:
    """What ``run_job`` ran and what came out of it.

    Attributes:
        spec: the job as it ran (its paths under the run's root).
        sinks: each sink's content by name, read as any reader would.
        quarantine: the quarantine table's content, or None when nothing was quarantined.
        reports: each batch's report (``guarantee`` and ``quality``), by batch id.
    """

    spec: JobSpec
    sinks: dict[str, DataFrame]
    quarantine: DataFrame | None
    reports: dict[int, BatchReport] = field(default_factory=dict)


def run_job(
    job: str | Path | JobSpec,
    *,
    spark: SparkSession,
    root: Path | None = None,
    input_rows: Rows | Sequence[Rows] | None = None,
    env: str | None = None,
    overrides: Iterable[str] = (),
    conf_dir: Path | None = None,
    instrument: BatchInstrument | None = None,
) -> JobRun:
    """Run ``job`` to the end in ``spark``.

    Args:
        job: a job file (loaded with ``env`` and ``overrides``), or a job spec as it is
            (``onceflow.load_job(...).spec``).
        spark: the session (the ``onceflow_spark`` fixture's).
        root: the job's ``storage.root``, for a job file: its checkpoint, its tables, its
            quarantine, and the input ``input_rows`` are written to (required then).
        input_rows: records (mappings) for the source, one batch; or a list of such lists,
            one batch each. Omitted, the job reads what its source already holds.
        env: the profile, e.g. ``local`` (``conf/`` beside the job's folder).
        overrides: ``key.path=value`` settings for a job file, applied last.
        conf_dir: the profiles' folder (default: ``conf/`` beside the job's folder).
        instrument: crash injection (``onceflow.prove.crash.CrashPlan``), for tests of
            what a crash does.

    Raises:
        whatever stopped the query (a ``CrashInjected`` from ``instrument``, an
        ``OnceflowError``).
    """
    draining = ["trigger.available_now=true", "trigger.once=false", "trigger.processing_time=null"]
    if isinstance(job, JobSpec):
        spec, place = _with_overrides(job, draining), root or Path(job.storage.root)
    else:
        if root is None:
            raise ValueError("run_job of a job file needs root: where the job writes")
        settings = [f"storage.root={root}", *draining, *overrides]
        spec = load_job(job, env=env, overrides=settings, conf_dir=conf_dir).spec
        place = root
    if input_rows is not None:
        feed = kinds().source(spec.source.kind).feed
        if feed is None:
            raise ValueError(f"a {spec.source.kind} source takes no input_rows: fill it first")
        place.mkdir(parents=True, exist_ok=True)
        spec = _with_overrides(
            spec, load_reference(feed)(spec.source, _as_batches(input_rows), place)
        )
    reports = BatchReports()
    query = drain(start_query(spark, spec, reports=reports, instrument=instrument))
    progress = query.recentProgress
    batch_ids = {int(p.batchId) for p in progress}
    taken = {i: r for i in sorted(batch_ids) if (r := reports.take(i)) is not None}
    quarantine = spec.quarantine_sink()
    quarantined = None
    if quarantine is not None and DeltaTable.isDeltaTable(spark, quarantine.location):
        quarantined = read_output(spark, quarantine.kind, quarantine.location)
    return JobRun(
        spec=spec,
        sinks={sink.name: read_sink(spark, spec, sink) for sink in spec.sinks},
        quarantine=quarantined,
        reports=taken,
    )


def drain(query: StreamingQuery, timeout: int = 600) -> StreamingQuery:
    """Let ``query`` process what its source has, wait for its trigger to end it (at most
    ``timeout`` seconds), stop it, and raise whatever stopped it; the query, stopped."""
    try:
        query.processAllAvailable()
        query.awaitTermination(timeout)
    finally:
        query.stop()
    failure = query.exception()
    if failure is not None:
        raise failure
    return query


def _with_overrides(spec: JobSpec, overrides: Iterable[str]) -> JobSpec:
    """``spec`` with ``key.path=value`` settings applied, validated again (its secrets
    kept as they are, not dumped as text)."""
    document = Document(_plain(spec.model_dump(by_alias=True, exclude_none=True)))
    for position, override in enumerate(overrides, start=1):
        apply_override(document, override, position)
    return job_model().model_validate(document.data)


def _plain(value: Any) -> Any:
    """A dumped model with its tuples as lists, as a YAML document has them."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def assert_exactly_once(frame: DataFrame, ids: Iterable[int], column: str = "id") -> Tally:
    """Every id in ``ids`` is in ``frame``'s ``column`` exactly once, and nothing else is;
    returns the tally. The failure says how many were lost, doubled or unexpected."""
    found = tally([row[0] for row in frame.select(column).collect()], ids)
    if (found.lost, found.duplicated, found.unexpected) != (0, 0, 0):
        raise AssertionError(
            f"not exactly once: {found.lost} lost, {found.duplicated} duplicated, "
            f"{found.unexpected} unexpected of {found.expected} expected ({found})"
        )
    return found


def assert_rows_equal(actual: DataFrame, expected: DataFrame, **options: Any) -> None:
    """``actual`` holds the rows of ``expected``, in any order (chispa's comparison; its
    options pass through, e.g. ``ignore_nullable=True``)."""
    from chispa import assert_df_equality

    assert_df_equality(actual, expected, ignore_row_order=True, **options)


def _as_batches(rows: Rows | Sequence[Rows]) -> list[list[Mapping[str, Any]]]:
    if rows and not isinstance(rows[0], Mapping):
        return [list(batch) for batch in rows]  # type: ignore[arg-type]
    return [list(rows)]  # type: ignore[arg-type]

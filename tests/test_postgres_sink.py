"""The PostgreSQL sink against a real server: every guarantee under every crash point,
what a replay does to the ledger and the staging tables, constraint failures, types, and
the errors of a server that is down or refuses the password.

Each test gets its own database, so tables and ledgers never mix between tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from pyspark.sql import SparkSession

from onceflow.config import JobSpec
from onceflow.contracts import BatchContext
from onceflow.errors import ConfigError, SinkError
from onceflow.prove.verify import measure_delivery
from onceflow.prove.workload import write_payment_files
from onceflow.sinks.base import build_sink
from onceflow.sinks.postgres.database import STAGE_PREFIX, connection_params
from onceflow.sinks.postgres.sink import PostgresSink
from onceflow.sinks.postgres.staging import StageTask
from onceflow.status import job_status
from onceflow.testing.services import LocalPostgres
from tests.conftest import PG_PASSWORD, JobLoader
from tests.streaming import crash_at, run_to_end

pytestmark = [pytest.mark.spark, pytest.mark.postgres]

JOB = "jobs/payments_postgres.yaml"
# two batches, the crash in the first (its after_commit fires as batch 1 begins)
RECORDS, FILES, CRASH_BATCH = 80, 2, 0
PER_BATCH = RECORDS // FILES
POINTS = ["before_write", "mid_write", "after_write", "after_commit"]
_databases = itertools.count()

# (guarantee, crash point) -> (events lost, events duplicated, balances exact)
EXPECTED: dict[tuple[str, str], tuple[int, int, bool]] = {
    # at-least-once: a replay after the events committed inserts them again; after both
    # sinks committed, the additive balance upsert applies batch 0 twice.
    ("at-least-once", "before_write"): (0, 0, True),
    ("at-least-once", "mid_write"): (0, PER_BATCH, True),
    ("at-least-once", "after_write"): (0, PER_BATCH, False),
    ("at-least-once", "after_commit"): (0, 0, True),
    # at-most-once: the checkpoint's ledger claims batch 0 before writing, so a crash between
    # the two sinks loses batch 0 from the balances, never duplicates anything.
    ("at-most-once", "before_write"): (0, 0, True),
    ("at-most-once", "mid_write"): (0, 0, False),
    ("at-most-once", "after_write"): (0, 0, True),
    ("at-most-once", "after_commit"): (0, 0, True),
} | {("exactly-once", point): (0, 0, True) for point in POINTS}


def under(guarantee: str) -> list[str]:
    """Overrides that run the job under ``guarantee`` (its strategy is exactly-once's)."""
    return [f"guarantee={guarantee}", *([] if guarantee == "exactly-once" else ["strategy=null"])]


@pytest.fixture
def database(postgres: LocalPostgres) -> str:
    """A fresh database owned by the test role."""
    name = f"t{next(_databases)}_{datetime.now(UTC):%H%M%S%f}"
    result = postgres.psql(f"CREATE DATABASE {name} OWNER {postgres.user}", admin=True)
    assert result.returncode == 0, result.stderr
    return name


def connect(postgres: LocalPostgres, database: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(
        host=postgres.host,
        port=postgres.port,
        dbname=database,
        user=postgres.user,
        password=PG_PASSWORD,
        autocommit=True,
    )


def rows_of(
    postgres: LocalPostgres, database: str, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    with connect(postgres, database) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def stage_tables(postgres: LocalPostgres, database: str) -> list[str]:
    return [
        str(name)
        for (name,) in rows_of(
            postgres,
            database,
            "SELECT tablename FROM pg_tables WHERE starts_with(tablename, %s)",
            (STAGE_PREFIX,),
        )
    ]


@pytest.fixture
def pg_job(job_in: JobLoader, tmp_path: Path, database: str) -> Callable[..., JobSpec]:
    """The PostgreSQL payments job in this test's folder and database, one file a batch."""
    write_payment_files(tmp_path / "data/sample/payments", count=RECORDS, files=FILES)

    def load(*overrides: str) -> JobSpec:
        return job_in(
            JOB,
            "source.max_files_per_trigger=1",
            f"connections.warehouse.database={database}",
            *overrides,
        ).spec

    return load


@pytest.mark.parametrize(("guarantee", "point"), sorted(EXPECTED))
def test_crash_and_restart(
    spark: SparkSession,
    pg_job: Callable[..., JobSpec],
    postgres: LocalPostgres,
    database: str,
    guarantee: str,
    point: str,
) -> None:
    chosen = under(guarantee)
    crashing = pg_job(*chosen)
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, crashing, crash=crash_at(point, CRASH_BATCH))
    if (guarantee, point) == ("exactly-once", "mid_write"):
        # status reads the ledger: the first sink holds batch 0, in flight; the second not
        stalled = job_status(spark, crashing)
        assert (stalled.healthy, stalled.last_committed, stalled.in_flight) == (True, None, 0)
        first, second, _quarantine = stalled.sinks
        assert (first.last_batch, second.last_batch) == (0, None), stalled
        assert "its replay skips this sink" in first.verdict
    spec = pg_job(*chosen)
    run_to_end(spark, spec)
    status = job_status(spark, spec)
    assert (status.healthy, status.last_committed, status.in_flight) == (True, 1, None), status
    assert [s.last_batch for s in status.sinks] == [1, 1, None], status  # no quarantine yet

    delivery = measure_delivery(spark, spec, RECORDS, seed=7)
    lost, duplicated, balances_exact = EXPECTED[(guarantee, point)]
    assert (delivery.lost, delivery.duplicated) == (lost, duplicated), delivery
    assert (delivery.balance_drift == Decimal(0)) is balances_exact, delivery
    # a crash mid-staging leaves a staging table; the replay drops it
    assert stage_tables(postgres, database) == []
    ledger = rows_of(postgres, database, "SELECT target, batch_id FROM onceflow_batches")
    # one row per batch and table; at-most-once skipped batch 0 of the balances
    skipped = guarantee == "at-most-once" and point == "mid_write"
    assert len(ledger) == (3 if skipped else 4), ledger


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_a_crash_while_staging_moves_nothing_and_the_replay_cleans_up(
    spark: SparkSession,
    pg_job: Callable[..., JobSpec],
    postgres: LocalPostgres,
    database: str,
    guarantee: str,
) -> None:
    # one sink, so mid_write is a task that dies inside its COPY while the other commits
    events_only = "sinks=[{name: events, kind: postgres, connection: warehouse, table: payments}]"
    crashing = pg_job(events_only, *under(guarantee))
    with pytest.raises(Exception, match="CRASH_INJECTED"):
        run_to_end(spark, crashing, crash=crash_at("mid_write", 0))
    assert len(stage_tables(postgres, database)) == 1
    assert rows_of(postgres, database, "SELECT count(*) FROM payments") == [(0,)]

    spec = pg_job(events_only, *under(guarantee))
    run_to_end(spark, spec)
    delivery = measure_delivery(spark, spec, RECORDS, seed=7)
    assert (delivery.lost, delivery.duplicated) == (0, 0), delivery
    assert stage_tables(postgres, database) == []


def test_a_constraint_violation_fails_the_batch_and_a_fix_lets_it_through(
    spark: SparkSession, pg_job: Callable[..., JobSpec], postgres: LocalPostgres, database: str
) -> None:
    # the target refuses ids over 60: batch 1 (ids 41..80) breaks the rule half way
    with connect(postgres, database) as conn:
        conn.execute(
            "CREATE TABLE payments (id bigint, account text, amount numeric(18,2), "
            "event_time timestamptz, CONSTRAINT small_ids CHECK (id <= 60))"
        )
    spec = pg_job()
    with pytest.raises(Exception, match="SINK_WRITE_FAILED") as failure:
        run_to_end(spark, spec)
    assert "small_ids" in str(failure.value)
    assert PG_PASSWORD not in str(failure.value)
    # nothing of batch 1 landed: not in the target, not in the ledger
    assert rows_of(postgres, database, "SELECT count(*), max(id) FROM payments") == [(40, 40)]
    with connect(postgres, database) as conn:
        conn.execute("ALTER TABLE payments DROP CONSTRAINT small_ids")
    run_to_end(spark, spec)
    delivery = measure_delivery(spark, spec, RECORDS, seed=7)
    assert (delivery.lost, delivery.duplicated, delivery.balance_drift) == (0, 0, 0), delivery
    assert stage_tables(postgres, database) == []


def test_values_cross_into_postgres_unchanged(
    spark: SparkSession, pg_job: Callable[..., JobSpec], postgres: LocalPostgres, database: str
) -> None:
    spec = pg_job("sinks=[{name: odd, kind: postgres, connection: warehouse, table: odd}]")
    tricky = [
        (1, 'a "quoted", comma', "  padded  ", b"\x00\xff", True, 1.5, date(2026, 2, 28)),
        (2, "line\nbreak\\back\tslash", "", b"", False, float("nan"), date(1, 1, 1)),
        (3, None, "ünïcødé ✓", None, None, float("inf"), None),
    ]
    frame = spark.createDataFrame(
        tricky,
        "id INT, s STRING, e STRING, b BINARY, f BOOLEAN, d DOUBLE, day DATE",
    ).selectExpr(
        "*",
        "CAST('2026-03-01 12:34:56.123456' AS TIMESTAMP) AS ts",
        "array(id, id) AS arr",
        "named_struct('k', s) AS obj",
        "CAST(id AS DECIMAL(20, 4)) / 3 AS money",
    )
    sink = build_sink(spec, spec.sinks[0])
    sink.write(frame, BatchContext("app", 0, guarded=True))

    got = rows_of(postgres, database, "SELECT * FROM odd ORDER BY id")
    assert [row[:7] for row in got] == [
        (1, 'a "quoted", comma', "  padded  ", b"\x00\xff", True, 1.5, date(2026, 2, 28)),
        (
            2,
            "line\nbreak\\back\tslash",
            "",
            b"",
            False,
            pytest.approx(float("nan"), nan_ok=True),
            date(1, 1, 1),
        ),
        (3, None, "ünïcødé ✓", None, None, float("inf"), None),
    ]
    assert got[0][7] == datetime(2026, 3, 1, 12, 34, 56, 123456, tzinfo=UTC)
    assert got[0][8] == [1, 1]
    assert got[2][9] == {"k": None} or got[2][9] == {}
    assert got[1][10] == Decimal("0.66666667") or str(got[1][10]).startswith("0.6666")
    types = dict(
        rows_of(
            postgres,
            database,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'odd'",
        )
    )
    assert types["ts"] == "timestamp with time zone"
    assert types["arr"] == types["obj"] == "jsonb"
    assert types["b"] == "bytea" and types["money"] == "numeric"


def test_a_retried_staging_task_replaces_its_twin(postgres: LocalPostgres, database: str) -> None:
    with connect(postgres, database) as conn:
        conn.execute("CREATE TABLE stage (id bigint, _onceflow_part integer)")
    params = {
        "host": postgres.host,
        "port": postgres.port,
        "dbname": database,
        "user": postgres.user,
        "password": PG_PASSWORD,
    }
    task = StageTask(params, None, "stage", ("id",), "_onceflow_part")
    lines = [('"1"',), ('"2"',), ('"3"',)]
    assert list(task(4, iter(lines))) == [3]
    assert list(task(4, iter(lines))) == [3]  # the retry of partition 4
    assert list(task(5, iter(lines[:1]))) == [1]
    assert rows_of(
        postgres, database, "SELECT _onceflow_part, count(*) FROM stage GROUP BY 1 ORDER BY 1"
    ) == [(4, 3), (5, 1)]


def test_a_server_that_is_down_stops_the_job_before_it_starts(
    spark: SparkSession, pg_job: Callable[..., JobSpec]
) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    spec = pg_job(f"connections.warehouse.port={port}", "connections.warehouse.connect_timeout=3")
    with pytest.raises(SinkError, match="SINK_UNREACHABLE") as refused:
        run_to_end(spark, spec)
    assert f"127.0.0.1:{port}" in str(refused.value)
    assert not spark.streams.active


def test_a_wrong_password_is_refused_clearly(
    spark: SparkSession, pg_job: Callable[..., JobSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEFLOW_PG_PASSWORD", "wrong-pw-CANARY-91")
    spec = pg_job()
    with pytest.raises(SinkError, match="SINK_AUTH_FAILED") as refused:
        run_to_end(spark, spec)
    text = str(refused.value)
    assert "password authentication failed" in text and "connections.warehouse.password" in text
    assert "wrong-pw-CANARY-91" not in text and PG_PASSWORD not in text


@pytest.fixture
def pg_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection variables the job reads, for tests that only load it (no server)."""
    for name, value in {
        "ONCEFLOW_PG_HOST": "127.0.0.1",
        "ONCEFLOW_PG_PORT": "5432",
        "ONCEFLOW_PG_DATABASE": "db",
        "ONCEFLOW_PG_USER": "me",
        "ONCEFLOW_PG_PASSWORD": "pw-from-env",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("pg_variables")
def test_a_password_written_into_the_job_is_refused(job_in: JobLoader) -> None:
    with pytest.raises(ConfigError, match="CONFIG_SECRET_LITERAL") as refused:
        job_in(JOB, "connections.warehouse.password=hunter2-literal")
    assert "connections.warehouse.password" in str(refused.value)
    assert "hunter2-literal" not in str(refused.value)


def test_the_ledger_names_the_writers_of_a_table(
    spark: SparkSession, pg_job: Callable[..., JobSpec]
) -> None:
    spec = pg_job()
    run_to_end(spark, spec)
    sink = build_sink(spec, spec.sinks[0])
    assert isinstance(sink, PostgresSink)
    assert len(sink.writers()) == 1
    # a fresh checkpoint pointed at the same tables is refused, as for Delta
    fresh = pg_job("checkpoint=state/other/checkpoint")
    with pytest.raises(Exception, match="GUARANTEE_FOREIGN_SINK"):
        run_to_end(spark, fresh)
    assert connection_params(spec.connections["warehouse"])["password"] == PG_PASSWORD


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sinks[0].connection=warehose", "did you mean 'warehouse'?"),
        ("sinks[1].keys=[]", "an upsert needs keys"),
        ("sinks[0].update={id: '1'}", "update: is only read with mode: upsert"),
        (
            "sinks[0].mode=merge",
            "a PostgreSQL sink writes by append, upsert, not merge; a table keyed by",
        ),
        ("sinks[1].update={account: 'x'}", "keys cannot be updated: account"),
    ],
)
@pytest.mark.usefixtures("pg_variables")
def test_sink_settings_that_cannot_work_are_refused_before_spark(
    job_in: JobLoader, override: str, message: str
) -> None:
    with pytest.raises(ConfigError, match="CONFIG_GUARANTEE_REFUSED") as refused:
        job_in(JOB, override)
    assert message in str(refused.value)

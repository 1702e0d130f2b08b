"""Chaos for the Kafka sink under exactly-once, in real processes against real brokers.

- A zombie: a driver frozen (SIGSTOP) with a part's transaction open, replaced on its
  checkpoint once its lock went stale, then resumed: the replacement's producer fenced it,
  so nothing of the zombie's becomes visible.
- A broker stopped and started again (same ports, same data) under a job that runs on a
  processing-time trigger: the job, restarted when it dies as a supervisor would, ends with
  every record once.
- A broker that cannot run transactions: the job is refused before its query starts.

Every count is made here, by plain confluent-kafka consumers against the ids the workload
generated, not by onceflow's own code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from onceflow.errors import SinkError
from onceflow.prove.produce import produce_payments
from onceflow.testing.services import LocalKafka
from tests.conftest import ROOT, JobLoader
from tests.kafka_topics import topic_messages
from tests.streaming import run_to_end

pytestmark = [pytest.mark.spark, pytest.mark.kafka, pytest.mark.chaos, pytest.mark.slow]

JOB = str(ROOT / "jobs" / "payments_to_kafka.yaml")
HEARTBEAT, STALE = 1, 5


# -- the job as a separate process ----------------------------------------------------------
def session_pids(session: int) -> list[int]:
    """Every process of ``session``: the job's group and PySpark's daemon, which puts itself
    and its Python workers (the tasks) in a process group of their own."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                pass
    return pids


class JobProcess:
    """``python -m onceflow.prove.child run`` in a session of its own, output to ``log``."""

    def __init__(self, args: list[str], log: Path, bootstrap: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "onceflow.prove.child", "run", JOB, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ | {"KAFKA_BOOTSTRAP": bootstrap},
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to every process of the job's session, Python workers included;
        twice over, for a process forked while the first pass ran."""
        if self.process.poll() is not None:
            return
        for _ in range(2):
            for pid in session_pids(self.pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def kill(self) -> None:
        """SIGKILL the whole session (driver, JVM, Python workers), then reap the driver."""
        self.signal(signal.SIGKILL)
        self.process.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@pytest.fixture
def processes() -> Iterator[list[JobProcess]]:
    """The job processes a test starts; any still running at its end is killed."""
    started: list[JobProcess] = []
    yield started
    for job in started:
        job.kill()


def job_args(root: Path, source: str, output: str, *overrides: str) -> list[str]:
    """The Kafka -> Kafka job from ``source`` to ``output`` under ``root``, short locks."""
    sets = [
        f"storage.root={root}",
        f"source.subscribe={source}",
        f"sinks[0].topic={output}",
        f"sinks[0].control_topic={output}.markers",
        f"locks.heartbeat_seconds={HEARTBEAT}",
        f"locks.stale_after_seconds={STALE}",
        *overrides,
    ]
    return ["--env", "test", *(arg for value in sets for arg in ("--set", value))]


def wait_for(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)


# -- what a plain consumer sees ---------------------------------------------------------------
def read_ids(bootstrap: str, topic: str, isolation: str = "read_committed") -> list[int]:
    """The ``id`` of every record of ``topic`` as a plain consumer with ``isolation`` sees it."""
    return [int(json.loads(m.value())["id"]) for m in topic_messages(bootstrap, topic, isolation)]


def lost_and_duplicated(ids: list[int], expected: int) -> tuple[set[int], dict[int, int]]:
    """Ids 1..expected never seen, and each id seen more than once with its count."""
    seen = Counter(ids)
    return set(range(1, expected + 1)) - set(seen), {i: n for i, n in seen.items() if n > 1}


def new_topics(kafka: LocalKafka, tag: str, records: int) -> tuple[str, str]:
    """A source topic holding payments 1..records and an empty output topic, 3 partitions each."""
    stamp = f"{tag}-{int(time.time() * 1000)}"
    source, output = f"chaos-in-{stamp}", f"chaos-out-{stamp}"
    kafka.create_topic(source, partitions=3)
    produce_payments(kafka.bootstrap, source, records)
    kafka.create_topic(output, partitions=3)
    return source, output


def lock_age(checkpoint: Path) -> float:
    """Seconds since the checkpoint lock's last heartbeat (0 while it is unreadable)."""
    try:
        holder: dict[str, Any] = json.loads((checkpoint / "onceflow" / "lock").read_text())
    except (OSError, ValueError):
        return 0.0
    return time.time() - float(holder["heartbeat"])


# -- 1. the zombie ----------------------------------------------------------------------------
ZOMBIE_RECORDS, PER_BATCH = 10000, 2000


class Watermarks:
    """The ends of a topic's partitions as a read_committed and a read_uncommitted consumer
    see them: a transaction is open in a partition whose last stable offset is short of
    its end."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.partitions = [TopicPartition(topic, p) for p in range(partitions)]
        settings = {"bootstrap.servers": bootstrap, "group.id": "chaos-ends", "log_level": 3}
        self.clients = [
            Consumer(settings | {"isolation.level": isolation})
            for isolation in ("read_committed", "read_uncommitted")
        ]

    def open_transaction(self) -> bool:
        """Whether a transaction is open now. The ends are read before the stable offsets:
        read after, an end would count a transaction that committed between the two reads
        (its records past the stable offset read before it), and the test would act on a
        moment when nothing was open."""
        try:
            end, stable = (
                [c.get_watermark_offsets(p, timeout=5, cached=False)[1] for p in self.partitions]
                for c in reversed(self.clients)
            )
        except Exception:  # unreadable (a restarting broker) is not open
            return False
        return any(s < e for s, e in zip(stable, end, strict=True))

    def apart(self) -> bool:
        """Whether the partitions' last stable offsets differ: on a control topic, whose
        part p gets one marker a batch in partition p, some part committed a batch that
        another has not (yet)."""
        try:
            stable = [
                self.clients[0].get_watermark_offsets(p, timeout=5, cached=False)[1]
                for p in self.partitions
            ]
        except Exception:  # unreadable (a restarting broker) tells nothing
            return False
        return len(set(stable)) > 1

    def close(self) -> None:
        for client in self.clients:
            client.close()


def test_a_zombie_resumed_after_its_replacement_fenced_it_makes_nothing_visible(
    kafka: LocalKafka, tmp_path: Path, processes: list[JobProcess]
) -> None:
    """The zombie: once the first driver has committed a batch, it is frozen (SIGSTOP to its
    whole session: driver, JVM and the Python worker of the part) at a moment a part's
    transaction is open with records on the broker. Once its lock is stale, a second
    driver takes the checkpoint over, replays the batch (its producer of that part, same
    ``transactional.id``, fences the zombie's and aborts the open transaction) and drains
    the source. Resumed, the zombie fails (its produce and commit are fenced, its lock
    lost) and exits non-zero. A read_committed consumer then sees every id exactly once,
    while a read_uncommitted one sees more records: the zombie's aborted ones, which were
    on the broker and would have been duplicates had its commit gone through."""
    source, output = new_topics(kafka, "zombie", ZOMBIE_RECORDS)
    # a transaction timeout far longer than the zombie is frozen: the broker never aborts
    # its transaction on its own, only the replacement's fence can
    args = job_args(
        tmp_path, source, output, 'sinks[0].options["kafka.transaction.timeout.ms"]=600000'
    )
    checkpoint = tmp_path / "state" / "payments_to_kafka" / "checkpoint"
    # one record per Arrow batch: a part's transaction stays open for long enough (its
    # records reaching the broker while the task still produces) to be caught open
    slow = ["--set", f"source.maxOffsetsPerTrigger={PER_BATCH}",
            "--set", 'spark.conf["spark.sql.execution.arrow.maxRecordsPerBatch"]=1']  # fmt: skip
    zombie = JobProcess([*args, *slow], tmp_path / "zombie.log", kafka.bootstrap)
    processes.append(zombie)

    def committed_one() -> bool:
        assert zombie.process.poll() is None, zombie.tail()
        return len(batches_in(checkpoint, "commits")) >= 1

    wait_for(committed_one, 240, "the first driver committing its first batch")
    ends = Watermarks(kafka.bootstrap, output, 3)
    try:
        deadline = time.monotonic() + 120
        while True:  # freeze it with a transaction open; one that ended meanwhile: again
            assert zombie.process.poll() is None, zombie.tail()
            assert time.monotonic() < deadline, "no transaction of the first driver caught open"
            if ends.open_transaction():
                zombie.signal(signal.SIGSTOP)
                if ends.open_transaction():
                    break
                zombie.signal(signal.SIGCONT)
    finally:
        ends.close()
    frozen_in = batches_in(checkpoint, "offsets")[-1]
    wait_for(lambda: lock_age(checkpoint) > STALE + 1, 30, "the frozen driver's lock going stale")

    # the replacement replays the zombie's batch as recorded, then the rest in one batch
    rest = ["--set", f"source.maxOffsetsPerTrigger={ZOMBIE_RECORDS}"]
    replacement = JobProcess([*args, *rest], tmp_path / "replacement.log", kafka.bootstrap)
    processes.append(replacement)
    assert replacement.process.wait(timeout=300) == 0, replacement.tail()

    zombie.signal(signal.SIGCONT)
    zombie_code = zombie.process.wait(timeout=180)
    said = zombie.log.read_text(errors="replace")
    assert zombie_code != 0, zombie.tail()
    # stopped by its lost lock, or by the broker refusing its fenced producer
    assert "GUARANTEE_LOCK_LOST" in said or "_FENCED" in said, zombie.tail()

    committed = read_ids(kafka.bootstrap, output)
    lost, duplicated = lost_and_duplicated(committed, ZOMBIE_RECORDS)
    assert (len(lost), len(duplicated)) == (0, 0), (sorted(lost)[:9], list(duplicated.items())[:9])
    aborted = len(read_ids(kafka.bootstrap, output, "read_uncommitted")) - len(committed)
    assert aborted > 0, "no record of the zombie's on the broker: the test proved nothing"
    print(f"zombie frozen in batch {frozen_in} with {aborted} record(s) on the broker, "
          f"exit {zombie_code}")  # fmt: skip


# -- 2. a broker restarted under a running job ------------------------------------------------
RESTART_RECORDS, RESTART_PER_BATCH = 4000, 200
#: the job's transaction timeout: a part cannot commit while its broker is down for longer
RESTART_TIMEOUT_MS = 10000


def services_jars(pytestconfig: pytest.Config) -> Path:
    """Where the session's broker takes its jars from (the plugin's ini setting)."""
    jars = Path(str(pytestconfig.getini("onceflow_services_jars_dir")))
    return (jars if jars.is_absolute() else Path(pytestconfig.rootpath) / jars) / "kafka"


def batches_in(checkpoint: Path, log: str) -> list[int]:
    """The batch ids Spark wrote to ``<checkpoint>/<log>`` (``offsets`` or ``commits``)."""
    folder = checkpoint / log
    if not folder.exists():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def visible(bootstrap: str, topic: str) -> int:
    """How many distinct ids a read_committed consumer sees now; -1 while it cannot read
    (the broker is restarting, a partition has no leader yet)."""
    try:
        return len(set(read_ids(bootstrap, topic)))
    except Exception:  # "not readable yet" is any error at all
        return -1


def test_a_broker_restarted_under_a_running_job_loses_and_doubles_nothing(
    pytestconfig: pytest.Config, tmp_path: Path, processes: list[JobProcess]
) -> None:
    """A broker restart mid-run: a job on a processing-time trigger writes Kafka -> Kafka
    exactly-once; once it has committed batches, and at a moment when a batch committed in
    some part while another part's transaction is open, its broker (a broker of this
    test's own) is killed, kept down until the job fails of it (the part cannot commit
    within the transaction timeout), and started again on the same ports and data. The
    job is restarted on its checkpoint, as a supervisor would: it replays the failed batch
    (the parts committed before the outage skipped by their markers, the open one fenced
    and aborted) and goes on; more batches commit after the restart; a read_committed
    consumer then sees every id exactly once."""
    with LocalKafka(tmp_path / "broker", jars=services_jars(pytestconfig)) as broker:
        source, output = new_topics(broker, "restart", RESTART_RECORDS)
        args = job_args(
            tmp_path, source, output,
            f"source.maxOffsetsPerTrigger={RESTART_PER_BATCH}",
            "trigger.available_now=false", "trigger.processing_time=1 second",
            f'sinks[0].options["kafka.transaction.timeout.ms"]={RESTART_TIMEOUT_MS}',
            # a job caught between writes fails in the source's offset fetch instead, which
            # by default retries for minutes: bounded here like the sink's transaction
            f'source.options["kafka.default.api.timeout.ms"]={RESTART_TIMEOUT_MS}',
            f'source.options["kafka.request.timeout.ms"]={RESTART_TIMEOUT_MS // 2}',
        )  # fmt: skip
        checkpoint = tmp_path / "state" / "payments_to_kafka" / "checkpoint"
        runs = [JobProcess(args, tmp_path / "job-0.log", broker.bootstrap)]
        processes.extend(runs)

        def committed_two() -> bool:
            assert runs[-1].process.poll() is None, runs[-1].tail()
            return len(batches_in(checkpoint, "commits")) >= 2

        wait_for(committed_two, 240, "the job committing its first two batches")
        ends = Watermarks(broker.bootstrap, output, 3)
        markers = Watermarks(broker.bootstrap, f"{output}.markers", 4)

        def half_written() -> bool:
            return markers.apart() and ends.open_transaction()

        try:
            wait_for(half_written, 120, "a batch committed in a part, open in another", every=0)
        finally:
            ends.close()
            markers.close()
        # killed, not stopped: a polite stop lets the open transaction end first
        os.killpg(broker.pid or 0, signal.SIGKILL)
        broker.stop()
        committed_before = batches_in(checkpoint, "commits")
        # down until the job fails of it (its open part cannot commit), then back
        wait_for(lambda: runs[-1].process.poll() is not None, 120, "the job failing")
        broker.start()

        # a supervisor: restart the job whenever it dies, until every id is visible
        deadline = time.monotonic() + 240
        while visible(broker.bootstrap, output) < RESTART_RECORDS:
            assert time.monotonic() < deadline, (
                f"not every record visible after the restart; last run:\n{runs[-1].tail()}"
            )
            if runs[-1].process.poll() is not None:
                runs.append(JobProcess(args, tmp_path / f"job-{len(runs)}.log", broker.bootstrap))
                processes.append(runs[-1])
            time.sleep(1)

        # the last batch committed in the checkpoint too: nothing is in flight when it stops
        def quiet() -> bool:
            return batches_in(checkpoint, "offsets")[-1:] == batches_in(checkpoint, "commits")[-1:]

        wait_for(quiet, 60, "the job's last batch committing")
        runs[-1].kill()
        committed_after = batches_in(checkpoint, "commits")

        ids = read_ids(broker.bootstrap, output)
    lost, duplicated = lost_and_duplicated(ids, RESTART_RECORDS)
    assert (len(lost), len(duplicated)) == (0, 0), (sorted(lost)[:9], list(duplicated.items())[:9])
    # the stop landed mid-run: batches committed before it and after it
    assert 2 <= len(committed_before) < len(committed_after), (committed_before, committed_after)
    print(f"restart: committed {len(committed_before)} batch(es) before, "
          f"{len(committed_after)} in all; job runs {len(runs)}")  # fmt: skip


# -- 3. a broker that cannot run transactions -------------------------------------------------
def test_a_broker_without_transactions_is_refused_before_the_query_starts(
    spark: SparkSession,
    pytestconfig: pytest.Config,
    tmp_path: Path,
    job_in: JobLoader,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A single broker whose transaction log wants 3 replicas can never create it, so no
    producer can start a transaction there: the exactly-once job is refused with
    KAFKA_SINK_NO_TRANSACTIONS naming the broker, before its query starts (no batch in the
    checkpoint, no control topic, nothing produced to the output topic)."""
    settings = {"transaction.state.log.replication.factor": "3"}
    jars = services_jars(pytestconfig)
    with LocalKafka(tmp_path / "broker", jars=jars, settings=settings) as broker:
        monkeypatch.setenv("KAFKA_BOOTSTRAP", broker.bootstrap)
        source, output = new_topics(broker, "no-transactions", 100)
        spec = job_in(JOB, f"source.subscribe={source}", f"sinks[0].topic={output}",
                      f"sinks[0].control_topic={output}.markers").spec  # fmt: skip
        with pytest.raises(SinkError, match="KAFKA_SINK_NO_TRANSACTIONS") as caught:
            run_to_end(spark, spec)
        assert broker.bootstrap in str(caught.value)
        assert not spark.streams.active
        assert batches_in(Path(spec.checkpoint), "offsets") == []
        topics = broker.admin().list_topics(timeout=10).topics
        assert f"{output}.markers" not in topics
        assert read_ids(broker.bootstrap, output, "read_uncommitted") == []

"""One prove scenario: a guarantee x a crash point, end to end, in real processes.

It feeds a fresh workload to the job's source (files or Kafka): uniquely numbered
payments, or, to a job with a CDC sink, the customers' change feed (out of order, some
changes twice). It runs the job as a separate OS process the way ``spark-submit`` would
(``onceflow.prove.child``: ``onceflow run`` with the crash plan handed over explicitly),
lets it SIGKILL its own process group (Python and JVM) at the crash point of the chosen
batch, optionally kills it at random moments too, restarts it on the same checkpoint until
it drains (``availableNow``), then reads the sinks independently and checks what the
guarantee promises.

Checkpoint faults are scenarios too: ``deleted_commit`` (the latest ``commits/N`` removed
after a clean run, so batch N replays), ``second_instance`` (a second process on the same
checkpoint while the first runs: it must refuse) and ``fresh_checkpoint`` (a new checkpoint
against the filled sinks: it must refuse).

Every process is started through the run's ``JobProcesses``: when the run stops, the
scenario's thread gets ``Stopping`` at its next start, wait or measurement.
"""

from __future__ import annotations

import hashlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onceflow.config import Guarantee, JobSpec, join_path, kinds, load_job
from onceflow.config.kinds import load_reference
from onceflow.errors import ConfigError
from onceflow.prove.cdc_expect import cdc_sinks
from onceflow.prove.cdc_workload import change_batches
from onceflow.prove.crash import CrashPoint
from onceflow.prove.joins import stream_join_range
from onceflow.prove.processes import JobProcesses, JobRun
from onceflow.prove.promises import PROMISES, promise_held
from onceflow.prove.settlements import write_settlement_files
from onceflow.prove.verify import Delivery, measure_delivery
from onceflow.prove.workload import payment_batches

__all__ = [
    "CHECKPOINT_FAULTS",
    "ProveRow",
    "ProveRunFailed",
    "ProveSettings",
    "Scenario",
    "check_points",
    "load_spec",
]

CHECKPOINT_FAULTS = ("deleted_commit", "second_instance", "fresh_checkpoint")
_KILLED = -signal.SIGKILL


class ProveRunFailed(RuntimeError):
    """A scenario's job process did not do what the scenario needs (exit status, time)."""

    def __init__(self, scenario: str, problem: str, log: str) -> None:
        super().__init__(f"prove scenario {scenario}: {problem}; last lines of its log:\n{log}")


@dataclass(frozen=True)
class ProveSettings:
    """What ``onceflow prove`` was asked to do."""

    job_file: Path
    work_dir: Path
    env: str | None = None
    overrides: tuple[str, ...] = ()
    conf_dir: Path | None = None
    guarantees: tuple[str, ...] = ()  # empty: the job's own; "exactly-once:merge" picks one
    crash_points: tuple[str, ...] = tuple(p.value for p in CrashPoint)
    random_kills: int = 0
    records: int = 400
    batches: int = 4
    crash_batch: int = 1
    seed: int = 7
    # the producer retries: every k-th record is sent twice (0: never); the ids expected
    # stay 1..records, so a job without dedup shows the copies as duplicated
    duplicate_every: int = 0
    timeout: float = 600.0
    parallel: int = 1  # scenarios at once; each is its own set of processes
    # checkpoints and sinks under <storage_root>/<scenario> (an hdfs:// or s3a:// URI, say)
    # instead of the work dir; the generated input stays on local disk
    storage_root: str | None = None


@dataclass
class ProveRow:
    """One scenario's outcome; the field names are the report's columns."""

    guarantee: str
    strategy: str
    crash_point: str
    kills: int
    expected: int
    delivered: int
    lost: int
    duplicated: int
    balance_drift: float | None
    promise: str
    promise_held: bool
    note: str = field(default="", compare=False)
    wrong: int | None = None  # CDC sinks: rows present but not as the changes imply

    def as_report(self) -> dict[str, object]:
        """The JSON/Markdown row: exactly the documented fields."""
        return {
            "guarantee": self.guarantee,
            "strategy": self.strategy,
            "crash_point": self.crash_point,
            "kills": self.kills,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "wrong": self.wrong,
            "balance_drift": self.balance_drift,
            "promise": self.promise,
            "promise_held": self.promise_held,
        }


def _guarantee_overrides(label: str) -> list[str]:
    name, _, strategy = label.partition(":")
    guarantee = Guarantee(name)
    if guarantee is not Guarantee.EXACTLY_ONCE:
        return [f"guarantee={guarantee.value}", "strategy=null"]
    return [f"guarantee={guarantee.value}", f"strategy={strategy or 'null'}"]


def check_points(points: Sequence[str]) -> None:
    """Raise CONFIG_BAD_OVERRIDE naming the first of ``points`` that is no scenario."""
    known = {p.value for p in CrashPoint} | {"random", *CHECKPOINT_FAULTS}
    for point in points:
        if point not in known:
            raise ConfigError(
                "CONFIG_BAD_OVERRIDE",
                override=f"--crash-points {point}",
                problem="one of before_write, mid_write, after_write, after_commit, random, "
                + ", ".join(CHECKPOINT_FAULTS),
            )


def load_spec(settings: ProveSettings, extra: Sequence[str]) -> JobSpec:
    """The job ``settings`` name, with their overrides and then ``extra``."""
    return load_job(
        settings.job_file,
        env=settings.env,
        overrides=[*settings.overrides, *extra],
        conf_dir=settings.conf_dir,
    ).spec


class Scenario:
    """One guarantee x crash point: ``run`` it (on a pool thread) for its row."""

    def __init__(
        self, settings: ProveSettings, processes: JobProcesses, guarantee: str, point: str
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.guarantee = guarantee
        self.point = point
        self.name = f"{guarantee.replace(':', '-')}--{point}"
        self.root = (settings.work_dir / self.name).resolve()
        self.runs = 0
        self.rng = random.Random(f"{settings.seed}/{self.name}")  # noqa: S311 - not crypto
        storage = join_path(settings.storage_root, self.name) if settings.storage_root else None
        self.overrides = [
            f"storage.root={storage or self.root}",
            *_guarantee_overrides(guarantee),
            "trigger.available_now=true",
            "trigger.once=false",
            "trigger.processing_time=null",
        ]

    @property
    def label(self) -> str:
        """The guarantee and where it is crashed, for a person: ``at-least-once mid_write@1``."""
        point = self.point
        if point in {p.value for p in CrashPoint}:
            point = f"{point}@{self.settings.crash_batch}"
        elif point == "random":
            point = f"random (up to {self.settings.random_kills} kills)"
        return f"{self.guarantee} {point}"

    # -- set-up -------------------------------------------------------------------------
    def _feed(self, spec: JobSpec) -> list[str]:
        """Feed the workload to the job's source, through its kind, a batch's worth at a
        time; the overrides that point the job at it."""
        s = self.settings
        feed = kinds().source(spec.source.kind).feed
        if feed is None:
            raise ConfigError(
                "CONFIG_UNSUPPORTED",
                file=str(self.settings.job_file),
                problem=f"onceflow prove cannot feed a {spec.source.kind} source (its kind "
                "declares no feed); it feeds files and kafka sources",
            )
        # a CDC job gets the customers' change feed; any other the payments
        workload = change_batches if cdc_sinks(spec) else payment_batches
        records = workload(s.records, s.batches, s.seed, s.duplicate_every)
        overrides: list[str] = load_reference(feed)(spec.source, records, self.root)
        return overrides + self._feed_joined_stream(spec)

    def _feed_joined_stream(self, spec: JobSpec) -> list[str]:
        """A stream join's second source gets the payments' settlements, a file per batch
        (and one more: the settlements carried past the last payments); the overrides that
        point the join there."""
        found = stream_join_range(spec, str(self.settings.job_file))
        if found is None:
            return []
        s, other = self.settings, spec.stream_join
        if other is None or other.source.kind != "files":
            raise ConfigError(
                "CONFIG_UNSUPPORTED",
                file=str(s.job_file),
                problem="onceflow prove feeds a stream join's settlements to a files source",
            )
        folder = self.root / "join-input"
        write_settlement_files(folder, s.records, s.batches, seed=s.seed, within=found[1])
        return [
            f"join.stream.source.path={folder}",
            "join.stream.source.max_files_per_trigger=1",
        ]

    def _own_tables(self, spec: JobSpec) -> list[str]:
        """Sinks whose kind says so get a copy of their own per scenario (a database table
        ``<table>_p<tag>``), emptied first: scenarios run side by side against one server,
        and a rerun starts clean."""
        tag = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        overrides: list[str] = []
        for sink in spec.sinks:
            isolate = kinds().sink(sink.kind).isolate
            if isolate is not None:
                overrides += load_reference(isolate)(spec, sink, tag)
        return overrides

    # -- processes ----------------------------------------------------------------------
    def _command(self, crash: str | None, extra: Sequence[str] = ()) -> list[str]:
        """The job's process: ``onceflow run``, with the crash plan given to it explicitly
        (``onceflow.prove.child``; a production run has no way to take one)."""
        s = self.settings
        command = [sys.executable, "-m", "onceflow.prove.child", "run", str(s.job_file)]
        if crash:
            command += ["--crash", crash]
        if s.env:
            command += ["--env", s.env]
        if s.conf_dir:
            command += ["--conf-dir", str(s.conf_dir)]
        for override in [*s.overrides, *self.overrides, *extra]:
            command += ["--set", override]
        return command

    def _spawn(self, crash: str | None = None, extra: Sequence[str] = ()) -> JobRun:
        self.runs += 1
        return self.processes.start(self._command(crash, extra), self.root / f"run-{self.runs}.log")

    def _wait(self, run: JobRun) -> int:
        try:
            return self.processes.wait(run, self.settings.timeout)
        except subprocess.TimeoutExpired:
            self.processes.kill(run)
            raise ProveRunFailed(
                self.name, f"a run took longer than {self.settings.timeout:.0f}s", run.tail()
            ) from None

    def _expect(self, run: JobRun, wanted: int, what: str) -> None:
        code = self._wait(run)
        if code != wanted:
            raise ProveRunFailed(
                self.name, f"{what}: exit status {code}, expected {wanted}", run.tail()
            )

    def _refused(self, run: JobRun, error_class: str) -> bool:
        """True when ``run`` stopped with exit 1 and ``error_class`` in its output."""
        return self._wait(run) == 1 and error_class in run.tail(400)

    def _drain(self, extra: Sequence[str] = ()) -> None:
        self._expect(self._spawn(extra=extra), 0, "the restart that drains")

    # -- scenarios ----------------------------------------------------------------------
    def timed(self) -> tuple[ProveRow, float]:
        """``run``, and how many seconds it took."""
        started = time.monotonic()
        row = self.run()
        return row, time.monotonic() - started

    def run(self) -> ProveRow:
        self.processes.check()  # a pool thread may pick this scenario up as the run stops
        self.root.mkdir(parents=True, exist_ok=True)
        spec = load_spec(self.settings, self.overrides)
        self.overrides += self._feed(spec) + self._own_tables(spec)
        spec = load_spec(self.settings, self.overrides)
        kills, refused = 0, True
        if self.point in {p.value for p in CrashPoint}:
            crash = f"{self.point}@{self.settings.crash_batch}:kill"
            self._expect(self._spawn(crash=crash), _KILLED, f"the run crashing at {self.point}")
            kills = 1
            self._drain()
        elif self.point == "random":
            kills = self._random_kills()
            self._drain()
        elif self.point == "deleted_commit":
            self._drain()
            self._delete_latest_commit(spec)
            self._drain()
        elif self.point == "second_instance":
            refused = self._second_instance(spec)
            kills = 1
            self._drain()
        elif self.point == "fresh_checkpoint":
            self._drain()
            fresh = [f"checkpoint={self.root / 'a-fresh-checkpoint'}"]
            refused = self._refused(self._spawn(extra=fresh), "GUARANTEE_FOREIGN_SINK")
        else:
            check_points([self.point])
        return self._row(spec, kills, refused)

    def _random_kills(self) -> int:
        kills = 0
        for _ in range(self.settings.random_kills):
            run = self._spawn()
            try:
                self.processes.wait(run, self.rng.uniform(4.0, 30.0))
            except subprocess.TimeoutExpired:
                self.processes.kill(run)
                kills += 1
                continue
            self._expect(run, 0, "a run between random kills")
            break  # it drained before the kill came
        return kills

    def _delete_latest_commit(self, spec: JobSpec) -> None:
        commits = Path(spec.checkpoint) / "commits"
        latest = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        latest.unlink()
        (commits / f".{latest.name}.crc").unlink(missing_ok=True)

    def _second_instance(self, spec: JobSpec) -> bool:
        """A first instance that keeps running (processing-time trigger) holds the
        checkpoint; a second must refuse. The first is then killed, like a node lost."""
        first = self._spawn(
            extra=["trigger.available_now=false", "trigger.processing_time=2 seconds"]
        )
        lock = Path(spec.checkpoint) / "onceflow" / "lock"
        deadline = time.monotonic() + self.settings.timeout
        while not lock.exists() and first.process.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        try:
            return self._refused(self._spawn(), "GUARANTEE_CHECKPOINT_LOCKED")
        finally:
            self.processes.kill(first)

    # -- verdict ------------------------------------------------------------------------
    def _row(self, spec: JobSpec, kills: int, refused: bool) -> ProveRow:
        from onceflow.session import build_session

        self.processes.check()  # a stopping run measures nothing more
        delivery: Delivery = measure_delivery(
            build_session(spec), spec, self.settings.records, self.settings.seed
        )
        held = promise_held(spec.guarantee, delivery) and refused
        strategy = spec.strategy.value if spec.strategy else "-"
        note = "" if refused else "the run that had to be refused was not"
        return ProveRow(
            guarantee=spec.guarantee.value,
            strategy=strategy if spec.guarantee is Guarantee.EXACTLY_ONCE else "-",
            crash_point=self.point,
            kills=kills,
            expected=delivery.expected,
            delivered=delivery.delivered,
            lost=delivery.lost,
            duplicated=delivery.duplicated,
            balance_drift=float(delivery.balance_drift)
            if delivery.balance_drift is not None
            else None,
            promise=PROMISES[spec.guarantee],
            promise_held=held,
            note=note,
            wrong=delivery.wrong,
        )

"""The prove harness: every scenario of a ``ProveSettings``, ``parallel`` at a time.

Each scenario (``onceflow.prove.scenario``) crashes the job's real processes at one point
under one guarantee and counts what reached the sinks. The harness runs them on a thread
pool and tells ``on_done`` of each one as it finishes, with an estimate of the time left.
A run stopped early (an interrupt in the calling thread, or a scenario's run that failed)
kills every job process it started, starts no other, and raises ``ProveStopped`` with the
rows of the scenarios that finished, so that a partial report can still be written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from onceflow.config import Guarantee, JobSpec, is_uri
from onceflow.errors import ConfigError
from onceflow.prove.kafka_sinks import check_kafka_sinks
from onceflow.prove.processes import JobProcesses
from onceflow.prove.scenario import (
    CHECKPOINT_FAULTS,
    ProveRow,
    ProveRunFailed,
    ProveSettings,
    Scenario,
    check_points,
    load_spec,
)

__all__ = [
    "CHECKPOINT_FAULTS",
    "ProveRow",
    "ProveRunFailed",
    "ProveSettings",
    "ProveStopped",
    "ScenarioDone",
    "count_scenarios",
    "plan",
    "prove",
]


@dataclass(frozen=True)
class ScenarioDone:
    """One scenario finished, told as the run goes (``prove``'s ``on_done``)."""

    finished: int  # scenarios finished so far, this one included
    total: int
    label: str  # the guarantee and the crash point, e.g. "exactly-once:merge mid_write@1"
    row: ProveRow
    seconds: float  # this scenario's own wall time
    mean_seconds: float  # over every scenario finished so far
    parallel: int

    @property
    def seconds_left(self) -> float:
        """The mean time of a finished scenario x the scenarios left / how many run at once
        (never more at once than are left: the last one alone takes its whole time)."""
        left = self.total - self.finished
        return self.mean_seconds * left / max(1, min(self.parallel, left))


class ProveStopped(RuntimeError):
    """``prove`` ended before every scenario finished: interrupted (the exception raised
    in the calling thread, e.g. KeyboardInterrupt, is its ``__cause__``) or a scenario's
    run failed (a ``ProveRunFailed`` cause). Every job process it started is dead by then.

    Attributes:
        rows: the finished scenarios' rows, in the order of the scenario list.
        total: how many scenarios there were.
        killed: how many job processes (groups) were still running and were killed.
    """

    def __init__(self, rows: list[ProveRow], total: int, killed: int) -> None:
        super().__init__(f"prove stopped after {len(rows)} of {total} scenario(s)")
        self.rows = rows
        self.total = total
        self.killed = killed


def prove(
    settings: ProveSettings, on_done: Callable[[ScenarioDone], None] | None = None
) -> list[ProveRow]:
    """Run every scenario of ``settings`` and return one row each, in scenario order
    (guarantees, then crash points, as given).

    ``on_done`` is called in the calling thread as each scenario finishes, in the order
    they finish.

    Raises:
        ConfigError: a scenario the settings cannot make (checked before any starts).
        ProveStopped: the run ended early (see there); anything raised in the calling
            thread meanwhile (KeyboardInterrupt, a signal handler's exception) or by a
            failed scenario (``ProveRunFailed``) is its cause.
    """
    processes = JobProcesses()
    scenarios = plan(settings, processes)
    parallel = max(1, settings.parallel)
    rows: dict[int, ProveRow] = {}
    seconds = 0.0
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="prove")
    try:
        started: dict[Future[tuple[ProveRow, float]], int] = {
            pool.submit(scenario.timed): index for index, scenario in enumerate(scenarios)
        }
        for future in as_completed(started):
            row, took = future.result()  # a failed scenario's ProveRunFailed stops the run
            index = started[future]
            rows[index] = row
            seconds += took
            if on_done is not None:
                count = len(rows)
                mean = seconds / count
                label = scenarios[index].label
                on_done(ScenarioDone(count, len(scenarios), label, row, took, mean, parallel))
    except BaseException as exc:
        # whatever ends the wait (Ctrl-C, SIGTERM's handler, a failed scenario) must not
        # leave job processes running: their own process groups never hear the terminal
        killed = processes.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        done = [rows[index] for index in sorted(rows)]
        raise ProveStopped(done, len(scenarios), killed) from exc
    pool.shutdown()
    return [rows[index] for index in sorted(rows)]


def plan(settings: ProveSettings, processes: JobProcesses | None = None) -> list[Scenario]:
    """The scenarios ``prove(settings)`` runs, in its order, each checked as far as it can be
    without starting anything: every crash point is one, every guarantee is one, and the job
    loads under each guarantee asked (a strategy it cannot take is refused here, not when
    its scenario's turn comes), and a Kafka sink is one prove can count.

    Raises:
        ConfigError: the first scenario the settings cannot make.
    """
    base = load_spec(settings, [])
    if settings.storage_root and is_uri(settings.storage_root):
        local_only = sorted(set(settings.crash_points) & {"deleted_commit", "second_instance"})
        if local_only:
            raise ConfigError(
                "CONFIG_BAD_OVERRIDE",
                override=f"--crash-points {','.join(local_only)}",
                problem="these checkpoint faults edit and watch a local checkpoint folder; "
                "with --storage-root on remote storage use the crash points and random",
            )
    guarantees = settings.guarantees or (_label(base),)
    points = _points(settings)
    check_points(points)  # a typo is refused before any scenario starts
    check_kafka_sinks(base, str(settings.job_file))  # a topic it could not count
    _check_guarantees(settings, guarantees)
    processes = processes or JobProcesses()
    scenarios = [Scenario(settings, processes, g, p) for g in guarantees for p in points]
    for first in scenarios[:: len(points)]:  # one per guarantee: the job under it loads
        load_spec(settings, first.overrides)
    return scenarios


def count_scenarios(settings: ProveSettings) -> int:
    """How many scenarios ``prove(settings)`` runs: guarantees x crash points."""
    return max(1, len(settings.guarantees)) * len(_points(settings))


def _points(settings: ProveSettings) -> list[str]:
    return [*settings.crash_points, *(["random"] if settings.random_kills else [])]


def _label(spec: JobSpec) -> str:
    if spec.guarantee is Guarantee.EXACTLY_ONCE and spec.strategy is not None:
        return f"exactly-once:{spec.strategy.value}"
    return spec.guarantee.value


def _check_guarantees(settings: ProveSettings, labels: Sequence[str]) -> None:
    """Raise CONFIG_UNSUPPORTED naming the first label that is no guarantee (a strategy
    the job cannot take is refused when its scenario loads it)."""
    known = {g.value for g in Guarantee}
    for label in labels:
        if label.partition(":")[0] not in known:
            raise ConfigError(
                "CONFIG_UNSUPPORTED",
                file=str(settings.job_file),
                problem=f"onceflow prove --guarantees {label}: not a guarantee; one of "
                f"{', '.join(sorted(known))} (exactly-once:<strategy> picks a strategy)",
            )

"""``onceflow prove``: checkpoint faults, a broken writer the harness must catch, a
PostgreSQL job, a ``--quick`` run interrupted by SIGINT after its first progress line
(its job processes stopped, a partial report left), a run whose job process fails, and
where its outputs go by default. The reduced matrix in real processes runs in the
guarantees notebook too (tests/test_notebooks.py), its report's assertions with it."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from onceflow.cli import EXIT_FAILED, EXIT_INVALID, EXIT_OK, main, parser
from onceflow.prove.cdc_workload import customer_changes, delivered
from onceflow.prove.workload import payments
from onceflow.testing.services import LocalPostgres
from tests.conftest import PG_PASSWORD, ROOT

JOB = str(ROOT / "jobs" / "payments_exactly_once_transactional.yaml")
ONCEFLOW = str(Path(sys.executable).with_name("onceflow"))
# two batches, the crash in the first: the least work that still shows every crash point
# (after_commit of batch 0 fires as batch 1 begins)
SMALL = ["--records", "60", "--batches", "2", "--crash-batch", "0", "--parallel", "2"]
PROGRESS = re.compile(
    r"^\[(\d+)/(\d+)\] exactly-once:transactional (\w+)@0: held \(lost 0, duplicated 0, "
    r"balance drift 0\.00\) \d+s( — about \d+ (s|min) left)?$"
)


def prove(tmp_path: Path, *args: str, job: str = JOB) -> tuple[int, list[dict[str, object]], str]:
    report = tmp_path / "report.json"
    markdown = tmp_path / "report.md"
    code = main(
        [
            "prove",
            job,
            "--env",
            "test",
            *SMALL,
            "--work-dir",
            str(tmp_path / "work"),
            "--json",
            str(report),
            "--markdown",
            str(markdown),
            *args,
        ]
    )
    return code, json.loads(report.read_text()), markdown.read_text()


@pytest.mark.chaos
@pytest.mark.slow
def test_checkpoint_faults(tmp_path: Path) -> None:
    # fresh_checkpoint is caught in process (test_guarantee_mechanics.py); these two need
    # a real second process and a real restart
    code, rows, _ = prove(tmp_path, "--crash-points", "deleted_commit,second_instance")
    assert code == EXIT_OK, rows
    assert [row["crash_point"] for row in rows] == ["deleted_commit", "second_instance"]
    assert all(row["promise_held"] and row["lost"] == 0 for row in rows)
    # the CLI plots the report next to its JSON
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.chaos
@pytest.mark.slow
def test_the_harness_catches_an_unguarded_exactly_once_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = str(ROOT / "tests" / "broken_writer")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([broken, os.environ.get("PYTHONPATH", "")]))
    code, rows, _ = prove(tmp_path, "--crash-points", "after_write")
    assert code == EXIT_FAILED
    (row,) = rows
    assert row["guarantee"] == "exactly-once"
    assert row["promise_held"] is False
    assert row["duplicated"] == 30  # batch 0 written twice


@pytest.mark.chaos
@pytest.mark.slow
def test_prove_a_dedup_job_against_a_retrying_producer(tmp_path: Path) -> None:
    """Every 3rd payment sent twice (one batch later), the job killed mid-write and after
    the write: each id once. The same producer against a job without dedup: the copies
    are counted as duplicated, and prove says the promise broke."""
    dedup, plain = tmp_path / "dedup", tmp_path / "plain"
    dedup.mkdir()
    plain.mkdir()
    retries = ["--duplicate-every", "3"]
    job = str(ROOT / "jobs" / "payments_dedup.yaml")
    code, rows, _ = prove(dedup, "--crash-points", "mid_write,after_write", *retries, job=job)
    assert code == EXIT_OK, rows
    assert [(r["lost"], r["duplicated"], r["promise_held"]) for r in rows] == [(0, 0, True)] * 2
    code, rows, _ = prove(plain, "--crash-points", "after_write", *retries)
    assert code == EXIT_FAILED, rows
    assert [(r["lost"], r["duplicated"]) for r in rows] == [(0, 60 // 3)]


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.postgres
def test_prove_a_postgres_job(tmp_path: Path, postgres: LocalPostgres) -> None:
    """Killed while staging and after both tables committed: still every payment once.
    The role's password (a canary) is in no job process's output nor Spark's event log."""
    job = str(ROOT / "jobs" / "payments_postgres.yaml")
    events = tmp_path / "events"
    events.mkdir()
    code, rows, _ = prove(
        tmp_path,
        "--crash-points", "mid_write,after_write",
        "--set", 'spark.conf["spark.eventLog.enabled"]=true',
        "--set", f'spark.conf["spark.eventLog.dir"]={events}',
        "--set", 'spark.conf["spark.eventLog.compress"]=false',  # so it can be searched
        job=job,
    )  # fmt: skip
    assert code == EXIT_OK, rows
    event_logs = [path for path in events.rglob("*") if path.is_file()]
    logs = [*(tmp_path / "work").rglob("run-*.log"), *event_logs]
    assert len(logs) >= 6, logs  # two runs per scenario, and their event logs
    assert not [log for log in logs if PG_PASSWORD.encode() in log.read_bytes()]
    for row in rows:
        assert (row["kills"], row["lost"], row["duplicated"], row["balance_drift"]) == (
            1,
            0,
            0,
            0.0,
        ), row
        assert row["delivered"] == 60


def _processes_naming(text: str) -> dict[int, int]:
    """pid -> process group of every live process (no zombie) whose command line holds
    ``text``."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except (OSError, UnicodeDecodeError):
            continue  # not a process, or one that just ended
        state, _, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if text in cmdline and state != "Z":
            found[int(entry.name)] = int(group)
    return found


def _in_groups(groups: set[int]) -> list[int]:
    """The live processes (no zombie) of ``groups``: a job's JVM is in its Python's group."""
    alive = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, _, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) in groups and state != "Z":
            alive.append(int(entry.name))
    return alive


def _first_progress_line(process: subprocess.Popen[str], timeout: float) -> list[str]:
    """What ``process`` printed up to its first progress line."""
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not (lines and lines[-1].startswith("[1/")):
            assert time.monotonic() < deadline, lines
            if selector.select(timeout=5):
                line = process.stdout.readline()
                assert line, ("prove ended before any scenario finished", lines)
                lines.append(line.rstrip("\n"))
    return lines


@pytest.mark.chaos
@pytest.mark.slow
def test_an_interrupted_prove_stops_its_jobs_and_leaves_a_partial_report(
    tmp_path: Path,
) -> None:
    work, report, markdown = tmp_path / "work", tmp_path / "report.json", tmp_path / "report.md"
    process = subprocess.Popen(
        [ONCEFLOW, "prove", JOB, "--env", "test", "--quick", "--parallel", "1",
         "--work-dir", str(work), "--json", str(report), "--markdown", str(markdown)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a failed test can still kill what it left
    )  # fmt: skip
    groups: set[int] = set()
    try:
        shown = _first_progress_line(process, timeout=900)
        # --quick's first scenario of two, as a progress line with the time left
        first = PROGRESS.match(shown[-1])
        assert first and (first[1], first[2], first[3]) == ("1", "2", "before_write"), shown
        assert first[4], shown
        # the second scenario's job process is running by now, or soon
        deadline = time.monotonic() + 120
        while not groups and time.monotonic() < deadline:
            children = _processes_naming(str(work))
            children.pop(process.pid, None)
            groups = set(children.values()) - {process.pid}
            time.sleep(0.2)
        assert groups, "no job process of the second scenario was seen running"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=180)
    finally:
        for group in {process.pid, *groups}:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in out + err, err
    assert err.splitlines()[-1].startswith(
        "onceflow prove: interrupted by SIGINT after 1 of 2 scenario(s) finished; "
        "1 running job process(es) killed; partial report: "
    ), err
    assert not [line for line in out.splitlines() if line.startswith("[2/")], [*shown, out]
    partial = json.loads(report.read_text())
    assert (partial["partial"], partial["finished"], partial["scenarios"]) == (True, 1, 2)
    (row,) = partial["rows"]
    assert (row["crash_point"], row["promise_held"]) == ("before_write", True)
    assert "PARTIAL" in markdown.read_text()
    # no job process outlives it: not the Python ones, nor the JVMs in their groups
    deadline = time.monotonic() + 30
    while (_processes_naming(str(work)) or _in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_naming(str(work)) == {}
    assert _in_groups(groups) == []


@pytest.mark.chaos
@pytest.mark.slow
def test_sigterm_while_the_first_jobs_run_kills_them_and_exits_143(tmp_path: Path) -> None:
    """A scheduler's SIGTERM before any scenario finished: both scenarios' job processes
    die with the run, and the report is partial with no row."""
    work, report = tmp_path / "work", tmp_path / "report.json"
    process = subprocess.Popen(
        [ONCEFLOW, "prove", JOB, "--env", "test", *SMALL, "--crash-points",
         "before_write,after_write", "--work-dir", str(work), "--json", str(report)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    groups: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while len(groups) < 2 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            children = _processes_naming(f"{work}/")
            children.pop(process.pid, None)
            groups = set(children.values())
            time.sleep(0.2)
        assert len(groups) == 2, "the two scenarios' job processes were not seen running"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=180)
    finally:
        for group in {process.pid, *groups}:
            try:
                os.killpg(group, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
    assert process.returncode == 143, err
    assert "Traceback" not in err, err
    assert "interrupted by SIGTERM after 0 of 2 scenario(s) finished" in err.splitlines()[-1]
    assert json.loads(report.read_text())["rows"] == []
    assert _processes_naming(str(work)) == {} and _in_groups(groups) == []


def test_a_failed_job_process_stops_the_run_and_leaves_a_partial_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every job process dies at start-up (a ``sitecustomize`` that exits 3): the first
    scenario fails, the run stops there and says so, and the report is marked partial."""
    failing = tmp_path / "failing"
    failing.mkdir()
    (failing / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(failing), os.environ.get("PYTHONPATH", "")])
    )
    report = tmp_path / "report.json"
    code = main(
        ["prove", JOB, "--env", "test", *SMALL, "--parallel", "1",
         "--crash-points", "before_write,after_write",
         "--work-dir", str(tmp_path / "work"), "--json", str(report)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == EXIT_FAILED, err
    assert "exit status 3, expected -9" in err
    assert "a scenario's run failed after 0 of 2 scenario(s) finished" in err
    partial = json.loads(report.read_text())
    assert (partial["partial"], partial["rows"]) == (True, [])


def test_prove_outputs_default_under_state() -> None:
    """Work dir state/prove/<job>, a bare --json / --markdown under state/prove-report/,
    and --quick's small matrix unless an option says otherwise."""
    from onceflow.cli.proving import _report_path, _settings

    job = "jobs/payments_at_least_once.yaml"
    args = parser().parse_args(["prove", job, "--quick", "--records", "100", "--json"])
    settings = _settings(args)
    assert settings.work_dir == Path("state/prove/payments_at_least_once")
    assert _report_path(args.json, args.job, ".json") == Path(
        "state/prove-report/payments_at_least_once.json"
    )
    assert _report_path(args.markdown, args.job, ".md") is None
    quick = (settings.crash_points, settings.batches, settings.crash_batch, settings.parallel)
    assert quick == (("before_write", "after_write"), 2, 0, 2)
    assert settings.records == 100  # given explicitly: it wins over the preset
    whole = _settings(parser().parse_args(["prove", job]))
    assert (len(whole.crash_points), whole.records, whole.parallel) == (4, 400, 1)


def test_plan_checks_every_scenario_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--plan lists the matrix (guarantees x crash points, random last) and writes nothing;
    a guarantee that is none, or a strategy the job cannot take, is refused up front, exit 2."""
    work = tmp_path / "work"
    args = ["prove", str(ROOT / JOB), "--work-dir", str(work), "--json", str(tmp_path / "r.json")]
    matrix = ["--guarantees", "at-least-once,exactly-once:transactional", "--random-kills", "1"]
    assert main([*args, *matrix, "--crash-points", "before_write,deleted_commit", "--plan"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "6 scenario(s)" in out[0] and "nothing started" in out[0]
    assert [line.strip() for line in out[1:]] == [
        f"{guarantee} {point}"
        for guarantee in ("at-least-once", "exactly-once:transactional")
        for point in ("before_write@1", "deleted_commit", "random (up to 1 kills)")
    ]
    assert not work.exists() and not (tmp_path / "r.json").exists()
    assert main([*args, "--guarantees", "exactly_once", "--plan"]) == EXIT_INVALID
    assert "exactly_once" in capsys.readouterr().err
    # its sinks have no merge keys: refused before a scenario starts, not at its turn
    assert main([*args, "--guarantees", "at-least-once,exactly-once:merge", "--plan"]) == 2
    assert "CONFIG_GUARANTEE_REFUSED" in capsys.readouterr().err


@pytest.mark.chaos
@pytest.mark.slow
def test_prove_a_window_job_against_a_recomputation(tmp_path: Path) -> None:
    """The windows job killed mid-write and after the write: every window of the
    payments, recomputed in plain Python (onceflow.prove.windows), once and exact. The
    same job appending its closed windows under at-least-once, killed after the write:
    the windows of the replayed batch are there twice, and prove says the promise broke
    (at-least-once allows it: held)."""
    job = str(ROOT / "jobs" / "payments_windows.yaml")
    more = ["--records", "240", "--batches", "3", "--crash-batch", "1"]
    code, rows, _ = prove(tmp_path / "update", "--crash-points", "mid_write,after_write",
                          *more, job=job)  # fmt: skip
    assert code == EXIT_OK, rows
    assert [(r["lost"], r["duplicated"], r["balance_drift"]) for r in rows] == [(0, 0, 0)] * 2
    append = ["--set", "aggregate.output=append", "--set", "sinks.0.merge=null",
              "--set", "strategy=transactional", "--guarantees", "at-least-once"]  # fmt: skip
    code, rows, _ = prove(tmp_path / "append", "--crash-points", "after_write", *more,
                          "--crash-batch", "2", *append, job=job)  # fmt: skip
    (row,) = rows
    # batch 2 closed the minutes the first two batches' latest payment less the 1-minute
    # delay has passed: one window per account paying in them, written twice
    sent = list(payments(240, seed=7))
    watermark = max(p.event_time for p in sent[:160]) - timedelta(minutes=1)
    closed = {
        (p.event_time.replace(second=0, microsecond=0), p.account)
        for p in sent
        if p.event_time.replace(second=0, microsecond=0) + timedelta(minutes=1) <= watermark
    }
    assert (row["lost"], row["duplicated"], row["promise_held"]) == (0, len(closed), True), row


@pytest.mark.chaos
@pytest.mark.slow
def test_prove_a_cdc_job_against_the_changes(tmp_path: Path) -> None:
    """jobs/customers_cdc.yaml fed the customers' change feed (out of order, some changes
    twice), killed between its SCD 1 and SCD 2 tables (mid_write) and after both: the SCD 1
    table holds each customer's final state, the SCD 2 table every version with its
    interval, as tests/test_cdc.py's plain-Python reference has them from the generated
    changes: nothing lost, duplicated or wrong. At-most-once, killed mid-write, skips the
    claimed batch, so the history never gets batch 0: versions lost and intervals wrong,
    which it allows. (At-least-once has no failure mode here: an unguarded replay of a CDC
    batch changes nothing, tests/test_cdc.py.)"""
    from tests.test_cdc import SCD1, SCD2, as_event, history, latest_rows

    job = str(ROOT / "jobs" / "customers_cdc.yaml")
    sent = delivered(customer_changes(60, seed=7), 2, seed=7)
    batches = [[as_event(c) for c in batch] for batch in sent]
    scd1, scd2 = latest_rows(batches, SCD1), history(batches, SCD2)
    code, rows, _ = prove(tmp_path / "exact", "--crash-points", "mid_write,after_write", job=job)
    assert code == EXIT_OK, rows
    every = len(scd1) + len(scd2)
    found = [(r["expected"], r["delivered"], r["lost"], r["duplicated"], r["wrong"]) for r in rows]
    assert found == [(every, every, 0, 0, 0)] * 2, rows

    weaker = ["--guarantees", "at-most-once", "--crash-points", "mid_write"]
    code, (row,), _ = prove(tmp_path / "weaker", *weaker, job=job)
    assert code == EXIT_OK, row  # it held its own promise
    # the history got batch 1 alone: versions it never got are lost; of those it has, the
    # ones whose next change came in batch 0 stay open, or close at a later one: wrong
    partial = {(r[0], r[-2]): r for r in history(batches[1:], SCD2)}
    full = {(r[0], r[-2]): r for r in scd2}
    lost = len(full.keys() - partial.keys())
    wrong = sum(full.get(identity) != version for identity, version in partial.items())
    assert lost > 0 and wrong > 0, (lost, wrong)
    assert (row["lost"], row["duplicated"], row["wrong"]) == (lost, 0, wrong), row


@pytest.mark.chaos
@pytest.mark.slow
def test_prove_a_stream_join_job_against_the_pairs(tmp_path: Path) -> None:
    """jobs/payments_settled.yaml fed the payments and, to its second source, their
    settlements (some never, some too late, some a batch after their payment), killed
    mid-write and after the write: the table holds exactly the payments with a settlement
    within the hour, once each, as counted here from the lines prove wrote."""
    from tests.test_stream_join import settlement

    job = str(ROOT / "jobs" / "payments_settled.yaml")
    code, rows, _ = prove(tmp_path, "--crash-points", "mid_write,after_write",
                          "--guarantees", "exactly-once:merge", job=job)  # fmt: skip
    assert code == EXIT_OK, rows
    assert [(r["lost"], r["duplicated"], r["wrong"]) for r in rows] == [(0, 0, 0)] * 2, rows
    times = {p.id: p.event_time for p in payments(60, seed=7)}
    for scenario in sorted((tmp_path / "work").glob("*/join-input")):
        parsed = [settlement(line) for file in sorted(scenario.glob("*.json"))
                  for line in file.read_text().splitlines()]  # fmt: skip
        settled = {
            key for key, at, _ in filter(None, parsed)
            if key in times and times[key] <= at <= times[key] + timedelta(hours=1)
        }  # fmt: skip
        assert 0 < len(settled) < 60
        assert {r["expected"] for r in rows} == {len(settled)}, rows


@pytest.mark.parametrize(
    "override",
    ["join.how=left", "join.within=settled_at > event_time AND settled_at < event_time + 5"],
)
def test_prove_refuses_a_stream_join_it_cannot_recompute(override: str) -> None:
    """A left join's unmatched rows, or a range in another form, would make what the table
    must hold a guess: refused before anything runs."""
    from onceflow.config import load_job
    from onceflow.errors import ConfigError
    from onceflow.prove.joins import stream_join_range

    job = ROOT / "jobs" / "payments_settled.yaml"
    spec = load_job(job, env="test", conf_dir=ROOT / "conf", overrides=[override]).spec
    with pytest.raises(ConfigError, match=r"CONFIG_UNSUPPORTED.*inner stream join"):
        stream_join_range(spec, str(job))
    plain = load_job(job, env="test", conf_dir=ROOT / "conf").spec
    assert stream_join_range(plain, str(job)) == ("settled_at", timedelta(hours=1))

"""``onceflow validate`` / ``run`` exit codes and messages, in process and as a real command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from onceflow.cli import EXIT_INVALID, EXIT_OK, main

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "resources" / "config" / "bad"
ONCEFLOW = Path(sys.executable).with_name("onceflow")


def test_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "jobs" / "payments.yaml"), "--env", "local"]) == EXIT_OK
    assert "ok: job 'payments' is valid" in capsys.readouterr().out


@pytest.mark.parametrize("bad", sorted(p.name for p in BAD.glob("*.yaml")))
def test_validate_rejects_every_bad_fixture(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(BAD / bad), "--conf-dir", str(ROOT / "conf")])
    assert code == EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith("error: [CONFIG_")
    assert bad in err or "CONFIG_ENV" in err


CANARY = "canary-9a8b7c"
# keys that name a secret, each given from the environment; printed, each shows ***
SECRET_SETTINGS = {
    'spark.conf["spark.hadoop.fs.s3a.secret.key"]': "${env:ONCEFLOW_CLI_CANARY}",
    'spark.conf["spark.hadoop.fs.azure.account.key.lake.dfs.core.windows.net"]': (
        "${env:ONCEFLOW_CLI_CANARY}"
    ),
    'spark.conf["spark.kubernetes.authenticate.submission.oauthToken"]': (
        "${env:ONCEFLOW_CLI_CANARY}"
    ),
    'source.options["kafka.sasl.jaas.config"]': (
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="alice" '
        'password="${env:ONCEFLOW_CLI_CANARY}";'
    ),
}


@pytest.mark.parametrize("defaults", [[], ["--defaults"]], ids=["as-written", "defaults"])
@pytest.mark.parametrize("key", sorted(SECRET_SETTINGS))
def test_validate_print_redacts_secrets(
    key: str,
    defaults: list[str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ONCEFLOW_CLI_CANARY", CANARY)
    job = str(ROOT / "jobs" / "payments.yaml")
    setting = f"{key}={SECRET_SETTINGS[key]}"
    code = main(["validate", job, "--set", setting, "--print", *defaults])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert CANARY not in out
    shown_key = key.split('["')[1].rstrip('"]')
    assert f"{shown_key}: '***'" in out


@pytest.mark.parametrize("key", sorted(SECRET_SETTINGS))
def test_a_literal_secret_on_the_command_line_is_refused_unseen(
    key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    literal = SECRET_SETTINGS[key].replace("${env:ONCEFLOW_CLI_CANARY}", CANARY)
    job = str(ROOT / "jobs" / "payments.yaml")
    code = main(["validate", job, "--set", f"{key}={literal}", "--print"])
    shown = capsys.readouterr()
    assert code == EXIT_INVALID
    assert "CONFIG_SECRET_LITERAL" in shown.err
    assert CANARY not in shown.out + shown.err


def test_console_script_exit_codes(tmp_path: Path) -> None:
    ok = subprocess.run(
        [str(ONCEFLOW), "validate", "jobs/payments.yaml"], cwd=ROOT, capture_output=True, text=True
    )
    assert ok.returncode == EXIT_OK, ok.stderr
    bad = subprocess.run(
        [str(ONCEFLOW), "validate", str(BAD / "unknown_key.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == EXIT_INVALID
    assert "did you mean 'path'?" in bad.stderr


def test_run_with_bad_config_stops_before_spark(tmp_path: Path) -> None:
    """A config error exits 2 without starting a JVM: no Spark banner, nothing written."""
    result = subprocess.run(
        [str(ONCEFLOW), "run", str(BAD / "missing_key.yaml"), "--conf-dir", str(ROOT / "conf")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_INVALID
    assert "CONFIG_MISSING_KEY" in result.stderr
    assert "SparkContext" not in result.stderr and "log4j" not in result.stderr
    assert list(tmp_path.iterdir()) == []


PG_VARIABLES = ("HOST", "PORT", "DATABASE", "USER", "PASSWORD")


@pytest.fixture
def job_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the example jobs read from the environment; each value a canary but the port."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP", f"{CANARY}:9092")
    for name in PG_VARIABLES:
        monkeypatch.setenv(f"ONCEFLOW_PG_{name}", "5432" if name == "PORT" else CANARY)


def printed_yaml(out: str) -> dict[str, object]:
    config, _, rest = out.rpartition("ok: job ")
    assert rest, out
    loaded: dict[str, object] = yaml.safe_load(config)
    return loaded


@pytest.mark.usefixtures("job_variables")
def test_print_defaults_fills_every_default_and_keeps_secrets_hidden(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = ROOT / "jobs" / "payments_postgres.yaml"
    code = main(["validate", str(job), "--print", "--defaults"])
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert CANARY not in out
    shown = printed_yaml(out)
    written = yaml.safe_load(job.read_text())
    # keys the file does not state, with their defaults
    assert {"retries", "on_foreign_sink", "locks", "trigger", "quality"} - set(written)
    assert shown["retries"] == 3 and shown["on_foreign_sink"] == "error"
    assert shown["locks"] == {"heartbeat_seconds": 10.0, "stale_after_seconds": 60.0}
    assert shown["trigger"] == {"available_now": True, "once": False, "processing_time": None}
    assert shown["connections"] == {  # type: ignore[comparison-overlap]
        "warehouse": {"kind": "postgres", "host": "***", "port": "***", "database": "***",
                      "user": "***", "password": "***", "connect_timeout": 10, "options": {}}
    }  # fmt: skip
    sinks = shown["sinks"]
    assert isinstance(sinks, list)
    assert [s["ledger_table"] for s in sinks] == ["onceflow_batches"] * 2


def test_print_defaults_gives_each_sink_the_mode_it_writes_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    job = ROOT / "jobs" / "payments_exactly_once_merge.yaml"
    assert main(["validate", str(job), "--defaults"]) == EXIT_OK
    shown = printed_yaml(capsys.readouterr().out)
    written = yaml.safe_load(job.read_text())
    assert all("mode" not in sink for sink in written["sinks"])  # the strategy decides
    assert written["strategy"] == "merge"
    sinks = shown["sinks"]
    assert isinstance(sinks, list)
    assert [sink["mode"] for sink in sinks] == ["merge"] * len(written["sinks"])


def job_files() -> list[Path]:
    return sorted((ROOT / "jobs").glob("*.yaml"))


@pytest.mark.usefixtures("job_variables")
def test_validate_takes_folders_and_several_files(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(ROOT / "jobs"), str(BAD / "unknown_key.yaml"),
                 str(BAD / "enum_typo.yaml")])  # fmt: skip
    shown = capsys.readouterr()
    assert code == EXIT_INVALID
    names = [yaml.safe_load(p.read_text())["name"] for p in job_files()]
    assert shown.out.splitlines() == [
        f"ok: job '{name}' is valid (layers: {ROOT / 'conf' / 'base.yaml'}, {path})"
        for name, path in zip(names, job_files(), strict=True)
    ]
    errors = shown.err.splitlines()
    assert any("unknown_key.yaml:10" in e for e in errors)
    assert any("enum_typo.yaml:12" in e for e in errors)


@pytest.mark.usefixtures("job_variables")
def test_validate_a_folder_of_valid_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(ROOT / "jobs")]) == EXIT_OK
    assert len(capsys.readouterr().out.splitlines()) == len(job_files())


def test_validate_an_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path)]) == EXIT_INVALID
    assert (
        capsys.readouterr().err
        == f"error: [CONFIG_NO_JOBS] {tmp_path}: no job files (*.yaml) in this folder\n"
    )


def expected_listing(path: Path) -> list[str]:
    """The cells ``onceflow list`` shows for a job, read from its YAML here."""
    job = yaml.safe_load(path.read_text())
    guarantee = job.get("guarantee", "at-least-once")
    if "strategy" in job:
        guarantee += f"/{job['strategy']}"
    sinks = ", ".join(f"{sink['name']}:{sink['kind']}" for sink in job["sinks"])
    return [str(path), job["name"], job["source"]["kind"], guarantee, sinks]


@pytest.mark.usefixtures("job_variables")
def test_list_shows_one_line_per_job(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", str(ROOT / "jobs")]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [re.split(r"\s{2,}", line) for line in lines] == [
        expected_listing(p) for p in job_files()
    ]


def test_list_names_the_error_of_an_invalid_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good, bad = ROOT / "jobs" / "payments.yaml", BAD / "unknown_key.yaml"
    for source in (good, bad):
        (tmp_path / source.name).write_text(source.read_text())
    code = main(["list", str(tmp_path), "--conf-dir", str(ROOT / "conf")])
    lines = [re.split(r"\s{2,}", line) for line in capsys.readouterr().out.splitlines()]
    assert code == EXIT_INVALID
    assert lines == [
        [*expected_listing(tmp_path / good.name)],
        [str(tmp_path / bad.name), "invalid: CONFIG_UNKNOWN_KEY (+1 more)"],
    ]


def test_list_shows_a_job_needing_an_unset_variable_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fresh shell has no KAFKA_BOOTSTRAP: the catalog names the variable, exit 0."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    for name in ("payments.yaml", "payments_kafka.yaml"):
        (tmp_path / name).write_text((ROOT / "jobs" / name).read_text())
    code = main(["list", str(tmp_path), "--conf-dir", str(ROOT / "conf")])
    lines = [re.split(r"\s{2,}", line) for line in capsys.readouterr().out.splitlines()]
    assert code == EXIT_OK
    assert lines[1] == [
        str(tmp_path / "payments_kafka.yaml"),
        "needs ${env:KAFKA_BOOTSTRAP}, unset here (set it to load this job)",
    ]


def test_list_defaults_to_the_jobs_folder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    main(["list"])
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert listed == [str(p.relative_to(ROOT)) for p in job_files()]

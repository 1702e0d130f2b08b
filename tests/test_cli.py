"""``onceflow validate`` / ``run`` exit codes and messages, in process and as a real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("key", sorted(SECRET_SETTINGS))
def test_validate_print_redacts_secrets(
    key: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONCEFLOW_CLI_CANARY", CANARY)
    job = str(ROOT / "jobs" / "payments.yaml")
    code = main(["validate", job, "--set", f"{key}={SECRET_SETTINGS[key]}", "--print"])
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

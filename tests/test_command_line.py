"""The command line about itself: ``--version``, shell completion, and what a bad command
line gets (one line and exit 2, never a traceback). None of it starts or imports Spark."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import onceflow
from onceflow.cli import EXIT_INVALID, common, main

ROOT = Path(__file__).resolve().parent.parent
# the processes started here run the onceflow this process imported, wherever that is
PATHS = [str(Path(onceflow.__file__).parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(PATHS)}


def onceflow(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onceflow", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )


def test_version_names_onceflow_pyspark_and_delta_without_importing_them() -> None:
    script = (
        "import sys\n"
        "from onceflow.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as stop:\n"
        "    print(stop.code)\n"
        "print(sorted(m for m in ('pyspark', 'delta', 'py4j') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, check=False
    )
    shown, code, imported = result.stdout.splitlines()
    assert shown.startswith(
        f"onceflow {version('onceflow')} (pyspark {version('pyspark')}, "
        f"delta-spark {version('delta-spark')}, Python "
    ), shown
    assert code == "0" and imported == "[]"


def completion(shell: str) -> str:
    result = onceflow("completion", shell)
    assert result.returncode == 0, result.stderr
    return result.stdout


def complete_in_bash(words: str, tmp_path: Path) -> list[str]:
    """What bash offers after ``words`` (the last one being completed), with the script
    ``onceflow completion bash`` printed loaded as the README says."""
    script = tmp_path / "onceflow.bash"
    script.write_text(completion("bash"))
    typed = words.split(" ")
    probe = (
        f'eval "$(cat {script})"\n'
        f"COMP_WORDS=({words})\n"
        f"COMP_CWORD={len(typed) - 1}\n"
        f'COMP_LINE="{words}"\n'
        f"COMP_POINT={len(words)}\n"
        "_shtab_onceflow onceflow\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    result = subprocess.run(
        ["bash", "-c", probe], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_offers_the_commands(tmp_path: Path) -> None:
    assert complete_in_bash("onceflow va", tmp_path) == ["validate"]
    offered = complete_in_bash("onceflow ", tmp_path)
    assert {"validate", "list", "schema", "reference", "run", "completion"} <= set(offered)


def test_bash_completion_offers_options_and_job_files(tmp_path: Path) -> None:
    assert "--defaults" in complete_in_bash("onceflow validate --de", tmp_path)
    assert complete_in_bash("onceflow validate jobs/payments_exactly_once_m", tmp_path) == [
        "jobs/payments_exactly_once_merge.yaml"
    ]


def test_zsh_completion_is_a_compdef_script() -> None:
    script = completion("zsh")
    assert script.startswith("#compdef onceflow")
    described = re.findall(r"^\s+([a-z-]+):'", script, flags=re.M)  # the commands' list
    assert {"validate", "list", "schema", "reference", "completion"} <= set(described)
    assert "--version[" in script


@pytest.mark.parametrize(
    "args",
    [
        ["run", "jobs"],  # a folder where one job file belongs
        ["status", "jobs/no-such-job.yaml"],
        ["validate", "jobs/no-such-job.yaml"],
        ["completion", "fish"],
        ["validate"],
        ["list", "--no-such-option"],
        ["schema", "--out", "/"],  # a folder where a file belongs
        ["sample", "--files", "0"],
        ["sample", "--records", "-5"],
        ["produce", "--bootstrap", "127.0.0.1:1", "--topic", "t", "--partitions", "0"],
        ["no-such-command"],
    ],
    ids=lambda args: " ".join(args),
)
def test_a_bad_command_line_gets_one_line_and_exit_2(args: list[str]) -> None:
    result = onceflow(*args)
    assert result.returncode == EXIT_INVALID, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")


def test_an_argparse_error_names_the_command_and_its_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["completion", "fish"])
    assert stopped.value.code == EXIT_INVALID
    err = capsys.readouterr().err
    assert err.startswith("error: onceflow completion: argument shell: invalid choice: 'fish'")
    assert err.endswith("(see onceflow completion --help)\n")


@pytest.mark.parametrize("text", ["0", "-5", "x", "1.5", ""])
def test_positive_int_refuses_what_is_no_count(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a whole number"):
        common.positive_int(text)


def test_positive_int_takes_a_count() -> None:
    assert common.positive_int("1") == 1 and common.positive_int("10000") == 10_000


def test_the_commands_that_only_read_jobs_load_no_spark(tmp_path: Path) -> None:
    script = (
        "import sys, contextlib, io\n"
        "from onceflow.cli import main\n"
        f"for argv in {_SPARKLESS!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "print(sorted(m for m in ('pyspark', 'delta', 'py4j') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=ENV, cwd=ROOT,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


_SPARKLESS = [
    ["validate", "jobs/payments.yaml", "--print", "--defaults"],
    ["list", "jobs"],
    ["schema"],
    ["reference"],
    ["completion", "bash"],
]

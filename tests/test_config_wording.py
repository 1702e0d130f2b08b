"""The words of config errors: plain, not pydantic's; the place that wrote the value, a
file and line or the ``--set`` option; the nearest valid word for a near miss; a secret on
the command line called by its place. Fixtures are files under tests/resources/config/bad.
"""

from __future__ import annotations

import pytest

from onceflow.config import load_job
from onceflow.errors import ConfigError
from tests.test_config import BAD, CONF, ROOT_JOBS, SECRET, VALID, load_bad

# the words of pydantic that mean nothing to someone who wrote a YAML file
PYDANTIC_JARGON = ("input should", "instance of", "valid tuple", "valid dictionary", "input tag")


def all_messages(error: ConfigError) -> str:
    return "\n".join(str(e) for e in (error, *error.others))


class TestPlainWords:
    """Config errors say what a job file should hold in its own words, and name the place
    that wrote the value: a file and line, or the ``--set`` option."""

    @pytest.mark.parametrize("name", sorted(p.name for p in BAD.glob("*.yaml")))
    def test_no_fixture_error_speaks_pydantic(self, name: str) -> None:
        shown = all_messages(load_bad(name)).lower()
        assert not [word for word in PYDANTIC_JARGON if word in shown], shown

    @pytest.mark.parametrize(
        ("name", "key", "expected"),
        [
            ("select_not_a_list.yaml", "'transform.select'", "must be a list"),
            (
                "trigger_not_a_mapping.yaml",
                "'trigger'",
                "must be a mapping with keys available_now, once, processing_time",
            ),
        ],
    )
    def test_a_wrong_shape_is_named_plainly(self, name: str, key: str, expected: str) -> None:
        error = load_bad(name)
        assert error.error_class == "CONFIG_INVALID_VALUE"
        assert key in str(error) and expected in str(error)

    def test_an_unknown_value_of_a_closed_set_suggests_the_nearest(self) -> None:
        error = load_bad("enum_typo.yaml")
        message = str(error)
        assert "enum_typo.yaml:12" in message
        assert "must be one of 'at-most-once', 'at-least-once', 'exactly-once'" in message
        assert message.endswith("did you mean 'exactly-once'?")

    def test_an_unknown_kind_suggests_the_nearest(self) -> None:
        message = str(load_bad("kind_typo.yaml"))
        assert "kind_typo.yaml:9" in message  # the line of its kind
        assert "unknown kind 'detla'" in message and "did you mean 'delta'?" in message

    @pytest.mark.parametrize(
        ("override", "place", "expected"),
        [
            ("retries=11", "--set retries=...", "must be at most 10"),
            ("guarantee=exactly_once", "--set guarantee=...", "did you mean 'exactly-once'?"),
            ("trigger=now", "--set trigger=...", "must be a mapping with keys"),
            ("sinks[0].pathh=x", "--set sinks[0].pathh=...", "did you mean 'path'?"),
            # a mapping the option made on its way is the option's too
            ("connections.pg.port=1", "--set connections.pg.port=...", "'connections.pg.host'"),
        ],
    )
    def test_an_error_an_override_caused_names_the_option(
        self, override: str, place: str, expected: str
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=[override])
        message = str(caught.value)
        assert message.split("] ", 1)[1].startswith(f"{place}: "), message
        assert expected in message
        assert ":0:" not in all_messages(caught.value)

    def test_an_error_an_override_contributed_to_names_file_and_option(self) -> None:
        # the job says available_now; --set adds once: the trigger (in the file) is wrong
        job = ROOT_JOBS / "payments.yaml"
        with pytest.raises(ConfigError) as caught:
            load_job(job, environ={}, overrides=["trigger.once=true"])
        # a mapping's place is its first line, the one below its key
        lines = job.read_text().splitlines()
        line = next(n for n, text in enumerate(lines, 1) if text == "trigger:") + 1
        assert f"payments.yaml:{line} (with --set trigger.once=...): 'trigger'" in str(caught.value)

    def test_a_secret_on_the_command_line_is_called_so(self) -> None:
        key = 'spark.conf["spark.hadoop.fs.s3a.secret.key"]'
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=[f"{key}={SECRET}"])
        message = str(caught.value)
        assert caught.value.error_class == "CONFIG_SECRET_LITERAL"
        assert message.split("] ", 1)[1].startswith(f"--set {key}=...: ")
        assert "given on the command line" in message and "written out" not in message
        assert "--set 'KEY=${env:VAR}'" in message
        assert SECRET not in message

    def test_a_secret_in_a_file_is_called_written_out(self) -> None:
        message = str(load_bad("secret_literal_s3a.yaml"))
        assert "written out" in message and "command line" not in message

    def test_a_folder_where_a_job_file_belongs_is_named(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(ROOT_JOBS, environ={})
        assert caught.value.error_class == "CONFIG_NOT_A_FILE"
        assert "is a folder" in str(caught.value) and "payments.yaml" in str(caught.value)

"""Config loading: layering, interpolation, path resolution and every class of error.

Negative fixtures are files under tests/resources/config/bad, so each test names the
file a user would have written.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from onceflow.config import load_job
from onceflow.errors import ConfigError
from onceflow.sources.files import FileSourceSpec

RESOURCES = Path(__file__).parent / "resources" / "config"
CONF = RESOURCES / "conf"
VALID = RESOURCES / "jobs" / "valid.yaml"
BAD = RESOURCES / "bad"
ROOT_JOBS = Path(__file__).resolve().parent.parent / "jobs"
SECRET = "s3cr3t-CANARY-7f1e"  # noqa: S105 - a canary that must never be printed


def load_bad(name: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_job(BAD / name, conf_dir=CONF, environ={}, **kwargs)  # type: ignore[arg-type]
    return caught.value


class TestLayering:
    def test_base_alone(self) -> None:
        spec = load_job(VALID, conf_dir=CONF, environ={}).spec
        assert spec.spark.conf["spark.sql.shuffle.partitions"] == "8"
        assert spec.storage.root == "/data/base"
        assert spec.spark.master is None

    def test_env_profile_wins_over_base_key_by_key(self) -> None:
        spec = load_job(VALID, env="dev", conf_dir=CONF, environ={}).spec
        assert spec.spark.conf["spark.sql.shuffle.partitions"] == "2"
        # keys the profile does not mention survive from base
        assert spec.spark.conf["spark.sql.session.timeZone"] == "UTC"
        assert spec.spark.master == "local[1]"

    def test_set_overrides_win_last_and_are_typed(self) -> None:
        loaded = load_job(
            VALID,
            env="dev",
            conf_dir=CONF,
            environ={},
            overrides=[
                'spark.conf["spark.sql.shuffle.partitions"]=3',
                "sinks[0].path=/elsewhere/events",
                "source.max_files_per_trigger=5",
                "trigger.available_now=false",
                "trigger.once=true",
            ],
        )
        spec = loaded.spec
        assert spec.spark.conf["spark.sql.shuffle.partitions"] == "3"
        assert spec.sinks[0].path == "/elsewhere/events"
        assert isinstance(spec.source, FileSourceSpec)
        assert spec.source.max_files_per_trigger == 5
        assert spec.trigger.once and not spec.trigger.available_now

    def test_relative_paths_join_storage_root(self) -> None:
        spec = load_job(VALID, env="dev", conf_dir=CONF, environ={}).spec
        assert spec.source.path == "/data/dev/in/payments"
        assert spec.sinks[0].path == "/data/dev/tables/events"
        assert spec.checkpoint == "/data/dev/state/valid"

    def test_uri_root_keeps_scheme(self) -> None:
        spec = load_job(
            VALID, conf_dir=CONF, environ={}, overrides=["storage.root=hdfs://127.0.0.1:9000/of"]
        ).spec
        assert spec.checkpoint == "hdfs://127.0.0.1:9000/of/state/valid"

    def test_options_become_strings(self) -> None:
        spec = load_job(VALID, conf_dir=CONF, environ={}).spec
        assert isinstance(spec.source, FileSourceSpec)
        assert spec.source.options == {"header": "true"}

    def test_spec_is_frozen(self) -> None:
        spec = load_job(VALID, conf_dir=CONF, environ={}).spec
        with pytest.raises(ValueError, match="frozen"):
            spec.checkpoint = "/tmp/other"  # type: ignore[misc]

    def test_several_profiles_layer_left_to_right(self) -> None:
        loaded = load_job(
            VALID,
            env="dev,secret",
            conf_dir=CONF,
            environ={"ONCEFLOW_TEST_SECRET": "x", "ONCEFLOW_TEST_HOST": "h"},
        )
        assert [Path(layer).name for layer in loaded.layers[:3]] == [
            "base.yaml",
            "dev.yaml",
            "secret.yaml",
        ]
        # dev's key survives where secret.yaml is silent
        assert loaded.spec.spark.master == "local[1]"

    def test_unknown_profile_among_several_is_named(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, env="dev,prod", conf_dir=CONF, environ={})
        assert caught.value.params["env"] == "prod"

    def test_unknown_env_lists_known_profiles(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, env="prod", conf_dir=CONF, environ={})
        assert caught.value.error_class == "CONFIG_UNKNOWN_ENV"
        assert "base, dev, secret" in str(caught.value)


class TestInterpolation:
    ENVIRON: ClassVar[dict[str, str]] = {
        "ONCEFLOW_TEST_SECRET": SECRET,
        "ONCEFLOW_TEST_HOST": "127.0.0.1",
    }

    def test_env_values_are_substituted(self) -> None:
        spec = load_job(VALID, env="secret", conf_dir=CONF, environ=self.ENVIRON).spec
        assert spec.spark.conf["spark.hadoop.fs.s3a.secret.key"] == SECRET
        assert spec.spark.conf["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:9000"

    def test_printed_config_redacts_every_env_value(self) -> None:
        loaded = load_job(VALID, env="secret", conf_dir=CONF, environ=self.ENVIRON)
        printed = loaded.to_yaml()
        assert SECRET not in printed
        assert "spark.hadoop.fs.s3a.secret.key: '***'" in printed

    def test_unset_variable_is_an_error_naming_file_key_and_var(self) -> None:
        error = load_bad("env_unset.yaml")
        assert error.error_class == "CONFIG_ENV_UNSET"
        assert "env_unset.yaml:5" in str(error)
        assert "'source.path'" in str(error)
        assert "ONCEFLOW_TEST_SURELY_UNSET" in str(error)

    def test_malformed_reference_is_an_error(self) -> None:
        error = load_bad("env_syntax.yaml")
        assert error.error_class == "CONFIG_ENV_SYNTAX"
        assert "${ENV:lowercase-not-allowed}" in str(error)

    def test_invalid_env_value_is_never_echoed(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(BAD / "secret_bad_type.yaml", conf_dir=CONF, environ=self.ENVIRON)
        assert caught.value.error_class == "CONFIG_INVALID_VALUE"
        assert "source.max_files_per_trigger" in str(caught.value)
        assert SECRET not in str(caught.value)


class TestErrors:
    def test_unknown_key_suggests_nearest(self) -> None:
        error = load_bad("unknown_key.yaml")
        assert error.error_class == "CONFIG_UNKNOWN_KEY"
        message = str(error)
        assert "unknown_key.yaml:10" in message
        assert "'sinks[0].pth'" in message
        assert "did you mean 'path'?" in message

    def test_duplicate_key_in_one_file(self) -> None:
        error = load_bad("duplicate_key.yaml")
        assert error.error_class == "CONFIG_DUPLICATE_KEY"
        assert "duplicate_key.yaml:12" in str(error)
        assert "first at line 11" in str(error)

    def test_missing_required_key(self) -> None:
        error = load_bad("missing_key.yaml")
        assert error.error_class == "CONFIG_MISSING_KEY"
        assert "missing_key.yaml" in str(error)
        assert "'checkpoint'" in str(error)

    def test_invalid_values_are_all_reported(self) -> None:
        error = load_bad("bad_value.yaml")
        problems = [str(e) for e in (error, *error.others)]
        assert any("'source.format'" in p and "'xml'" in p for p in problems)
        assert any("'source.max_files_per_trigger'" in p and "at least 1" in p for p in problems)
        assert all("bad_value.yaml" in p for p in problems)

    def test_unknown_kind(self) -> None:
        error = load_bad("bad_kind.yaml")
        assert error.error_class == "CONFIG_INVALID_VALUE"
        assert "'source'" in str(error)
        assert "'files'" in str(error) and "'delta'" in str(error)

    def test_yaml_syntax_names_line(self) -> None:
        error = load_bad("yaml_syntax.yaml")
        assert error.error_class == "CONFIG_YAML_SYNTAX"
        assert "yaml_syntax.yaml:4" in str(error)

    def test_top_level_must_be_a_mapping(self) -> None:
        assert load_bad("not_mapping.yaml").error_class == "CONFIG_NOT_A_MAPPING"

    def test_exactly_one_trigger(self) -> None:
        error = load_bad("two_triggers.yaml")
        assert error.error_class == "CONFIG_INVALID_VALUE"
        assert "'trigger'" in str(error) and "exactly one" in str(error)

    def test_sink_names_unique(self) -> None:
        error = load_bad("duplicate_sinks.yaml")
        assert "repeated: events" in str(error)

    def test_missing_file(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(BAD / "nope.yaml", conf_dir=CONF, environ={})
        assert caught.value.error_class == "CONFIG_FILE_NOT_FOUND"

    @pytest.mark.parametrize(
        ("override", "problem"),
        [
            ("no-equals-sign", "expected KEY=VALUE"),
            ("sinks[5].path=x", "no list item [5]"),
            ("source..path=x", "cannot read the key path"),
        ],
    )
    def test_bad_override(self, override: str, problem: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=[override])
        assert caught.value.error_class == "CONFIG_BAD_OVERRIDE"
        assert problem in str(caught.value)

    def test_override_of_unknown_key_names_set_as_origin(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=["sinks[0].pathh=x"])
        assert "--set sinks[0].pathh" in str(caught.value)
        assert "did you mean 'path'?" in str(caught.value)

    def test_profile_error_names_the_profile(self, tmp_path: Path) -> None:
        conf = tmp_path / "conf"
        conf.mkdir()
        (conf / "base.yaml").write_text("spark:\n  log_levl: INFO\n")
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=conf, environ={})
        assert str(conf / "base.yaml") + ":2" in str(caught.value)
        assert "did you mean 'log_level'?" in str(caught.value)


class TestGuaranteeRules:
    """Combinations that cannot keep their promise are refused before Spark starts."""

    @pytest.mark.parametrize(
        ("name", "key", "why"),
        [
            ("merge_without_keys.yaml", "'sinks[0]'", "a MERGE needs keys"),
            ("parquet_append_exactly_once.yaml", "'sinks[0]'", "cannot guard a Parquet append"),
            ("strategy_without_exactly_once.yaml", "'strategy'", "only read with guarantee"),
            ("parquet_merge.yaml", "'sinks[0].mode'", "Parquet files have no MERGE"),
        ],
    )
    def test_refused(self, name: str, key: str, why: str) -> None:
        error = load_bad(name)
        assert error.error_class == "CONFIG_GUARANTEE_REFUSED"
        assert name in str(error) and key in str(error) and why in str(error)

    def test_update_clause_needs_set(self) -> None:
        error = load_bad("merge_clause_without_set.yaml")
        assert "sinks[0].merge.when_matched[0]" in str(error)
        assert "'set' is required with action: update" in str(error)

    def test_strategy_sets_the_default_mode(self) -> None:
        spec = load_job(ROOT_JOBS / "payments_exactly_once_transactional.yaml", environ={}).spec
        modes = {sink.name: spec.mode_of(sink).value for sink in spec.sinks}
        assert modes == {"events": "append", "balances": "merge"}


class TestPathsThatWouldMixOutputs:
    """The quarantine is an output like the sinks: it may not share a folder with one."""

    @pytest.mark.parametrize("name", ["quarantine_on_sink.yaml", "quarantine_inside_sink.yaml"])
    def test_a_quarantine_on_or_inside_a_sink_is_refused(self, name: str) -> None:
        error = load_bad(name)
        assert error.error_class == "CONFIG_GUARANTEE_REFUSED"
        message = str(error)
        assert name in message and "'quality.quarantine'" in message
        assert "sink 'events'" in message

    def test_a_sink_inside_the_checkpoint_is_refused(self) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=["checkpoint=tables/events/cp"])
        assert caught.value.error_class == "CONFIG_GUARANTEE_REFUSED"
        assert "'checkpoint'" in str(caught.value) and "sink 'events'" in str(caught.value)


class TestRecordLossNeedsAnOptIn:
    """``failOnDataLoss: false`` lets Spark skip offsets retention deleted: records lost."""

    @pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
    def test_refused_under_a_guarantee_that_promises_no_loss(self, guarantee: str) -> None:
        error = load_bad(
            "fail_on_data_loss_exactly_once.yaml", overrides=[f"guarantee={guarantee}"]
        )
        assert error.error_class == "CONFIG_GUARANTEE_REFUSED"
        assert "'source.failOnDataLoss'" in str(error)
        assert "accept_record_loss: true" in str(error)

    def test_the_explicit_opt_in_is_accepted(self) -> None:
        spec = load_job(
            BAD / "fail_on_data_loss_exactly_once.yaml",
            conf_dir=CONF,
            environ={},
            overrides=["source.accept_record_loss=true"],
        ).spec
        assert spec.source.kind == "kafka" and spec.source.accept_record_loss

    def test_at_most_once_needs_no_opt_in(self) -> None:
        load_job(
            BAD / "fail_on_data_loss_exactly_once.yaml",
            conf_dir=CONF,
            environ={},
            overrides=["guarantee=at-most-once"],
        )


class TestEverySecretIsOne:
    """Any key that names a secret takes its value from ``${env:VAR}`` only, and no error
    or printed config shows one."""

    @pytest.mark.parametrize(
        ("name", "key", "canary"),
        [
            ("secret_literal_jaas.yaml", "source.options.kafka.sasl.jaas.config", "jaas-CANARY"),
            ("secret_literal_s3a.yaml", "spark.conf.spark.hadoop.fs.s3a.secret.key", "s3a-CANARY"),
        ],
    )
    def test_a_literal_secret_is_refused_without_showing_it(
        self, name: str, key: str, canary: str
    ) -> None:
        error = load_bad(name)
        assert error.error_class == "CONFIG_SECRET_LITERAL"
        assert name in str(error) and f"'{key}'" in str(error)
        assert canary not in " ".join(str(e) for e in (error, *error.others))

    @pytest.mark.parametrize(
        "key",
        [
            'spark.conf["spark.hadoop.fs.azure.account.key.lake.dfs.core.windows.net"]',
            'spark.conf["spark.kubernetes.authenticate.submission.oauthToken"]',
            'spark.conf["spark.ssl.keyStorePassword"]',
            'source.options["kafka.ssl.key.password"]',
        ],
    )
    def test_keys_that_name_a_credential_are_secrets(self, key: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=[f"{key}={SECRET}"])
        assert caught.value.error_class == "CONFIG_SECRET_LITERAL"
        assert SECRET not in str(caught.value)

    def test_keys_that_only_mention_a_credential_are_not(self) -> None:
        load_job(
            VALID,
            conf_dir=CONF,
            environ={},
            overrides=[
                'spark.conf["spark.hadoop.fs.s3a.aws.credentials.provider"]=x.Provider',
                'spark.conf["spark.hadoop.fs.s3a.delegation.token.binding"]=x.Binding',
            ],
        )

    def test_a_jaas_config_with_its_password_from_the_environment_is_accepted(self) -> None:
        jaas = 'x.PlainLoginModule required username="alice" password="${env:PW}";'
        loaded = load_job(
            BAD / "secret_literal_jaas.yaml",
            conf_dir=CONF,
            environ={"PW": SECRET},
            overrides=[f'source.options["kafka.sasl.jaas.config"]={jaas}'],
        )
        assert SECRET not in loaded.to_yaml()

    @pytest.mark.parametrize(
        "override",
        [
            f"sinks[5].password={SECRET}",
            f"source..path={SECRET}",
            f'spark.conf["spark.hadoop.fs.s3a.secret.key"]={SECRET}',
            f"source.max_files_per_trigger={SECRET}",
            f"no-equals-{SECRET}",
        ],
    )
    def test_an_override_value_is_never_echoed(self, override: str) -> None:
        with pytest.raises(ConfigError) as caught:
            load_job(VALID, conf_dir=CONF, environ={}, overrides=[override])
        shown = " ".join(str(e) for e in (caught.value, *caught.value.others))
        assert SECRET not in shown

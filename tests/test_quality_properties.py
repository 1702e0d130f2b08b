"""Property tests: whatever arrives, the parser and the config loader answer with a parsed
row, a quarantine reason, or onceflow's own error — never a crash of their own."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from onceflow.config import load_job
from onceflow.errors import ConfigError
from onceflow.quality import parse_csv, parse_json
from onceflow.quality.parsing import ERROR, schema_of
from onceflow.sources.raw import PAYLOAD
from tests.conftest import ROOT

SCHEMA = "id BIGINT, account STRING, amount DECIMAL(18,2), event_time TIMESTAMP, tags ARRAY<STRING>"
REQUIRED = ("id", "account")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
records = st.dictionaries(
    st.sampled_from(["id", "account", "amount", "event_time", "tags", "other"]), json_values
).map(lambda record: json.dumps(record).encode())
payloads = st.lists(
    records | st.binary(max_size=60) | st.text(max_size=40).map(str.encode), min_size=1, max_size=40
)


@pytest.mark.spark
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=payloads)
def test_any_payload_is_parsed_or_given_a_reason(spark: SparkSession, batch: list[bytes]) -> None:
    raw = spark.createDataFrame([(bytearray(p),) for p in batch], "raw BINARY")
    frame = raw.selectExpr(f"CAST(raw AS STRING) AS {PAYLOAD}")
    schema = schema_of(frame, SCHEMA)
    for parsed in (
        parse_json(frame, schema, REQUIRED, 100),
        parse_csv(frame, schema, REQUIRED, 100, {}),
    ):
        rows = parsed.select(ERROR, "id", "account").collect()
        assert len(rows) == len(batch)
        for row in rows:
            # a record either fits (its required fields are there) or says why not
            assert row[ERROR] is not None or (row["id"] is not None and row["account"] is not None)


job_keys = st.sampled_from(
    ["name", "source", "sinks", "checkpoint", "guarantee", "strategy", "quality", "rules",
     "kind", "path", "schema", "mode", "merge", "keys", "connections", "password", "trigger",
     "expect_or_fail", "required", "transform", "spark", "conf", "x"]
)  # fmt: skip
yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(job_keys, inner, max_size=4),
    max_leaves=12,
)


def _load(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        job = Path(folder) / "job.yaml"
        job.write_text(text)
        try:
            load_job(job, env="local", conf_dir=ROOT / "conf", environ={})
        except ConfigError:
            pass


@settings(max_examples=150, deadline=None)
@given(document=st.dictionaries(job_keys, yaml_values, max_size=8))
def test_any_job_document_loads_or_is_refused_with_a_config_error(document: dict[str, Any]) -> None:
    _load(yaml.safe_dump(document))


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=120))
@example(text="=")  # found by this test: a tag SafeLoader cannot construct ("value")
@example(text="x: !!python/object:os.system 1")
def test_any_text_as_a_job_file_loads_or_is_refused_with_a_config_error(text: str) -> None:
    _load(text)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"name: \xff\xfe\n", "not UTF-8 text"),
        (b"name: a\x1f\n", "special characters"),
        (b"name: =\n", "could not determine a constructor"),
    ],
)
def test_a_job_file_yaml_cannot_read_names_the_file_and_line(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    job = tmp_path / "job.yaml"
    job.write_bytes(b"# a job\n" + content)
    with pytest.raises(ConfigError, match="CONFIG_YAML_SYNTAX") as refused:
        load_job(job, conf_dir=ROOT / "conf", environ={})
    assert f"{job}:2:" in str(refused.value) and problem in str(refused.value)

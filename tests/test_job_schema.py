"""What a job file may say, as the models say it: the JSON Schema editors read
(``onceflow schema``) and the committed key reference (``docs/reference.md``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from onceflow.cli import EXIT_OK, main
from onceflow.config import load_job
from onceflow.config.reference import REFERENCE_COMMAND, builtin_kinds, reference_markdown
from onceflow.config.schema import job_schema
from tests.test_readme import blocks

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "resources" / "config" / "bad"
REFERENCE = ROOT / "docs" / "reference.md"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = job_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(validator: jsonschema.Draft202012Validator, job: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(job)]


def readme_jobs() -> list[str]:
    """The README's YAML blocks that are whole jobs."""
    return [
        block
        for block in blocks("yaml")
        if isinstance(job := yaml.safe_load(block), dict)
        and {"name", "source", "sinks"} <= set(job)
    ]


EXAMPLES = [
    *(pytest.param(p.read_text(), id=p.name) for p in sorted((ROOT / "jobs").glob("*.yaml"))),
    *(pytest.param(block, id=f"README-{i}") for i, block in enumerate(readme_jobs())),
]


def test_the_readme_has_whole_jobs_to_check() -> None:
    assert readme_jobs(), "no ```yaml block of the README is a whole job any more"


@pytest.mark.parametrize("text", EXAMPLES)
def test_every_example_job_is_valid_under_the_schema(
    text: str, validator: jsonschema.Draft202012Validator
) -> None:
    assert problems(validator, yaml.safe_load(text)) == []


@pytest.mark.parametrize(
    "name",
    [
        "unknown_key.yaml",
        "missing_key.yaml",
        "bad_value.yaml",
        "bad_kind.yaml",
        "kind_typo.yaml",
        "enum_typo.yaml",
        "select_not_a_list.yaml",
        "trigger_not_a_mapping.yaml",
    ],
)
def test_the_schema_refuses_what_validate_refuses(
    name: str, validator: jsonschema.Draft202012Validator
) -> None:
    assert problems(validator, yaml.safe_load((BAD / name).read_text()))


PG_CONNECTION = {
    "host": "h",
    "port": "${env:PG_PORT}",
    "database": "d",
    "user": "u",
    "password": "${env:PG_PASSWORD}",
}
JOB = {
    "name": "typed",
    "source": {"kind": "files", "format": "json", "path": "in", "schema": "id BIGINT"},
    "sinks": [{"name": "events", "kind": "delta", "path": "out"}],
    "checkpoint": "state/typed",
}


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("retries",), "${env:RETRIES}"),  # an integer
        (("locks", "heartbeat_seconds"), "${env:BEAT}"),  # a number
        (("trigger",), {"available_now": "${env:DRAIN}"}),  # a boolean
        (("guarantee",), "${env:GUARANTEE}"),  # a closed set
        (("on_foreign_sink",), "${env:ON_FOREIGN}"),  # a Literal
        (("name",), "${env:JOB_NAME}"),  # a patterned name
        (("connections", "pg"), PG_CONNECTION),  # a port, and a secret
        (("source", "options"), {"header": True, "samplingRatio": 0.5}),  # read as strings
    ],
)
def test_an_environment_reference_stands_where_load_job_reads_one(
    where: tuple[str, ...], value: Any, validator: jsonschema.Draft202012Validator, tmp_path: Path
) -> None:
    job = with_value(where, value)
    assert problems(validator, job) == []
    # and load_job agrees: the job is valid once the environment gives the values
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    load_job(tmp_path / "job.yaml", conf_dir=tmp_path, environ=ENVIRON)


ENVIRON = {"RETRIES": "3", "BEAT": "5", "DRAIN": "true", "GUARANTEE": "exactly-once",
           "ON_FOREIGN": "continue", "JOB_NAME": "typed", "PG_PORT": "5432",
           "PG_PASSWORD": "pw"}  # fmt: skip


def with_value(where: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """``JOB`` with ``value`` set at the key path ``where``."""
    job: dict[str, Any] = json.loads(json.dumps(JOB))
    holder: Any = job
    for key in where[:-1]:
        holder = holder.setdefault(key, {}) if isinstance(holder, dict) else holder[key]
    holder[where[-1]] = value
    return job


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("retries",), "three"),  # a string that is no reference
        (("retries",), 11),  # a bound still holds
        (("guarantee",), "exactly_once"),
        (("sinks", 0, "kind"), "${env:KIND}"),  # a kind picks the model: never a reference
    ],
)
def test_the_schema_still_refuses_a_wrong_value(
    where: tuple[Any, ...], value: Any, validator: jsonschema.Draft202012Validator
) -> None:
    assert problems(validator, with_value(where, value))


def test_schema_command_writes_the_schema(tmp_path: Path) -> None:
    out = tmp_path / ".onceflow" / "job.schema.json"
    assert main(["schema", "--out", str(out)]) == EXIT_OK
    written = json.loads(out.read_text())
    assert written == job_schema()
    assert written["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert written["properties"]["guarantee"]["description"]  # editors show it on hover


def test_the_committed_reference_is_current() -> None:
    assert REFERENCE.read_text() == reference_markdown(), (
        f"docs/reference.md is stale: run `{REFERENCE_COMMAND}` and commit it"
    )


def reference_rows() -> dict[str, list[str]]:
    """Each table row of the committed reference, by section: key, type, default, meaning."""
    rows: dict[str, list[str]] = {}
    section = ""
    for line in REFERENCE.read_text().splitlines():
        if line.startswith("#"):
            section = line.lstrip("# ")
        elif line.startswith("| `"):
            rows.setdefault(section, []).append(line)
    return rows


def test_every_key_of_every_kind_is_in_the_reference() -> None:
    """The fields, read off the models here, each have a row in their kind's section."""
    registry = builtin_kinds()
    rows = reference_rows()
    for prefix, declared in (("source.", registry.sources), ("sinks[].", registry.sinks)):
        for name, kind in declared.items():
            keys = {row.split("`")[1] for row in rows[f"`kind: {name}`"]}
            fields = {prefix + (i.alias or field) for field, i in kind.spec.model_fields.items()}
            assert fields <= keys, fields - keys


def test_every_key_in_the_reference_has_a_type_a_default_and_a_meaning() -> None:
    for section, lines in reference_rows().items():
        for line in lines:
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            assert len(cells) == 4 and all(cells), f"{section}: {line}"

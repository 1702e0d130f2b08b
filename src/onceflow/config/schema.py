"""The JSON Schema of a job file, for editors: completion, hover help and checks as you type.

It is generated from the models ``load_job`` validates with (``job_model()``: every
registered kind of source and sink, discriminated on ``kind``), with two changes so that a
schema check agrees with ``onceflow validate`` on what a job file may say:

- a value that must be a number, a boolean, one of a closed set of words or a patterned
  name may also be a string holding ``${env:VAR}``: ``load_job`` replaces the reference
  before it validates, so ``port: ${env:PG_PORT}`` is a valid job (a ``kind`` may not: it
  picks the model);
- reader, writer and Spark options (``options``, ``spark.conf``) take any scalar:
  ``header: true`` is read as the string ``"true"``.

The schema describes a job file as a whole job; it does not know which keys a profile
(``conf/<env>.yaml``) would add. It never imports Spark.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from onceflow.config.common import as_str_map
from onceflow.config.job import job_model
from onceflow.config.kinds import Kinds

__all__ = ["ENV_REFERENCE", "SCHEMA_DIALECT", "job_schema"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: A string that holds an environment reference (a JSON Schema pattern is unanchored).
ENV_REFERENCE: dict[str, Any] = {
    "type": "string",
    "pattern": r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}",
    "description": "${env:VAR}: read from the environment when the job is loaded",
}
_ANY_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean"]}


def job_schema(registry: Kinds | None = None) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job file over the kinds of ``registry``
    (``kinds()`` by default)."""
    schema = job_model(registry).model_json_schema(schema_generator=_JobSchema)
    schema["title"] = "onceflow job"
    return {"$schema": SCHEMA_DIALECT, **schema}


def _or_env(schema: JsonSchemaValue) -> JsonSchemaValue:
    return {"anyOf": [schema, ENV_REFERENCE]}


class _JobSchema(GenerateJsonSchema):
    """pydantic's generator, told where ``${env:VAR}`` and stringified options may stand."""

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        return _or_env(super().int_schema(schema))

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        return _or_env(super().float_schema(schema))

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        return _or_env(super().bool_schema(schema))

    def enum_schema(self, schema: core_schema.EnumSchema) -> JsonSchemaValue:
        return _or_env(super().enum_schema(schema))

    def literal_schema(self, schema: core_schema.LiteralSchema) -> JsonSchemaValue:
        generated = super().literal_schema(schema)
        # one value is a tag (a kind's ``kind``): the discriminator must stay exact
        return generated if len(schema["expected"]) == 1 else _or_env(generated)

    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        generated = super().str_schema(schema)
        return _or_env(generated) if "pattern" in generated else generated

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        if schema["function"]["function"] is as_str_map:
            return {"type": "object", "additionalProperties": _ANY_SCALAR}
        return super().function_before_schema(schema)

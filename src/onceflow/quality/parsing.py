"""Parsing raw records against the declared schema, keeping every record that does not fit.

``parse_records`` adds the schema's columns, typed, and ``_onceflow_error``: NULL for a
record that fits, else the first reason it does not. It never drops a row. Spark's
``from_json`` in PERMISSIVE mode is not used to judge: for a malformed record it yields a
struct of NULLs, not a NULL, and for a wrong type it silently yields a NULL field. JSON is
parsed into a VARIANT instead (``try_parse_json``), then each field is read with the
declared type (``try_variant_get``): a field that is present but does not convert is a
wrong type, never a silent NULL.

The reasons, checked in this order: over ``max_payload_bytes``, invalid UTF-8, empty
payload, not JSON (not CSV with the schema's column count), not a JSON object, no field of
the schema present at all (``{}``, a CSV row of empty cells: nothing to write but NULLs),
then per field in schema order: a missing ``required`` field, nesting where a string
belongs, a value of the wrong type.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from onceflow.config import RawFormat
from onceflow.sources.raw import PAYLOAD

__all__ = ["ERROR", "RECORD", "parse_csv", "parse_json", "parse_raw", "schema_of"]

ERROR = "_onceflow_error"
#: A row set apart from the stream before its transforms reshaped it, as JSON: what the
#: quarantine shows of a record that has no raw payload (a typed source's).
RECORD = "_onceflow_record"
_VARIANT = "_onceflow_variant"
_FIELDS = "_onceflow_fields"
_EXTRA = "_onceflow_extra_column"


def schema_of(frame: DataFrame, ddl: str) -> T.StructType:
    """The StructType of a DDL string, parsed by the frame's session."""
    return frame.sparkSession.createDataFrame([], ddl).schema


def parse_raw(
    frame: DataFrame, raw: RawFormat, required: tuple[str, ...], max_bytes: int
) -> DataFrame:
    """``frame`` (raw records) parsed as ``raw`` says (JSON or CSV, its schema): the
    schema's typed columns and ``ERROR``, the reason a record did not parse (NULL when it
    did). Never drops a row."""
    schema = schema_of(frame, raw.schema)
    if raw.format == "csv":
        return parse_csv(frame, schema, required, max_bytes, dict(raw.options))
    return parse_json(frame, schema, required, max_bytes)


def parse_json(
    frame: DataFrame, schema: T.StructType, required: tuple[str, ...], max_bytes: int
) -> DataFrame:
    """``frame`` (with ``_onceflow_payload``) plus the schema's typed columns and the error."""
    parsed = frame.withColumn(_VARIANT, F.expr(f"try_parse_json({PAYLOAD})"))
    variant = F.col(_VARIANT)
    record_checks = [*_payload_checks(max_bytes)]
    record_checks.append((variant.isNull(), F.lit("not valid JSON")))
    record_checks.append(
        (~F.schema_of_variant(variant).startswith("OBJECT"), F.lit("not a JSON object"))
    )
    typed: list[Column] = []
    checks: list[tuple[Column, Column]] = []  # per field, in schema order
    any_present = F.lit(False)
    for field in schema.fields:
        path = f"$['{field.name}']"
        raw = F.variant_get(variant, path, "variant")
        present = raw.isNotNull() & ~F.is_variant_null(raw)
        any_present = any_present | present
        value = F.try_variant_get(variant, path, field.dataType.simpleString())
        if field.name in required:
            checks.append((~present, F.lit(f"missing required field '{field.name}'")))
        if isinstance(field.dataType, T.StringType):
            nested = F.schema_of_variant(raw).rlike("^(OBJECT|ARRAY)")
            checks.append(
                (present & nested, F.lit(f"field '{field.name}': nesting where a string belongs"))
            )
        checks.append((present & value.isNull(), _wrong_type(field, F.to_json(raw))))
        typed.append(value.alias(field.name))
    checks = [*record_checks, (~any_present, _no_field(schema)), *checks]
    return parsed.select("*", *typed, _first_error(checks).alias(ERROR)).drop(_VARIANT)


def parse_csv(
    frame: DataFrame,
    schema: T.StructType,
    required: tuple[str, ...],
    max_bytes: int,
    options: dict[str, str],
) -> DataFrame:
    """Like ``parse_json`` for one CSV record per payload, read with the source's options;
    values are read as text first, then converted with ``try_cast`` (arrays, maps and
    structs from JSON text in the cell)."""
    text_schema = ", ".join(f"`{f.name}` STRING" for f in schema.fields) + f", `{_EXTRA}` STRING"
    csv_options = {k: v for k, v in options.items() if k not in ("header", "mode")}
    parsed = frame.withColumn(
        _FIELDS, F.from_csv(F.col(PAYLOAD), text_schema, {**csv_options, "mode": "PERMISSIVE"})
    )
    record_checks = [*_payload_checks(max_bytes)]
    record_checks.append(
        (
            F.col(f"{_FIELDS}.{_EXTRA}").isNotNull(),
            F.lit(f"more columns than the schema's {len(schema.fields)}"),
        )
    )
    typed: list[Column] = []
    checks: list[tuple[Column, Column]] = []  # per field, in schema order
    any_present = F.lit(False)
    for field in schema.fields:
        text = F.col(f"{_FIELDS}.`{field.name}`")
        present = text.isNotNull() & (text != "")
        any_present = any_present | present
        value = (
            F.from_json(text, field.dataType.simpleString())  # JSON text in a CSV cell
            if isinstance(field.dataType, T.ArrayType | T.MapType | T.StructType)
            else text.try_cast(field.dataType)
        )
        if field.name in required:
            checks.append((~present, F.lit(f"missing required field '{field.name}'")))
        checks.append((present & value.isNull(), _wrong_type(field, text)))
        typed.append(value.alias(field.name))
    checks = [*record_checks, (~any_present, _no_field(schema)), *checks]
    return parsed.select("*", *typed, _first_error(checks).alias(ERROR)).drop(_FIELDS)


def _payload_checks(max_bytes: int) -> list[tuple[Column, Column]]:
    payload = F.col(PAYLOAD)
    size = F.octet_length(payload)
    return [
        (payload.isNull(), F.lit("no payload (NULL)")),
        (
            size > max_bytes,
            F.format_string(f"payload of %d bytes is over max_payload_bytes {max_bytes}", size),
        ),
        (~F.expr(f"is_valid_utf8({PAYLOAD})"), F.lit("invalid UTF-8")),
        (F.trim(payload) == "", F.lit("empty payload")),
    ]


def _no_field(schema: T.StructType) -> Column:
    names = ", ".join(field.name for field in schema.fields)
    return F.lit(f"no field of the schema present ({names})")


def _wrong_type(field: T.StructField, shown: Column) -> Column:
    expected = field.dataType.simpleString()
    return F.format_string(f"field '{field.name}': not a {expected}: %s", F.substring(shown, 1, 80))


def _first_error(checks: list[tuple[Column, Column]]) -> Column:
    """The reason of the first check that holds; NULL when none does (a NULL check is
    treated as not holding, so each check must say what it means)."""
    result = F.when(checks[0][0], checks[0][1])
    for condition, reason in checks[1:]:
        result = result.when(F.coalesce(condition, F.lit(False)), reason)
    return result

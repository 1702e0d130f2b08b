"""A batch's key range, as SQL literals a MERGE condition can hold: Delta skips every
file whose min/max statistics lie outside it (a MERGE's ``prune``, CDC apply's reads and
MERGEs). The key equality implies the range, so it changes no result.
"""

from __future__ import annotations

import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

__all__ = ["KeyRange", "key_ranges", "ranged_keys"]

#: (key, lowest value, highest value), the values as SQL literals of the key's type.
KeyRange = list[tuple[str, str, str]]


def ranged_keys(frame: DataFrame, keys: tuple[str, ...]) -> list[str]:
    """Those of ``keys`` whose type Delta keeps min/max statistics of and prints exactly."""
    types = {field.name: field.dataType for field in frame.schema.fields}
    return [key for key in keys if isinstance(types.get(key), _ORDERABLE_KEY_TYPES)]


def key_ranges(
    frame: DataFrame, keys: tuple[str, ...], counts: dict[str, Column]
) -> tuple[dict[str, int], KeyRange]:
    """In one aggregate over ``frame``: each of ``counts`` (name -> a count), and the range
    of each of ``keys`` that can be ranged (``ranged_keys``; a key all NULL has none)."""
    types = {field.name: field.dataType for field in frame.schema.fields}
    ranged = ranged_keys(frame, keys)
    aggregates = [count.alias(name) for name, count in counts.items()]
    for index, key in enumerate(ranged):
        aggregates.append(_as_text(F.min(F.col(f"`{key}`")), types[key]).alias(f"lo{index}"))
        aggregates.append(_as_text(F.max(F.col(f"`{key}`")), types[key]).alias(f"hi{index}"))
    found = frame.agg(*aggregates).first()
    assert found is not None  # noqa: S101 - a global aggregate has one row
    ranges = []
    for index, key in enumerate(ranged):
        low, high = found[f"lo{index}"], found[f"hi{index}"]
        if low is not None:  # NULL only when no row has a non-NULL key
            ranges.append((key, _sql_literal(low, types[key]), _sql_literal(high, types[key])))
    return {name: int(found[name] or 0) for name in counts}, ranges


# key types whose min/max Delta keeps as file statistics and that print as exact literals
# (not floating point: its string form may round)
_ORDERABLE_KEY_TYPES = (
    T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.DecimalType,
    T.StringType, T.DateType, T.TimestampType, T.TimestampNTZType,
)  # fmt: skip


def _as_text(value: Column, data_type: T.DataType) -> Column:
    """A key's min or max as text ``_sql_literal`` reads back exactly: a TIMESTAMP as UTC
    microseconds, since its text in the session's time zone is ambiguous for the hour a
    clock goes back (01:30 happens twice), and a wrong bound would miss a matching row."""
    if isinstance(data_type, T.TimestampType):
        return F.unix_micros(value).cast("string")
    return value.cast("string")


def _sql_literal(text: str, data_type: T.DataType) -> str:
    """A SQL literal of ``data_type`` for a key's min or max, from ``_as_text``."""
    if isinstance(data_type, T.StringType):
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(data_type, T.DateType):
        return f"DATE '{text}'"
    if isinstance(data_type, T.TimestampNTZType):
        return f"TIMESTAMP_NTZ '{text}'"
    if isinstance(data_type, T.TimestampType):
        instant = _EPOCH + datetime.timedelta(microseconds=int(text))
        return f"TIMESTAMP '{instant.isoformat(sep=' ')}'"  # ends in +00:00: no zone guessed
    return f"CAST('{text}' AS {data_type.simpleString()})"


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

"""How a Spark batch becomes PostgreSQL rows: the column types, and the CSV text of a row.

Every Spark type maps to one PostgreSQL type explicitly; a type without a mapping stops the
batch with SINK_TYPE_UNSUPPORTED naming the column, never a silent cast. Rows are encoded
to PostgreSQL's CSV (``COPY ... (FORMAT csv)``) inside the JVM, so the Python workers only
pass lines through: every non-null value is quoted (a doubled ``"`` inside), a null is an
empty unquoted field, which is how PostgreSQL's CSV tells NULL from the empty string.

| Spark                          | PostgreSQL                 | text sent                        |
|--------------------------------|----------------------------|----------------------------------|
| string, varchar, char          | text                       | as is                            |
| boolean                        | boolean                    | true / false                     |
| tinyint, smallint              | smallint                   | decimal digits                   |
| int / bigint                   | integer / bigint           | decimal digits                   |
| float / double                 | real / double precision    | Spark's text (NaN, Infinity too) |
| decimal(p, s)                  | numeric(p, s)              | plain digits                     |
| date                           | date                       | yyyy-MM-dd                       |
| timestamp                      | timestamp with time zone   | ISO 8601 with the UTC offset     |
| timestamp_ntz                  | timestamp                  | ISO 8601 without offset          |
| binary                         | bytea                      | ``\\x`` + hex                    |
| array, map, struct             | jsonb                      | ``to_json``                      |
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

__all__ = ["PgColumn", "UnsupportedType", "csv_line", "pg_columns"]


class UnsupportedType(ValueError):
    """A column whose Spark type has no PostgreSQL mapping."""

    def __init__(self, column: str, spark_type: str) -> None:
        super().__init__(f"column '{column}' has Spark type {spark_type}")
        self.column = column
        self.spark_type = spark_type


@dataclass(frozen=True)
class PgColumn:
    """One column of the batch: its name, its PostgreSQL type, its value as COPY text."""

    name: str
    pg_type: str
    text: Column


_SIMPLE: dict[type[T.DataType], str] = {
    T.StringType: "text",
    T.VarcharType: "text",
    T.CharType: "text",
    T.BooleanType: "boolean",
    T.ByteType: "smallint",
    T.ShortType: "smallint",
    T.IntegerType: "integer",
    T.LongType: "bigint",
    T.FloatType: "real",
    T.DoubleType: "double precision",
    T.DateType: "date",
}


def pg_columns(schema: T.StructType) -> list[PgColumn]:
    """The PostgreSQL column of every field of ``schema``, in order.

    Raises:
        UnsupportedType: for the first field whose type has no mapping.
    """
    return [_column(field) for field in schema.fields]


def _column(field: T.StructField) -> PgColumn:
    value = F.col(f"`{field.name}`")
    data_type = field.dataType
    if type(data_type) in _SIMPLE:
        return PgColumn(field.name, _SIMPLE[type(data_type)], value.cast("string"))
    if isinstance(data_type, T.DecimalType):
        return PgColumn(
            field.name, f"numeric({data_type.precision},{data_type.scale})", value.cast("string")
        )
    if isinstance(data_type, T.TimestampType):
        # the session time zone renders the instant; the offset keeps it exact in timestamptz
        text = F.date_format(value, "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX")
        return PgColumn(field.name, "timestamp with time zone", text)
    if isinstance(data_type, T.TimestampNTZType):
        return PgColumn(
            field.name, "timestamp", F.date_format(value, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
        )
    if isinstance(data_type, T.BinaryType):
        return PgColumn(field.name, "bytea", F.concat(F.lit("\\x"), F.lower(F.hex(value))))
    if isinstance(data_type, T.ArrayType | T.MapType | T.StructType):
        return PgColumn(field.name, "jsonb", F.to_json(value))
    raise UnsupportedType(field.name, data_type.simpleString())


def csv_line(columns: list[PgColumn]) -> Column:
    """One line of PostgreSQL CSV per row: each value quoted, NULL as an empty field."""
    quote = F.lit('"')
    fields = [
        F.coalesce(F.concat(quote, F.replace(c.text, quote, F.lit('""')), quote), F.lit(""))
        for c in columns
    ]
    return F.concat_ws(",", *fields)

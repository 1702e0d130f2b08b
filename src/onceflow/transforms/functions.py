"""The job's own code over its rows: ``transform.sql`` and ``transform.python`` on the
stream, ``transform.batch_python`` on each batch.

The stream's SQL and function are applied once, when the query starts, to the streaming
DataFrame: what they return is the plan every batch runs. A function that raises then, or
returns something other than a DataFrame, stops the start naming itself; one that raises
on a batch names the batch. What fails later, as Spark runs the plan (a UDF on an
executor), fails the batch's write like any other error of the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import DataFrame

from onceflow.config.functions import import_function
from onceflow.errors import TransformError, first_line

__all__ = ["STREAM_VIEW", "apply_batch_python", "apply_python", "apply_sql"]

#: How ``transform.sql`` names the stream: ``SELECT ... FROM {stream}``.
STREAM_VIEW = "stream"


def apply_sql(frame: DataFrame, statement: str) -> DataFrame:
    """``statement`` over ``frame``, which it names ``{stream}`` (a temp view of its own,
    dropped once the statement is analysed: two jobs of one session never see each
    other's)."""
    views: dict[str, Any] = {STREAM_VIEW: frame}
    return frame.sparkSession.sql(statement, **views)


def apply_python(frame: DataFrame, reference: str, job: str) -> DataFrame:
    """``reference``'s function applied to the stream.

    Raises:
        TransformError: TRANSFORM_FAILED when it raises or returns no DataFrame.
    """
    return _called(reference, job, "transform.python", "building the stream", (frame,))


def apply_batch_python(frame: DataFrame, batch_id: int, reference: str, job: str) -> DataFrame:
    """``reference``'s function applied to a batch's good rows, with its batch id.

    Raises:
        TransformError: TRANSFORM_FAILED naming the batch, when it raises or returns no
            DataFrame.
    """
    return _called(
        reference, job, "transform.batch_python", f"on batch {batch_id}", (frame, batch_id)
    )


def _called(reference: str, job: str, key: str, when: str, args: tuple[Any, ...]) -> DataFrame:
    try:
        function: Callable[..., Any] = import_function(reference)
    except ValueError as exc:
        raise TransformError(
            "TRANSFORM_FAILED", job=job, key=key, reference=reference, when=when, cause=str(exc)
        ) from exc
    try:
        result = function(*args)
    except Exception as exc:
        raise TransformError(
            "TRANSFORM_FAILED", job=job, key=key, reference=reference, when=when,
            cause=f"{type(exc).__name__}: {first_line(exc)}",
        ) from exc  # fmt: skip
    if not isinstance(result, DataFrame):
        raise TransformError(
            "TRANSFORM_FAILED", job=job, key=key, reference=reference, when=when,
            cause=f"it returned a {type(result).__name__}, not a DataFrame",
        )  # fmt: skip
    return result

"""The job's row-wise ``transform``: filter with ``where``, then project with ``select``."""

from __future__ import annotations

from pyspark.sql import DataFrame

from onceflow.config import TransformSpec

__all__ = ["apply_transform"]


def apply_transform(frame: DataFrame, spec: TransformSpec) -> DataFrame:
    """Filter with ``where``, then project with ``select`` (SQL expressions)."""
    if spec.where:
        frame = frame.where(spec.where)
    if spec.select:
        frame = frame.selectExpr(*spec.select)
    return frame

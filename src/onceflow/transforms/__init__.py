"""What a job does to its stream before the sinks: row-wise shaping (``transform``), the
stateful keys (``watermark``, ``dedup``, ``aggregate``), whose state lives in the
checkpoint, and the job's own SQL and Python functions."""

from __future__ import annotations

from onceflow.transforms.aggregate import apply_aggregate
from onceflow.transforms.functions import apply_batch_python, apply_python, apply_sql
from onceflow.transforms.joins import join_stream, join_table
from onceflow.transforms.rows import apply_transform
from onceflow.transforms.stateful import apply_stateful, stateful_shape

__all__ = [
    "apply_aggregate",
    "apply_batch_python",
    "apply_python",
    "apply_sql",
    "apply_stateful",
    "apply_transform",
    "join_stream",
    "join_table",
    "stateful_shape",
]

"""What a job does to its stream before the sinks: row-wise shaping (``transform``) and the
stateful keys (``watermark``, ``dedup``), whose state lives in the checkpoint."""

from __future__ import annotations

from onceflow.transforms.rows import apply_transform
from onceflow.transforms.stateful import apply_stateful, stateful_shape

__all__ = ["apply_stateful", "apply_transform", "stateful_shape"]

"""Seeing a running job: the per-batch progress listener, the metrics file it writes next
to the checkpoint, and how ``onceflow run`` shows progress on a terminal."""

from __future__ import annotations

from onceflow.observe.console import LiveProgress, console_handler, progress_line
from onceflow.observe.metrics import KEEP_BATCHES, MetricsFile, metrics_folder, read_metrics
from onceflow.observe.progress import (
    ProgressLogger,
    batch_summary,
    skipped_offsets,
    source_lag,
    state_operators,
    stateful_drops,
)

__all__ = [
    "KEEP_BATCHES",
    "LiveProgress",
    "MetricsFile",
    "ProgressLogger",
    "batch_summary",
    "console_handler",
    "metrics_folder",
    "progress_line",
    "read_metrics",
    "skipped_offsets",
    "source_lag",
    "state_operators",
    "stateful_drops",
]

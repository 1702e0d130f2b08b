"""Data quality: parsing raw records, expectations, and the quarantine they feed (see
``stage``). Bad input never stops a stream and never vanishes."""

from __future__ import annotations

from onceflow.quality.expectations import FATE, REASON, Fate, classify
from onceflow.quality.parsing import ERROR, RECORD, parse_csv, parse_json, parse_raw
from onceflow.quality.stage import (
    QUARANTINE_SCHEMA,
    WHERE_RULE,
    BatchCounts,
    QualitySplit,
    QualityStage,
)

__all__ = [
    "ERROR",
    "FATE",
    "QUARANTINE_SCHEMA",
    "REASON",
    "RECORD",
    "WHERE_RULE",
    "BatchCounts",
    "Fate",
    "QualitySplit",
    "QualityStage",
    "classify",
    "parse_csv",
    "parse_json",
    "parse_raw",
]

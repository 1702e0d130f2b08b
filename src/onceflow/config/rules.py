"""Combinations that cannot keep their promise, refused before Spark starts.

Field-level validation (types, required keys) is the models' job; these rules look across
fields: the job's guarantee against each sink's kind and write mode.
"""

from __future__ import annotations

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.config.models import (
    DeltaSinkSpec,
    Guarantee,
    JobSpec,
    ParquetSinkSpec,
    WriteMode,
)
from onceflow.errors import ConfigError

__all__ = ["check_guarantee_rules"]


def check_guarantee_rules(spec: JobSpec, document: Document) -> list[ConfigError]:
    """Every rule the job breaks, as CONFIG_GUARANTEE_REFUSED errors naming file and key."""
    problems: list[tuple[KeyPath, str]] = []
    if spec.strategy is not None and spec.guarantee is not Guarantee.EXACTLY_ONCE:
        problems.append(
            (
                ("strategy",),
                f"a strategy is only read with guarantee: exactly-once, not {spec.guarantee.value}",
            )
        )
    for index, sink in enumerate(spec.sinks):
        mode = spec.mode_of(sink)
        at: KeyPath = ("sinks", index)
        if mode is WriteMode.MERGE and isinstance(sink, ParquetSinkSpec):
            problems.append(((*at, "mode"), "Parquet files have no MERGE; use a Delta sink"))
        elif mode is WriteMode.MERGE and isinstance(sink, DeltaSinkSpec) and sink.merge is None:
            problems.append(
                (at, "a MERGE needs keys: add merge: {keys: [...]} to say which rows match")
            )
        if mode is not WriteMode.MERGE and isinstance(sink, DeltaSinkSpec) and sink.merge:
            problems.append(((*at, "merge"), f"merge: is only read with mode: merge, not {mode}"))
        if (
            spec.guarantee is Guarantee.EXACTLY_ONCE
            and isinstance(sink, ParquetSinkSpec)
            and mode is WriteMode.APPEND
        ):
            problems.append(
                (
                    at,
                    "exactly-once cannot guard a Parquet append: Parquet has no transaction "
                    "to carry the batch id, so a replay appends again. Use mode: replace-batch "
                    "or a Delta sink",
                )
            )
    return [_refusal(document, path, why) for path, why in problems]


def _refusal(document: Document, path: KeyPath, why: str) -> ConfigError:
    origin = document.origin_of(path)
    return ConfigError(
        "CONFIG_GUARANTEE_REFUSED",
        file=origin.file,
        line=origin.line,
        key=format_key_path(path),
        why=why,
    )

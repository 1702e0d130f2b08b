"""Combinations that cannot keep their promise, refused before Spark starts.

Field-level validation (types, required keys) is the models' job; these rules look across
fields: the job's guarantee against each sink's kind and write mode.
"""

from __future__ import annotations

from difflib import get_close_matches

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.config.models import (
    DeltaSinkSpec,
    Guarantee,
    JobSpec,
    ParquetSinkSpec,
    PostgresSinkSpec,
    WriteMode,
)
from onceflow.errors import ConfigError

__all__ = ["check_guarantee_rules", "check_secrets"]

#: Keys whose value is a credential: accepted only from ``${env:VAR}``.
SECRET_KEYS = frozenset({"password"})


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
        if isinstance(sink, PostgresSinkSpec):
            problems += _postgres_problems(spec, sink, mode, at)
            continue
        if mode is WriteMode.UPSERT:
            problems.append(((*at, "mode"), "upsert is a database mode; Delta has mode: merge"))
        if mode is WriteMode.MERGE and isinstance(sink, ParquetSinkSpec):
            problems.append(((*at, "mode"), "Parquet files have no MERGE; use a Delta sink"))
        elif mode is WriteMode.MERGE and isinstance(sink, DeltaSinkSpec) and sink.merge is None:
            problems.append(
                (at, "a MERGE needs keys: add merge: {keys: [...]} to say which rows match")
            )
        merge = sink.merge if isinstance(sink, DeltaSinkSpec) else None
        if merge is not None and "quarantine" in (merge.on_null_key, merge.on_duplicate_key):
            if spec.quality is None:
                problems.append(
                    ((*at, "merge"), "quarantining rows by key needs the job's quality: block")
                )
            elif sink.query:
                problems.append(
                    (
                        (*at, "merge"),
                        "rows can be quarantined by key only when the sink has no query: the "
                        "keys must be columns of the parsed record; use fail instead",
                    )
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


def _postgres_problems(
    spec: JobSpec, sink: PostgresSinkSpec, mode: WriteMode, at: KeyPath
) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    if sink.connection not in spec.connections:
        known = sorted(spec.connections)
        near = get_close_matches(sink.connection, known, n=1)
        hint = f"did you mean '{near[0]}'?" if near else f"known: {', '.join(known) or 'none'}"
        problems.append(
            ((*at, "connection"), f"no connection '{sink.connection}' under connections: {hint}")
        )
    if mode not in (WriteMode.APPEND, WriteMode.UPSERT):
        problems.append(((*at, "mode"), f"a PostgreSQL sink appends or upserts, not {mode}"))
    if mode is WriteMode.UPSERT and not sink.keys:
        problems.append((at, "an upsert needs keys: add keys: [...] (its ON CONFLICT target)"))
    if sink.update and mode is not WriteMode.UPSERT:
        problems.append(((*at, "update"), f"update: is only read with mode: upsert, not {mode}"))
    clashing = sorted(set(sink.update) & set(sink.keys))
    if clashing:
        problems.append(((*at, "update"), f"keys cannot be updated: {', '.join(clashing)}"))
    return problems


def check_secrets(document: Document, sensitive: set[KeyPath]) -> list[ConfigError]:
    """CONFIG_SECRET_LITERAL for every credential written into a file instead of read from
    ``${env:VAR}``; the error names the file, line and key, never the value."""
    errors: list[ConfigError] = []

    def visit(value: object, path: KeyPath) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, (*path, index))
        elif path and path[-1] in SECRET_KEYS and value is not None and path not in sensitive:
            origin = document.origin_of(path)
            errors.append(
                ConfigError(
                    "CONFIG_SECRET_LITERAL",
                    file=origin.file,
                    line=origin.line,
                    key=format_key_path(path),
                )
            )

    visit(document.data, ())
    return errors


def _refusal(document: Document, path: KeyPath, why: str) -> ConfigError:
    origin = document.origin_of(path)
    return ConfigError(
        "CONFIG_GUARANTEE_REFUSED",
        file=origin.file,
        line=origin.line,
        key=format_key_path(path),
        why=why,
    )

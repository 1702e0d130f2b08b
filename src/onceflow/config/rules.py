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
    KafkaSourceSpec,
    ParquetSinkSpec,
    PostgresSinkSpec,
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
            if sink.query:
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
    problems += _record_loss_problems(spec)
    problems += _overlapping_outputs(spec)
    return [_refusal(document, path, why) for path, why in problems]


def _record_loss_problems(spec: JobSpec) -> list[tuple[KeyPath, str]]:
    """``failOnDataLoss: false`` lets Spark skip offsets that retention deleted before the
    job read them: those records are lost. Only at-most-once allows that without saying so."""
    source = spec.source
    if not isinstance(source, KafkaSourceSpec):
        return []
    if source.accept_record_loss and source.failOnDataLoss:
        return [
            (
                ("source", "accept_record_loss"),
                "accept_record_loss is only read with failOnDataLoss: false",
            )
        ]
    if source.failOnDataLoss or source.accept_record_loss:
        return []
    if spec.guarantee is Guarantee.AT_MOST_ONCE:
        return []
    return [
        (
            ("source", "failOnDataLoss"),
            f"failOnDataLoss: false lets Spark skip records that Kafka's retention deleted "
            f"before the job read them, so they are lost, which {spec.guarantee.value} "
            "promises never to do. Keep failOnDataLoss: true (the job stops and names the "
            "lost offsets), or set accept_record_loss: true beside it to accept the loss",
        )
    ]


def _overlapping_outputs(spec: JobSpec) -> list[tuple[KeyPath, str]]:
    """Two outputs in one folder mix their files: a Delta log inside another table, a
    quarantine appended into a sink, a checkpoint inside a table that a replace-batch or
    a VACUUM rewrites. Every pair of the checkpoint, the file sinks and the quarantine
    must be apart: neither the same path nor one inside the other."""
    places: list[tuple[KeyPath, str, str]] = [(("checkpoint",), "the checkpoint", spec.checkpoint)]
    for index, sink in enumerate(spec.sinks):
        if not isinstance(sink, PostgresSinkSpec):
            places.append((("sinks", index, "path"), f"sink '{sink.name}'", sink.path))
    quarantine = spec.quarantine_sink()
    if quarantine is not None:
        places.append((("quality", "quarantine"), "the quarantine table", quarantine.path))
    problems: list[tuple[KeyPath, str]] = []
    for later, place in enumerate(places):
        for earlier in places[:later]:
            # the key reported is the inner one (of the same folder, the later one)
            inner, outer = (earlier, place) if _inside(earlier[2], place[2]) else (place, earlier)
            if inner[2].rstrip("/") == outer[2].rstrip("/"):
                relation = "in the same folder as"
            elif _inside(inner[2], outer[2]):
                relation = "inside"
            else:
                continue
            problems.append(
                (inner[0], f"{inner[1]} ({inner[2]}) is {relation} {outer[1]} ({outer[2]}); "
                 "give each its own folder")
            )  # fmt: skip
    return problems


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` lies strictly inside ``folder``."""
    return path.rstrip("/").startswith(folder.rstrip("/") + "/")


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


def _refusal(document: Document, path: KeyPath, why: str) -> ConfigError:
    origin = document.origin_of(path)
    return ConfigError(
        "CONFIG_GUARANTEE_REFUSED",
        file=origin.file,
        line=origin.line,
        key=format_key_path(path),
        why=why,
    )

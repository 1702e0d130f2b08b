"""The kinds of sources and sinks a job may name, and what each of them can do.

A kind is declared once, in its own module: ``SOURCE = SourceKind(...)`` or
``SINK = SinkKind(...)``: its spec model, what it supports, and where its Spark side lives.
onceflow's own kinds and those of any installed package are collected by ``kinds()``; a
package adds one with an entry point in the group ``onceflow.sources`` or
``onceflow.sinks`` naming its declaration::

    [project.entry-points."onceflow.sinks"]
    jsonl = "mypackage.jsonl_sink:SINK"

Everything that depends on a kind asks its declaration here (config rules, the runner,
storage checks, status, replay, prove), never ``isinstance``. A declaration imports no
Spark: what needs Spark (a reader, a sink, a status probe) is named as ``"module:name"``
and imported when first used, so validating a job never loads Spark.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from onceflow.config.modes import MODE_OF_STRATEGY, Strategy, WriteMode
from onceflow.config.specs import SinkSpec, SourceSpec

if TYPE_CHECKING:
    from onceflow.config.documents import KeyPath
    from onceflow.config.job import JobSpec
    from onceflow.config.quality import RuleSpec

__all__ = [
    "BUILTIN_SINKS",
    "BUILTIN_SOURCES",
    "Kinds",
    "Problem",
    "RawFormat",
    "SinkKind",
    "SourceKind",
    "kinds",
    "load_reference",
]

#: A rule a kind finds broken: the key path under the sink (or source) and why.
Problem = tuple["KeyPath", str]

#: onceflow's own kinds, found even where the package's entry points are not installed
#: (a zip shipped with ``--py-files``).
BUILTIN_SOURCES = (
    "onceflow.sources.files:SOURCE",
    "onceflow.sources.delta:SOURCE",
    "onceflow.sources.kafka:SOURCE",
)
BUILTIN_SINKS = (
    "onceflow.sinks.delta:SINK",
    "onceflow.sinks.parquet:SINK",
    "onceflow.sinks.postgres:SINK",
    "onceflow.sinks.kafka:SINK",
)


@dataclass(frozen=True)
class RawFormat:
    """How onceflow parses a source's raw records: ``json`` or ``csv`` with the source's
    schema (Spark DDL) and reader options (``sep``, ``header``, ...)."""

    format: str
    schema: str
    options: Mapping[str, str] = field(default_factory=dict)


def _no_problems(spec: Any, job: JobSpec) -> list[Problem]:
    return []


def _no_rules(spec: Any, job: JobSpec) -> tuple[RuleSpec, ...]:
    return ()


def _never_raw(spec: Any) -> RawFormat | None:
    return None


@dataclass(frozen=True)
class SourceKind:
    """A kind of source.

    Attributes:
        name: the ``kind:`` a job names it by; ``spec.kind`` is ``Literal[name]``.
        spec: its model.
        reader: ``"module:function"``, ``(spark, spec) -> DataFrame``: the typed stream.
        raw_reader: ``"module:function"``, ``(spark, spec) -> DataFrame``: the records
            unparsed, with their coordinates (``onceflow.sources.raw``'s columns).
        raw_format: ``spec -> RawFormat | None``: how onceflow parses them, or None.
        replayable: a replay of a batch reads the same records (Spark's contract).
        file_backed: it reads a folder or table at ``spec.location``, which must exist
            before the job starts (``validate --deep`` and ``run`` check it).
        lag: ``"module:function"``, ``(spark, spec, checkpoint, last_planned) -> dict |
            None``: how far the source is ahead, asked now (``onceflow status``).
        failure: ``"module:function"``, ``(spark, spec, job, text) -> OnceflowError |
            None``: a query failure the kind can name better.
        replay_shape: ``"module:function"``, ``(frame, spec) -> DataFrame``: quarantine rows
            (the raw columns) given the extra columns the kind's raw stream has.
        feed: ``"module:function"``, ``(spec, lines, place) -> list[str]``: write the given
            JSON lines where the source reads them, return the overrides that point the
            job there (prove's workload, ``onceflow.testing.run_job``'s rows).
        rules: ``(spec, job) -> [(key path under source, why)]``: combinations it refuses.
        title: its name in messages ("Kafka").
    """

    name: str
    spec: type[SourceSpec]
    reader: str
    title: str = ""
    raw_reader: str | None = None
    raw_format: Callable[[Any], RawFormat | None] = _never_raw
    replayable: bool = True
    file_backed: bool = False
    lag: str | None = None
    failure: str | None = None
    replay_shape: str | None = None
    feed: str | None = None
    rules: Callable[[Any, JobSpec], list[Problem]] = _no_problems


def _no_keys(spec: Any) -> tuple[str, ...]:
    return ()


def _by_strategy(spec: Any, strategy: Strategy | None) -> WriteMode:
    """The mode the job's exactly-once ``strategy`` implies, else append."""
    return MODE_OF_STRATEGY[strategy] if strategy is not None else WriteMode.APPEND


@dataclass(frozen=True)
class SinkKind:
    """A kind of sink.

    Attributes:
        name: the ``kind:`` a job names it by; ``spec.kind`` is ``Literal[name]``.
        spec: its model.
        build: ``"module:name"``, ``(job, spec, mode) -> BatchSink`` (a class will do).
        modes: the write modes it has.
        guarded_modes: the modes in which it keeps exactly-once (a replayed batch id
            harmless); exactly-once refuses the others.
        replayable_modes: the modes in which a quarantine replay can write it exactly once
            with its own guard ids (not keyed by the stream's batch ids).
        default_mode: ``(spec, strategy) -> WriteMode`` for a sink that names none (by
            default the mode the job's strategy implies, else append).
        file_backed: a folder on a file system (storage checks, the folders rule).
        single_writer_on_s3: one writing driver at a time on S3 (a lock beside it).
        read_format: the Spark data source any reader of it uses (``spark.read.format``),
            or None when it is read another way (a database table).
        rules: ``(spec, job) -> [(key path under the sink, why)]``: combinations it refuses.
        quality_rules: ``(spec, job) -> rules`` its settings imply for the quality stage.
        isolate: ``"module:function"``, ``(job, spec, tag) -> [override]``: give a prove
            scenario its own copy of the sink (a database table of its own), emptied.
        match_keys: ``(spec) -> columns``: what a keyed mode (a MERGE, an upsert) matches
            a row on; empty when the sink names none.
        deep_check: ``"module:function"``, ``(spark, spec, target, batch) -> [(key path
            under the sink, reason)]``: the SQL of its own settings that Spark cannot analyse
            against the table's columns (``target``) and a shaped, empty batch
            (``validate --deep`` and ``run``; a Delta MERGE's clauses).
        title: its name in messages ("PostgreSQL").
        mode_hint: said when a job names a mode the kind has not.
        guard_hint: said when exactly-once asks for a mode the kind cannot guard.
    """

    name: str
    spec: type[SinkSpec]
    build: str
    modes: frozenset[WriteMode]
    guarded_modes: frozenset[WriteMode]
    title: str = ""
    mode_hint: str = ""
    guard_hint: str = ""
    replayable_modes: frozenset[WriteMode] = frozenset()
    default_mode: Callable[[Any, Strategy | None], WriteMode] = _by_strategy
    file_backed: bool = True
    single_writer_on_s3: bool = False
    read_format: str | None = None
    rules: Callable[[Any, JobSpec], list[Problem]] = _no_problems
    quality_rules: Callable[[Any, JobSpec], tuple[RuleSpec, ...]] = _no_rules
    isolate: str | None = None
    deep_check: str | None = None
    match_keys: Callable[[Any], tuple[str, ...]] = _no_keys


@cache
def load_reference(reference: str) -> Any:
    """The object ``"package.module:name"`` names, imported on first use."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


class Kinds:
    """The source and sink kinds a job may name."""

    def __init__(self, sources: list[SourceKind], sinks: list[SinkKind]) -> None:
        self.sources: dict[str, SourceKind] = _by_name(sources, "source")
        self.sinks: dict[str, SinkKind] = _by_name(sinks, "sink")

    def source(self, name: str) -> SourceKind:
        return self.sources[name]

    def sink(self, name: str) -> SinkKind:
        return self.sinks[name]


def _by_name(declared: list[Any], what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for kind in declared:
        tag = kind.spec.model_fields["kind"].annotation
        if getattr(tag, "__args__", None) != (kind.name,):
            raise TypeError(f"{what} kind {kind.name!r}: its spec's kind must be "
                            f"Literal[{kind.name!r}], not {tag}")  # fmt: skip
        if kind.name in found and found[kind.name] is not kind:
            raise TypeError(f"two {what} kinds are named {kind.name!r}")
        found[kind.name] = kind
    return found


@cache
def kinds() -> Kinds:
    """Every kind: onceflow's own and the installed packages' entry points, loaded once."""
    sources = [load_reference(ref) for ref in BUILTIN_SOURCES]
    sinks = [load_reference(ref) for ref in BUILTIN_SINKS]
    for group, found in (("onceflow.sources", sources), ("onceflow.sinks", sinks)):
        for entry in entry_points(group=group):
            if f"{entry.module}:{entry.attr}" not in (*BUILTIN_SOURCES, *BUILTIN_SINKS):
                found.append(entry.load())
    return Kinds(sources, sinks)

"""The typed, frozen shape of a job: what ``load_job`` returns and everything else reads.

Its ``source`` and ``sinks`` are validated against the specs of the registered kinds
(``onceflow.config.kinds``); what depends on a kind (a sink's default mode, the rules its
keys imply, whether onceflow parses the source) is asked of the kind. Relative paths have
been resolved against ``storage.root`` when a model is built.
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal, Union

from pydantic import Field, create_model, field_validator, model_validator

from onceflow.config.common import JOB_NAME_PATTERN, Model, as_str_map, refuse_repeats
from onceflow.config.connections import PostgresConnection
from onceflow.config.joins import JoinSpec, JoinStreamSpec
from onceflow.config.kinds import Kinds, RawFormat, kinds
from onceflow.config.modes import Guarantee, Strategy, WriteMode
from onceflow.config.quality import QualityParser, QualitySpec, RuleAction, RuleSpec
from onceflow.config.specs import SinkSpec, SourceSpec
from onceflow.config.stateful import AggregateSpec, DedupSpec, StateSettings, WatermarkSpec

__all__ = [
    "FUNCTION_PATTERN",
    "QUARANTINE_KIND",
    "JobSpec",
    "LockSettings",
    "SparkSettings",
    "StorageSettings",
    "TransformSpec",
    "TriggerSpec",
    "job_model",
]

#: The kind of sink a job's quarantine table is: a Delta table, appended to.
QUARANTINE_KIND = "delta"
QUARANTINE_NAME = "_quarantine"


#: ``package.module:function``: a function onceflow imports (from the project folder too).
FUNCTION_PATTERN = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$"


class TransformSpec(Model):
    """What the job does to its rows before the sinks.

    On the stream, after the watermark and dedup and before ``aggregate``: ``sql`` (a
    statement over the stream as the temp view ``{stream}``), then ``python`` (a function
    from DataFrame to DataFrame). Rows onceflow could not parse skip them, to the
    quarantine. On each batch, in the writer: ``where`` (a rule: what it filters out is
    counted as dropped), ``select``, then ``batch_python``, a function of the batch's good
    rows and its batch id. Each must be deterministic: a replayed batch must give the same
    rows.
    """

    sql: str | None = None
    """A SQL statement over the stream, which it names ``{stream}`` (``SELECT *, amount * 100
    AS cents FROM {stream}``); applied to the stream once, when the query starts."""
    python: str | None = Field(default=None, pattern=FUNCTION_PATTERN)
    """``package.module:function``, a function from DataFrame to DataFrame applied to the
    stream once, when the query starts; its module is shipped to a cluster's executors."""
    batch_python: str | None = Field(default=None, pattern=FUNCTION_PATTERN)
    """``package.module:function`` called with each batch's good rows and the batch id
    ``(DataFrame, int) -> DataFrame``, in the writer, before the sinks."""
    where: str | None = None
    """A SQL filter applied to each row. What it filters out is counted as dropped, by the name
    ``transform_where``."""
    select: tuple[str, ...] = ()
    """SQL expressions that shape each row, applied after ``where`` (``to_date(event_time) AS
    event_date``)."""


class LockSettings(Model):
    """How a running job keeps its checkpoint lock (and its table locks on S3) known as its own.

    The owner rewrites the lock every ``heartbeat_seconds``. A lock whose heartbeat is older
    than ``stale_after_seconds`` is taken over by the next start (on the same host at once,
    when the owner's process is gone); an owner that could not renew its lock for that long,
    or finds it taken over, stops before its next sink write.
    """

    heartbeat_seconds: float = Field(default=10.0, gt=0)
    """How often, in seconds, the running job rewrites its lock."""
    stale_after_seconds: float = Field(default=60.0, gt=0)
    """How old, in seconds, a lock's last heartbeat must be before another start takes it over;
    at least 3 heartbeats."""

    @model_validator(mode="after")
    def _several_beats_per_window(self) -> LockSettings:
        if self.stale_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                "stale_after_seconds must be at least 3 x heartbeat_seconds, so that one late "
                "heartbeat never makes a live owner's lock look stale"
            )
        return self


class TriggerSpec(Model):
    """Exactly one of ``available_now: true``, ``once: true``, ``processing_time: 10 seconds``."""

    available_now: bool = False
    """Drain what the source holds now, in batches within its per-trigger limits, then stop."""
    once: bool = False
    """Read everything the source holds now in one batch, then stop."""
    processing_time: str | None = None
    """Start a batch every interval (``10 seconds``) and run until stopped."""

    @model_validator(mode="after")
    def _exactly_one(self) -> TriggerSpec:
        chosen = [self.available_now, self.once, self.processing_time is not None]
        if sum(chosen) != 1:
            raise ValueError(
                "set exactly one of available_now: true, once: true, processing_time: '<interval>'"
            )
        return self


class SparkSettings(Model):
    """How the SparkSession is built. Usually set by a profile in ``conf/``."""

    master: str | None = None
    """Spark's master URL (``local[2]``, ``spark://host:7077``, ``yarn``); spark-submit's
    ``--master`` wins over it."""
    app_name: str | None = None
    """The Spark application's name; default ``onceflow:<job name>``."""
    jars_dir: str = ".jars/spark"
    """Where ``make jars`` put the JVM jars, relative to the project folder."""
    class_data_sharing: bool = True
    """A driver JVM that onceflow launches maps the class-data-sharing archive of Spark's
    classes that ``make setup`` dumps (``<jars_dir>/../cds/spark.jsa``), when there is one,
    and starts faster; ``false`` starts it without."""
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "WARN"
    """Spark's log level."""
    log_levels: dict[str, Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"]] = Field(
        default_factory=dict
    )
    """Levels of single JVM loggers, by name, over ``log_level``: the local profiles quiet
    Spark's warnings that ask nothing of the user (``org.apache.spark...ProcessingTimeExecutor:
    ERROR``)."""
    conf: dict[str, str] = Field(default_factory=dict)
    """Spark settings (``spark.sql.shuffle.partitions: 4``), handed to the session as strings."""

    _strings = field_validator("conf", mode="before")(as_str_map)


class StorageSettings(Model):
    """Where relative paths of the job live: a local folder, ``hdfs://...`` or ``s3a://...``."""

    root: str = "."
    """Where the job's relative paths live: a folder (relative to the project folder),
    ``hdfs://...`` or ``s3a://...``."""


class JobSpec(Model):
    """One streaming job: a source, optional row shaping, one or more sinks, a checkpoint.

    Build it with ``load_job`` (or ``job_model()``): this class types ``source`` and
    ``sinks`` by the base specs only; the model ``load_job`` validates with knows every
    registered kind's own.
    """

    name: str = Field(pattern=JOB_NAME_PATTERN)
    """The job's name: its streaming query's name and the prefix of its Spark app name. Letters,
    digits, ``_ . -``."""
    description: str = ""
    """Free text."""
    source: SourceSpec
    """What the job reads. Its ``kind`` picks which other keys are allowed."""
    transform: TransformSpec = TransformSpec()
    """What the job does to its rows: ``sql`` and ``python`` on the stream; ``where``,
    ``select`` and ``batch_python`` on each batch."""
    watermark: WatermarkSpec | None = None
    """The stream's event-time column and how late an event may arrive: bounds the state
    the stateful keys keep."""
    dedup: DedupSpec | None = None
    """Drop records whose keys were already seen, across batches and restarts (state in the
    checkpoint)."""
    join: JoinSpec | None = None
    """Enrich the stream by keys: with a Delta table's rows, at one version of the table per
    batch (recorded, so a replay joins the same rows), or with a second stream, as both
    sides arrive (state in the checkpoint)."""
    aggregate: AggregateSpec | None = None
    """Aggregate per group, in event-time windows or over all time (state in the
    checkpoint): ``output: update`` into MERGE sinks, ``append`` into append sinks."""
    state: StateSettings = StateSettings()
    """Where a stateful job's state store keeps its state (RocksDB by default)."""
    quality: QualitySpec = QualitySpec()
    """Parsing, expectations and the quarantine table; on in every job."""
    sinks: tuple[SinkSpec, ...] = Field(min_length=1)
    """One or more outputs, each written for every micro-batch. Each one's ``kind`` picks its
    keys."""
    connections: dict[str, PostgresConnection] = Field(default_factory=dict)
    """Database servers, by name; a sink names one with ``connection:``."""
    checkpoint: str
    """The query's checkpoint folder: its offsets and commits, and onceflow's app id, claims,
    lock and metrics. One per job, never shared."""
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    """What the job promises about each record after a crash anywhere."""
    strategy: Strategy | None = None
    """Exactly-once only: how a replayed batch is made harmless. It sets the default ``mode`` of
    the sinks."""
    on_foreign_sink: Literal["error", "continue"] = "error"
    """What a fresh checkpoint does against a sink another checkpoint wrote: stop (``error``) or
    write anyway (``continue``)."""
    retries: int = Field(default=3, ge=0, le=10)
    """How often a Delta conflict is retried (backoff 0.5 s, 1 s, 2 s, ...)."""
    trigger: TriggerSpec = TriggerSpec(available_now=True)
    """When batches run: exactly one of ``available_now``, ``once``, ``processing_time``."""
    locks: LockSettings = LockSettings()
    """The heartbeat of the checkpoint lock (and of the table locks on S3)."""
    spark: SparkSettings = SparkSettings()
    """How the SparkSession is built; usually set by a profile."""
    storage: StorageSettings = StorageSettings()
    """Where relative paths live; usually set by a profile."""

    @field_validator("sinks")
    @classmethod
    def _unique_sink_names(cls, sinks: tuple[SinkSpec, ...]) -> tuple[SinkSpec, ...]:
        refuse_repeats([sink.name for sink in sinks], "sink names must be unique")
        return sinks

    def mode_of(self, sink: SinkSpec) -> WriteMode:
        """The sink's own ``mode``, else the one its kind takes under the job's strategy."""
        if sink.mode is not None:
            return sink.mode
        return kinds().sink(sink.kind).default_mode(sink, self.strategy)

    @property
    def raw_format(self) -> RawFormat | None:
        """How onceflow parses the source's raw records (JSON or CSV, the schema), or None
        when it does not: the kind reads typed rows, or ``quality.parser: spark``."""
        if self.quality.parser is QualityParser.SPARK:
            return None
        return kinds().source(self.source.kind).raw_format(self.source)

    @property
    def parses_raw(self) -> bool:
        """True when onceflow reads the source raw and parses it itself."""
        return self.raw_format is not None

    @property
    def is_stateful(self) -> bool:
        """True when the stream keeps state across batches (``dedup``, ``aggregate``, a
        stream join), in the checkpoint."""
        return self.dedup is not None or self.aggregate is not None or self.stream_join is not None

    @property
    def stream_join(self) -> JoinStreamSpec | None:
        """The second stream of a stream-stream ``join``; None without one."""
        return self.join.stream if self.join is not None else None

    @property
    def join_raw_format(self) -> RawFormat | None:
        """How onceflow parses the second stream's raw records, as ``raw_format`` does the
        source's; None without a stream join or when its kind reads typed rows."""
        other = self.stream_join
        if other is None or self.quality.parser is QualityParser.SPARK:
            return None
        return kinds().source(other.source.kind).raw_format(other.source)

    @property
    def windows(self) -> bool:
        """True when the job aggregates in event-time windows: a row without an event time
        fits none, and is quarantined."""
        return self.aggregate is not None and self.aggregate.window is not None

    @property
    def window_column(self) -> str | None:
        """The event-time column of the aggregate's window: its own, else the watermark's."""
        window = self.aggregate.window if self.aggregate is not None else None
        if window is None:
            return None
        if window.column is not None:
            return window.column
        return self.watermark.column if self.watermark is not None else None

    @property
    def transforms_stream(self) -> bool:
        """True when the stream itself is shaped (``transform.sql`` or ``.python``)."""
        return self.transform.sql is not None or self.transform.python is not None

    @property
    def dedups_within_watermark(self) -> bool:
        """``dedup.within_watermark``, defaulting to whether the job has a watermark."""
        if self.dedup is None or self.dedup.within_watermark is None:
            return self.watermark is not None
        return self.dedup.within_watermark

    @property
    def parses_in_stream(self) -> bool:
        """True when onceflow parses the source in the stream, before the stateful keys and
        the stream's transforms (which need typed columns), rather than batch by batch in
        the quality stage."""
        return self.parses_raw and (self.is_stateful or self.transforms_stream)

    def key_rules(self) -> tuple[RuleSpec, ...]:
        """The rules the sinks' kinds imply (a Delta MERGE's ``on_null_key`` or
        ``on_duplicate_key: quarantine``), judged with the job's own rules."""
        rules: list[RuleSpec] = []
        for sink in self.sinks:
            rules += kinds().sink(sink.kind).quality_rules(sink, self)
        return tuple(rules)

    @property
    def judges_records(self) -> bool:
        """True when every batch goes through the quality stage: onceflow parses the source,
        a window may find rows without an event time, or rules (the job's, its sinks'
        kinds', its ``transform.where``) can drop, quarantine or fail a record, which is
        then counted by name."""
        return bool(
            self.parses_raw
            or self.join_raw_format is not None
            or self.windows
            or self.quality.rules
            or self.key_rules()
            or self.transform.where
        )

    def quarantine_sink(self) -> SinkSpec | None:
        """The quarantine table as a sink (a Delta append), when records can end there: the
        source is parsed by onceflow, a window may find rows without an event time, or a
        rule quarantines."""
        rules = (*self.quality.rules, *self.key_rules())
        quarantining = (
            self.parses_raw
            or self.join_raw_format is not None  # a second stream's record that did not parse
            or self.windows  # a row without an event time
            or any(r.action is RuleAction.QUARANTINE for r in rules)
        )
        if not quarantining or self.quality.quarantine is None:
            return None
        spec = kinds().sink(QUARANTINE_KIND).spec
        return spec.model_validate(
            {
                "kind": QUARANTINE_KIND,
                "name": QUARANTINE_NAME,
                "path": self.quality.quarantine,
                "mode": WriteMode.APPEND,
            }
        )

    @property
    def outputs(self) -> tuple[SinkSpec, ...]:
        """Every table the job writes: its sinks, then its quarantine table if it has one."""
        quarantine = self.quarantine_sink()
        return (*self.sinks, *([quarantine] if quarantine is not None else []))


def job_model(registry: Kinds | None = None) -> type[JobSpec]:
    """``JobSpec`` with ``source`` and ``sinks`` validated against the spec of every kind of
    ``registry`` (``kinds()`` by default), discriminated on ``kind``."""
    return _job_model(registry or kinds())


@cache
def _job_model(registry: Kinds) -> type[JobSpec]:
    def union(specs: list[type[Any]]) -> Any:
        if len(specs) == 1:
            return specs[0]
        return Annotated[Union[tuple(specs)], Field(discriminator="kind")]  # noqa: UP007

    source = union([kind.spec for kind in registry.sources.values()])
    sink = union([kind.spec for kind in registry.sinks.values()])

    def described(model: type[Model], name: str) -> Any:
        return Field(description=model.model_fields[name].description)

    # a stream join's second source is validated against the same kinds as the job's
    other: Any = create_model(  # Any, as a union above: a model made here, unknown to mypy
        "JoinStreamSpec",
        __base__=JoinStreamSpec,
        __module__=JoinStreamSpec.__module__,
        source=(source, described(JoinStreamSpec, "source")),
    )
    join: Any = create_model(
        "JoinSpec",
        __base__=JoinSpec,
        __module__=JoinSpec.__module__,
        stream=(
            other | None,
            Field(default=None, description=JoinSpec.model_fields["stream"].description),
        ),
    )
    model: type[JobSpec] = create_model(
        "JobSpec",
        __base__=JobSpec,
        __module__=JobSpec.__module__,
        # a field given anew loses the docstring JobSpec's own has
        source=(source, described(JobSpec, "source")),
        join=(
            join | None,
            Field(default=None, description=JobSpec.model_fields["join"].description),
        ),
        sinks=(
            tuple[sink, ...],  # type: ignore[valid-type]
            Field(min_length=1, description=JobSpec.model_fields["sinks"].description),
        ),
    )
    return model

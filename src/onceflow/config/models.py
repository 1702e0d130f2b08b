"""The typed, frozen shape of a job: what ``load_job`` returns and everything else reads.

Closed vocabularies are ``str`` enums; sources and sinks are discriminated on ``kind``.
Models forbid unknown keys, so a typo is an error (with a suggestion), never a silent default.
Relative paths have already been resolved against ``storage.root`` when a model is built.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = [
    "JOB_NAME_PATTERN",
    "MODE_OF_STRATEGY",
    "STRATEGY_OF_MODE",
    "DeltaSinkSpec",
    "DeltaSourceSpec",
    "FileFormat",
    "FileSourceSpec",
    "Guarantee",
    "JobSpec",
    "KafkaSourceSpec",
    "KafkaValueFormat",
    "LockSettings",
    "MatchedClause",
    "MergeSpec",
    "NotMatchedClause",
    "ParquetSinkSpec",
    "PostgresConnection",
    "PostgresSinkSpec",
    "QualityParser",
    "QualitySpec",
    "RuleAction",
    "RuleSpec",
    "SinkSpec",
    "SourceSpec",
    "SparkSettings",
    "StorageSettings",
    "Strategy",
    "TransformSpec",
    "TriggerSpec",
    "WriteMode",
]


#: A job's name: it names its query, its folders (the default quarantine) and its reports.
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def _as_str_map(value: Any) -> Any:
    """YAML reads ``maxFilesPerTrigger: 1`` as an int; Spark options are strings."""
    if isinstance(value, dict):
        return {
            str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
        }
    return value


class FileFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


class FileSourceSpec(_Model):
    """Files landing in a folder, read as a stream. A schema is required (no inference)."""

    kind: Literal["files"]
    format: FileFormat
    path: str
    schema_ddl: str = Field(alias="schema", min_length=1)
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)


class DeltaSourceSpec(_Model):
    """A Delta table read as a stream of its appends."""

    kind: Literal["delta"]
    path: str
    max_files_per_trigger: int | None = Field(default=None, ge=1)
    max_bytes_per_trigger: str | None = None
    starting_version: int | None = Field(default=None, ge=0)
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)


class KafkaValueFormat(StrEnum):
    JSON = "json"
    STRING = "string"
    BYTES = "bytes"


class KafkaSourceSpec(_Model):
    """Kafka topics read as a stream. Spark's own option names, unchanged.

    Exactly one of ``subscribe``, ``subscribePattern``, ``assign``. Client settings go in
    ``options`` with their ``kafka.`` prefix (``kafka.bootstrap.servers`` is required).
    Every row keeps ``kafka_topic``, ``kafka_partition``, ``kafka_offset`` and
    ``kafka_timestamp`` so it can be traced to its record.
    """

    kind: Literal["kafka"]
    subscribe: str | None = None
    subscribePattern: str | None = None
    assign: str | None = None
    startingOffsets: str | None = None
    startingOffsetsByTimestamp: str | None = None
    maxOffsetsPerTrigger: int | None = Field(default=None, ge=1)
    minOffsetsPerTrigger: int | None = Field(default=None, ge=1)
    maxTriggerDelay: str | None = None
    failOnDataLoss: bool = True
    # failOnDataLoss: false loses records; a job that promises no loss must say it accepts that
    accept_record_loss: bool = False
    minPartitions: int | None = Field(default=None, ge=1)
    includeHeaders: bool = False
    groupIdPrefix: str | None = None
    format: KafkaValueFormat = KafkaValueFormat.JSON
    schema_ddl: str | None = Field(default=None, alias="schema")
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)

    @field_validator("options")
    @classmethod
    def _client_options_only(cls, options: dict[str, str]) -> dict[str, str]:
        stray = sorted(key for key in options if not key.startswith("kafka."))
        if stray:
            raise ValueError(
                f"only kafka.* client options go here; {', '.join(stray)} must be set with "
                "their own key (subscribe, startingOffsets, ...)"
            )
        if "kafka.bootstrap.servers" not in options:
            raise ValueError("kafka.bootstrap.servers is required")
        return options

    @model_validator(mode="after")
    def _one_subscription_and_a_schema(self) -> KafkaSourceSpec:
        chosen = [self.subscribe, self.subscribePattern, self.assign]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError("set exactly one of subscribe, subscribePattern, assign")
        if self.format is KafkaValueFormat.JSON and not self.schema_ddl:
            raise ValueError("format: json needs a schema (Spark DDL) for the value")
        return self

    def spark_options(self) -> dict[str, str]:
        """Every option for ``readStream.format("kafka")``, as Spark names them."""
        typed = self.model_dump(
            exclude={"kind", "format", "schema_ddl", "options", "accept_record_loss"},
            exclude_none=True,
        )
        return {
            name: str(value).lower() if isinstance(value, bool) else str(value)
            for name, value in typed.items()
        } | self.options


SourceSpec = Annotated[
    FileSourceSpec | DeltaSourceSpec | KafkaSourceSpec, Field(discriminator="kind")
]


class TransformSpec(_Model):
    """Row-wise shaping of the stream before it reaches the sinks: filter, then project."""

    where: str | None = None
    select: tuple[str, ...] = ()


class RuleAction(StrEnum):
    """What a row that breaks an expectation becomes (a NULL result breaks it too)."""

    KEEP = "expect"  # kept, and counted
    DROP = "expect_or_drop"  # dropped, and counted
    QUARANTINE = "expect_or_quarantine"  # routed to the quarantine table
    FAIL = "expect_or_fail"  # stops the query, naming the rule and a sample row


class RuleSpec(_Model):
    """One expectation: a name and exactly one of the four keys, whose value is a SQL
    boolean expression over the parsed row: ``{name: positive, expect_or_drop: "amount > 0"}``.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    expect: str | None = None
    expect_or_drop: str | None = None
    expect_or_quarantine: str | None = None
    expect_or_fail: str | None = None

    @model_validator(mode="after")
    def _exactly_one_action(self) -> RuleSpec:
        given = [action for action in RuleAction if getattr(self, action.value) is not None]
        if len(given) != 1:
            raise ValueError(
                "set exactly one of expect, expect_or_drop, expect_or_quarantine, expect_or_fail"
            )
        return self

    @property
    def action(self) -> RuleAction:
        return next(a for a in RuleAction if getattr(self, a.value) is not None)

    @property
    def condition(self) -> str:
        condition: str = getattr(self, self.action.value)
        return condition


class QualityParser(StrEnum):
    """Who parses a JSON or CSV source: onceflow, accounting for every record, or Spark's
    own reader, which turns a record it cannot read into NULLs or skips it, uncounted."""

    ONCEFLOW = "onceflow"
    SPARK = "spark"


class QualitySpec(_Model):
    """Bad input never stops the stream and never vanishes, in every job.

    A JSON or CSV source (files, or a Kafka value) is read raw and parsed by onceflow unless
    ``parser: spark`` says otherwise: a record that does not parse or does not fit the schema
    (wrong type, missing ``required`` field, nesting where a scalar belongs, no field of the
    schema at all, invalid UTF-8, empty, over ``max_payload_bytes``) goes to the job's
    quarantine table with its raw payload, its source coordinates and the reason. ``rules``
    then judge the parsed rows, and the job's ``transform.where`` drops rows by name. Every
    batch's counts add up: input = good + dropped + quarantined. ``quarantine`` is the
    quarantine Delta table's path (default ``data/quarantine/<job name>`` under
    ``storage.root``). A job without a ``quality`` block gets all of this with no rules.
    """

    parser: QualityParser = QualityParser.ONCEFLOW
    required: tuple[str, ...] = ()
    max_payload_bytes: int = Field(default=1_048_576, ge=1)
    rules: tuple[RuleSpec, ...] = ()
    quarantine: str | None = None

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules: tuple[RuleSpec, ...]) -> tuple[RuleSpec, ...]:
        names = [rule.name for rule in rules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(repeated)}")
        return rules


class Guarantee(StrEnum):
    """What a job promises about each record after a crash anywhere."""

    AT_MOST_ONCE = "at-most-once"
    AT_LEAST_ONCE = "at-least-once"
    EXACTLY_ONCE = "exactly-once"


class Strategy(StrEnum):
    """How an exactly-once job makes a replayed batch harmless."""

    MERGE = "merge"
    TRANSACTIONAL = "transactional"
    REPLACE_BATCH = "replace-batch"


class WriteMode(StrEnum):
    """What a sink does with a batch: append it, MERGE it on keys, replace its batch, or
    (a database) upsert it on keys with ``INSERT ... ON CONFLICT``."""

    APPEND = "append"
    MERGE = "merge"
    REPLACE_BATCH = "replace-batch"
    UPSERT = "upsert"


#: The exactly-once strategy each write mode is guarded by. An upsert commits with the
#: batch's ledger row in one database transaction: it is transactional.
STRATEGY_OF_MODE: dict[WriteMode, Strategy] = {
    WriteMode.APPEND: Strategy.TRANSACTIONAL,
    WriteMode.MERGE: Strategy.MERGE,
    WriteMode.REPLACE_BATCH: Strategy.REPLACE_BATCH,
    WriteMode.UPSERT: Strategy.TRANSACTIONAL,
}
#: The write mode a job-wide ``strategy`` gives a sink that names none.
MODE_OF_STRATEGY: dict[Strategy, WriteMode] = {
    Strategy.TRANSACTIONAL: WriteMode.APPEND,
    Strategy.MERGE: WriteMode.MERGE,
    Strategy.REPLACE_BATCH: WriteMode.REPLACE_BATCH,
}


class MatchedClause(_Model):
    """``WHEN MATCHED [AND condition] THEN UPDATE SET ... | UPDATE SET * | DELETE``."""

    action: Literal["update_all", "update", "delete"]
    condition: str | None = None
    set: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _set_only_for_update(self) -> MatchedClause:
        if (self.action == "update") != bool(self.set):
            raise ValueError("'set' is required with action: update and allowed only there")
        return self


class NotMatchedClause(_Model):
    """``WHEN NOT MATCHED [AND condition] THEN INSERT (...) VALUES (...) | INSERT *``."""

    action: Literal["insert_all", "insert"]
    condition: str | None = None
    values: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _values_only_for_insert(self) -> NotMatchedClause:
        if (self.action == "insert") != bool(self.values):
            raise ValueError("'values' is required with action: insert and allowed only there")
        return self


class MergeSpec(_Model):
    """How a batch is merged into the target: on ``keys``, latest row per key by ``order_by``.

    In the clauses the target is ``t`` and the (deduplicated) batch is ``s``. A row with a
    NULL key would match nothing and be inserted on every run; several rows of one key would
    make Delta fail with "multiple source rows matched". So, by rule: ``on_null_key`` stops
    the batch naming a sample row (``fail``) or routes such rows to the quarantine
    (``quarantine``); ``on_duplicate_key`` keeps the ``latest`` row per key, or routes every
    row of a repeated key to the quarantine, or stops the batch. Quarantining needs the job's
    ``quality`` block and a sink without ``query`` (the keys are columns of the parsed record).
    """

    keys: tuple[str, ...] = Field(min_length=1)
    order_by: str | None = None
    on_null_key: Literal["fail", "quarantine"] = "fail"
    on_duplicate_key: Literal["latest", "quarantine", "fail"] = "latest"
    when_matched: tuple[MatchedClause, ...] = (MatchedClause(action="update_all"),)
    when_not_matched: tuple[NotMatchedClause, ...] = (NotMatchedClause(action="insert_all"),)
    schema_evolution: bool = False
    # add the batch's key range to the condition, so Delta skips target files outside it
    prune: bool = True


class _SinkBase(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    path: str
    mode: WriteMode | None = None
    query: str | None = None
    batch_id_column: str = "_batch_id"
    partition_by: tuple[str, ...] = ()
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)


class DeltaSinkSpec(_SinkBase):
    """A Delta table written by ``foreachBatch``: append, MERGE or replace-batch.

    ``query`` (optional) shapes the batch first, in SQL over ``{batch}``, e.g. an aggregate
    per account. ``schema`` (DDL) creates the table when it does not exist yet.
    """

    kind: Literal["delta"]
    merge: MergeSpec | None = None
    schema_ddl: str | None = Field(default=None, alias="schema")


class ParquetSinkSpec(_SinkBase):
    """Plain Parquet files: no transaction log, so no txn guard; append or replace-batch."""

    kind: Literal["parquet"]


_SQL_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


class PostgresConnection(_Model):
    """Where a PostgreSQL sink connects; named in the job's (or a profile's) ``connections``.

    ``password`` is accepted only from ``${env:VAR}`` (a literal is refused when the job is
    loaded) and is a ``SecretStr``, so no repr, log line or error can show it. ``options``
    are further libpq parameters (``sslmode``, ``application_name``, ...).
    """

    kind: Literal["postgres"] = "postgres"
    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    user: str = Field(min_length=1)
    password: SecretStr | None = None
    connect_timeout: int = Field(default=10, ge=1, le=600)
    options: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("options", mode="before")(_as_str_map)

    @field_validator("options")
    @classmethod
    def _no_credentials_in_options(cls, options: dict[str, str]) -> dict[str, str]:
        reserved = sorted(
            set(options) & {"host", "port", "dbname", "user", "password", "connect_timeout"}
        )
        if reserved:
            raise ValueError(f"set {', '.join(reserved)} with their own keys, not in options")
        return options

    @property
    def address(self) -> str:
        """``host:port/database``, for messages (never the user's password)."""
        return f"{self.host}:{self.port}/{self.database}"


class PostgresSinkSpec(_Model):
    """A PostgreSQL table written from ``foreachBatch``: ``append`` (INSERT) or ``upsert``
    (``INSERT ... ON CONFLICT (keys) DO UPDATE``), staged in parallel by the executors and
    moved into ``table`` together with a ledger row ``(app id, table, batch id)`` in one
    transaction on the driver.

    ``keys`` are the conflict target of an upsert, and the primary key of a table onceflow
    creates; an upsert keeps one row per key of each batch, the greatest ``order_by``.
    ``update`` gives the ``SET`` expressions of an upsert in PostgreSQL SQL (``t``
    is the target row, ``excluded`` the incoming one); by default every non-key column takes
    the incoming value. ``schema`` (Spark DDL) creates the table when it does not exist;
    without it the batch's own schema does.
    """

    kind: Literal["postgres"]
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    connection: str = Field(min_length=1)
    table: str = Field(pattern=rf"^({_SQL_NAME}\.)?{_SQL_NAME}$")
    mode: WriteMode | None = None
    query: str | None = None
    keys: tuple[str, ...] = ()
    order_by: str | None = None
    update: dict[str, str] = Field(default_factory=dict)
    schema_ddl: str | None = Field(default=None, alias="schema")
    ledger_table: str = Field(default="onceflow_batches", pattern=rf"^({_SQL_NAME}\.)?{_SQL_NAME}$")

    @property
    def path(self) -> str:
        """Where the sink writes, for messages: ``postgres:<connection>/<table>``."""
        return f"postgres:{self.connection}/{self.table}"


SinkSpec = Annotated[
    DeltaSinkSpec | ParquetSinkSpec | PostgresSinkSpec, Field(discriminator="kind")
]


class LockSettings(_Model):
    """How a running job keeps its checkpoint lock (and its table locks on S3) known as its own.

    The owner rewrites the lock every ``heartbeat_seconds``. A lock whose heartbeat is older
    than ``stale_after_seconds`` is taken over by the next start (on the same host at once,
    when the owner's process is gone); an owner that could not renew its lock for that long,
    or finds it taken over, stops before its next sink write.
    """

    heartbeat_seconds: float = Field(default=10.0, gt=0)
    stale_after_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _several_beats_per_window(self) -> LockSettings:
        if self.stale_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                "stale_after_seconds must be at least 3 x heartbeat_seconds, so that one late "
                "heartbeat never makes a live owner's lock look stale"
            )
        return self


class TriggerSpec(_Model):
    """Exactly one of ``available_now: true``, ``once: true``, ``processing_time: 10 seconds``."""

    available_now: bool = False
    once: bool = False
    processing_time: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> TriggerSpec:
        chosen = [self.available_now, self.once, self.processing_time is not None]
        if sum(chosen) != 1:
            raise ValueError(
                "set exactly one of available_now: true, once: true, processing_time: '<interval>'"
            )
        return self


class SparkSettings(_Model):
    """How the SparkSession is built. Usually set by a profile in ``conf/``."""

    master: str | None = None
    app_name: str | None = None
    jars_dir: str = ".jars/spark"
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "WARN"
    conf: dict[str, str] = Field(default_factory=dict)

    _strings = field_validator("conf", mode="before")(_as_str_map)


class StorageSettings(_Model):
    """Where relative paths of the job live: a local folder, ``hdfs://...`` or ``s3a://...``."""

    root: str = "."


class JobSpec(_Model):
    """One streaming job: a source, optional row shaping, one or more sinks, a checkpoint."""

    name: str = Field(pattern=JOB_NAME_PATTERN)
    description: str = ""
    source: SourceSpec
    transform: TransformSpec = TransformSpec()
    quality: QualitySpec = QualitySpec()
    sinks: tuple[SinkSpec, ...] = Field(min_length=1)
    connections: dict[str, PostgresConnection] = Field(default_factory=dict)
    checkpoint: str
    guarantee: Guarantee = Guarantee.AT_LEAST_ONCE
    strategy: Strategy | None = None
    on_foreign_sink: Literal["error", "continue"] = "error"
    retries: int = Field(default=3, ge=0, le=10)
    trigger: TriggerSpec = TriggerSpec(available_now=True)
    locks: LockSettings = LockSettings()
    spark: SparkSettings = SparkSettings()
    storage: StorageSettings = StorageSettings()

    @field_validator("sinks")
    @classmethod
    def _unique_sink_names(cls, sinks: tuple[SinkSpec, ...]) -> tuple[SinkSpec, ...]:
        names = [sink.name for sink in sinks]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"sink names must be unique; repeated: {', '.join(repeated)}")
        paths = [sink.path for sink in sinks]
        shared = sorted({path for path in paths if paths.count(path) > 1})
        if shared:
            raise ValueError(f"two sinks write the same path: {', '.join(shared)}")
        return sinks

    @property
    def parses_raw(self) -> bool:
        """True when onceflow reads the source raw and parses it itself: JSON or CSV files,
        JSON Kafka values, unless ``quality.parser: spark``."""
        if self.quality.parser is QualityParser.SPARK:
            return False
        source = self.source
        if isinstance(source, FileSourceSpec):
            return source.format in (FileFormat.JSON, FileFormat.CSV)
        return isinstance(source, KafkaSourceSpec) and source.format is KafkaValueFormat.JSON

    @property
    def judges_records(self) -> bool:
        """True when every batch goes through the quality stage: onceflow parses the source,
        or rules (the job's, its MERGE keys', its ``transform.where``) can drop, quarantine
        or fail a record, which is then counted by name."""
        return bool(
            self.parses_raw or self.quality.rules or self.key_rules() or self.transform.where
        )

    def quarantine_sink(self) -> DeltaSinkSpec | None:
        """The quarantine table as a sink (a Delta append), when records can end there: the
        source is parsed by onceflow, or a rule quarantines."""
        quarantining = self.parses_raw or any(
            rule.action is RuleAction.QUARANTINE
            for rule in (*self.quality.rules, *self.key_rules())
        )
        if not quarantining or self.quality.quarantine is None:
            return None
        return DeltaSinkSpec(
            kind="delta", name="_quarantine", path=self.quality.quarantine, mode=WriteMode.APPEND
        )

    def key_rules(self) -> tuple[RuleSpec, ...]:
        """The rules MERGE sinks imply for their keys (``on_null_key``, ``on_duplicate_key``
        set to ``quarantine``), judged with the job's own rules."""
        rules: list[RuleSpec] = []
        for sink in self.sinks:
            merge = sink.merge if isinstance(sink, DeltaSinkSpec) else None
            if merge is None or self.mode_of(sink) is not WriteMode.MERGE:
                continue
            keys = [f"`{key}`" for key in merge.keys]
            if merge.on_null_key == "quarantine":
                not_null = " AND ".join(f"{key} IS NOT NULL" for key in keys)
                rules.append(RuleSpec(name=f"{sink.name}_null_key", expect_or_quarantine=not_null))
            if merge.on_duplicate_key == "quarantine":
                unique = f"count(1) OVER (PARTITION BY {', '.join(keys)}) = 1"
                rules.append(
                    RuleSpec(name=f"{sink.name}_duplicate_key", expect_or_quarantine=unique)
                )
        return tuple(rules)

    @property
    def outputs(self) -> tuple[SinkSpec, ...]:
        """Every table the job writes: its sinks, then its quarantine table if it has one."""
        quarantine = self.quarantine_sink()
        return (*self.sinks, *([quarantine] if quarantine is not None else []))

    def mode_of(self, sink: SinkSpec) -> WriteMode:
        """The sink's own ``mode``, else the one the job's ``strategy`` implies, else append."""
        if sink.mode is not None:
            return sink.mode
        if isinstance(sink, PostgresSinkSpec):
            return WriteMode.APPEND  # its only exactly-once strategy is transactional anyway
        if self.strategy is not None:
            return MODE_OF_STRATEGY[self.strategy]
        return (
            WriteMode.MERGE
            if isinstance(sink, DeltaSinkSpec) and sink.merge
            else (WriteMode.APPEND)
        )

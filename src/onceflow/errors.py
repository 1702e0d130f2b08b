"""onceflow's errors: one hierarchy, one table of messages.

Every error carries a stable UPPER_SNAKE ``error_class`` and the parameters of its message,
as pyspark's ``errors/README.md`` does: a user can grep for the class, a test can match it,
and the wording lives in one place (``MESSAGES``) instead of being scattered over raise sites.

    >>> raise ConfigError("CONFIG_UNKNOWN_KEY", file="jobs/a.yaml", key="sinks[0].pth",
    ...                   line=7, suggestion="path")
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MESSAGES",
    "ConfigError",
    "GuaranteeError",
    "OnceflowError",
    "QualityError",
    "ServiceError",
    "SinkError",
    "SourceError",
    "StorageError",
    "TransformError",
    "first_line",
]

MESSAGES: dict[str, str] = {
    # config: loading, layering, interpolation, validation
    "CONFIG_FILE_NOT_FOUND": "{file}: no such file{hint}",
    "CONFIG_YAML_SYNTAX": "{file}:{line}: not valid YAML: {problem}",
    "CONFIG_NOT_A_MAPPING": "{file}: expected a mapping of keys at the top, found {found}",
    "CONFIG_DUPLICATE_KEY": "{file}:{line}: key '{key}' appears twice in the same file "
    "(first at line {first_line})",
    "CONFIG_NON_STRING_KEY": "{file}:{line}: key {key!r} is not a string",
    "CONFIG_ENV_UNSET": "{place}: '{key}' refers to ${{env:{var}}}, "
    "but the environment variable {var} is not set",
    "CONFIG_ENV_SYNTAX": "{place}: '{key}' has a malformed reference {ref!r}; "
    "write ${{env:NAME}} with NAME made of letters, digits and '_'",
    "CONFIG_BAD_OVERRIDE": "--set {override}: {problem}",
    "CONFIG_UNKNOWN_KEY": "{place}: unknown key '{key}'{suggestion}",
    "CONFIG_MISSING_KEY": "{place}: required key '{key}' is missing",
    "CONFIG_INVALID_VALUE": "{place}: '{key}' {problem}",
    "CONFIG_UNKNOWN_ENV": "no profile '{env}' in {conf_dir} (profiles there: {known})",
    "CONFIG_UNSUPPORTED": "{file}: {problem}",
    "CONFIG_GUARANTEE_REFUSED": "{place}: '{key}': {why}",
    "CONFIG_BAD_FUNCTION": "{place}: '{key}' names {reference}, which onceflow cannot use: "
    "{reason}",
    # given: "written out" (a file), or "given on the command line, where ..." (--set)
    "CONFIG_SECRET_LITERAL": "{place}: '{key}' names a secret, and its value is {given}; give "
    "it as ${{env:VAR}} so it lives only in the environment{how} (the value is not shown)",
    "CONFIG_NOT_A_FILE": "{file}: is a folder, not a job file{hint}",
    "CONFIG_NO_JOBS": "{folder}: no job files ({pattern}) in this folder",
    # found by Spark's own parser and analyser (validate --deep, and run before its query)
    "CONFIG_BAD_SCHEMA": "{place}: '{key}' is not a schema Spark can read: {reason}",
    "CONFIG_BAD_SQL": "{place}: '{key}' fails in Spark: {reason}",
    "CONFIG_BAD_INTERVAL": "{place}: '{key}' is not an interval Spark can read: {reason}",
    "CONFIG_INPUT_MISSING": "{place}: '{key}': {path} does not exist; point it at the "
    "job's input, or create that first",
    "CONFIG_SOURCE_UNREADABLE": "{place}: '{key}': Spark cannot read the source: {reason}",
    # sources and sinks
    "SOURCE_AUTH_FAILED": "job '{job}': {source} refused the job's credentials: {cause}. "
    "Check the user and the password variable the job's kafka.sasl.jaas.config names",
    "SOURCE_DATA_LOSS": "job '{job}': {source}: records the checkpoint still needs are gone "
    "from Kafka (aged out by retention, or the topic was deleted): {lost}. With "
    "failOnDataLoss: false the job skips them and reports how many",
    "KAFKA_PRODUCE_FAILED": "could not produce to Kafka topic '{topic}' at {bootstrap}: {cause}",
    # the job's own code (transform.python, transform.batch_python)
    "TRANSFORM_FAILED": "job '{job}': {key} {reference} failed {when}: {cause}",
    "SINK_WRITE_FAILED": "job '{job}': sink '{sink}' failed on batch {batch_id}: {cause}",
    "SINK_TABLE_MISMATCH": "job '{job}': sink '{sink}' at {path}: {problem}",
    "SINK_MERGE_KEY_REFUSED": "job '{job}': sink '{sink}' batch {batch_id}: the MERGE on "
    "({keys}) got {problem}; the batch stops (set on_null_key / on_duplicate_key to route such "
    "rows to the quarantine). A sample: {sample}",
    "SINK_UNREACHABLE": "job '{job}': sink '{sink}' cannot reach {address}: {cause}. Check "
    "that the database is up and that the connection's host and port are right",
    "SINK_AUTH_FAILED": "job '{job}': sink '{sink}': {address} refused user '{user}': {cause}. "
    "Check the user and the password variable connections.{connection}.password names",
    "SINK_TYPE_UNSUPPORTED": "job '{job}': sink '{sink}': column '{column}' has Spark type "
    "{spark_type}, which has no PostgreSQL mapping; cast it in the sink's query",
    # the Kafka sink under exactly-once (onceflow.sinks.kafka)
    "KAFKA_SINK_NO_TRANSACTIONS": "job '{job}': sink '{sink}': the broker at {bootstrap} "
    "cannot run a transaction for it: {cause}. Exactly-once into Kafka needs transactional "
    "ids: a broker that can keep its transaction log (transaction.state.log.replication.factor "
    "no more than its brokers) and, with an authorizer, WRITE on the TransactionalId "
    "'onceflow.' prefix for the job's user",
    "KAFKA_SINK_OPTION_REFUSED": "job '{job}': sink '{sink}': the Kafka client refused the "
    "sink's options: {cause}. Under exactly-once they configure librdkafka (confluent-kafka), "
    "which names most settings as Java does but not all (no buffer.memory, serializers or "
    "JKS trust stores: ssl.ca.location instead)",
    "KAFKA_SINK_TIMEOUT_TOO_LONG": "job '{job}': sink '{sink}': "
    "kafka.transaction.timeout.ms={timeout} is above the broker's transaction.max.timeout.ms "
    "({maximum}); lower it, or raise the broker's maximum",
    "KAFKA_SINK_PARTITIONS_CHANGED": "job '{job}': sink '{sink}': partitions is {now}, but "
    "the checkpoint {checkpoint} recorded {recorded}; a replayed batch would be cut into "
    "other parts and written again. Keep partitions: {recorded}, or start over with a new "
    "checkpoint",
    "KAFKA_SINK_CONTROL_TOPIC": "job '{job}': sink '{sink}': control topic '{topic}': {problem}",
    "KAFKA_SINK_MARKERS_LOST": "job '{job}': sink '{sink}': the control topic '{topic}' no "
    "longer holds the markers of batches this checkpoint committed ({missing}): it was "
    "deleted or truncated. Without them a replayed batch would be written again, so the job "
    "refuses to start. Restore the topic, or start over with a new checkpoint",
    "KAFKA_SINK_PART_FAILED": "job '{job}': sink '{sink}' batch {batch_id} part {part}: {cause}",
    # quality: parsing, expectations, quarantine
    "QUALITY_EXPECTATION_FAILED": "job '{job}': batch {batch_id}: {count} row(s) break {rule}; "
    "the query stops before writing anything of the batch. A sample row: {sample}",
    "QUALITY_RULE_INVALID": "job '{job}': rule '{rule}' ({condition}) cannot be evaluated on "
    "the parsed rows: {cause}",
    "QUALITY_REPLAY_REFUSED": "job '{job}': cannot replay its quarantine: {why}",
    "QUALITY_REPLAY_UNFINISHED": "job '{job}': replay {intent} of the quarantine read version "
    "{version} and did not finish; it cannot be finished now: {cause}. Its records may be in "
    "the sinks already, so it is not replayed again from a newer version. Restore that "
    "version's files (or the table) and run replay-quarantine again",
    "QUALITY_COUNTS_MISMATCH": "job '{job}': batch {batch_id}: input {input} rows, but good "
    "{good} + dropped {dropped} + quarantined {quarantined} = {total}; a row would vanish, "
    "so the batch is not written",
    # storage: checkpoints and tables on local disk, HDFS, S3A
    "STORAGE_UNREACHABLE": "job '{job}': cannot reach the {role} at {path}: {cause}. Check "
    "that the storage is up and the profile's endpoint is right; nothing was read or written",
    "STORAGE_ACCESS_DENIED": "job '{job}': the storage refused the job's credentials for the "
    "{role} at {path}: {cause}. Check the access key and secret variables the profile names",
    "STORAGE_FAILED": "job '{job}': storage failed while the query ran: {cause}. The "
    "checkpoint records only what completed: restart the job once the storage is back, and "
    "the batch in flight replays under the job's guarantee",
    # guarantees
    "GUARANTEE_FOREIGN_SINK": "job '{job}': sink '{sink}' at {path} already holds writes from "
    "app id(s) {other_ids}, but this checkpoint's app id is {app_id}. A new checkpoint "
    "against an existing sink would restart batch ids at 0, and the sink's guard (Delta's "
    "transaction ids, a database ledger) would silently skip them. Point the job at its "
    "old checkpoint, or set {opt_in} to write anyway.",
    "GUARANTEE_CHECKPOINT_LOCKED": "job '{job}': checkpoint {checkpoint} is in use by "
    "{holder} (last heartbeat {age}s ago). One checkpoint runs one query at a time: stop "
    "the other instance, or wait for its lock to go stale if it died on another host",
    "GUARANTEE_TABLE_LOCKED": "job '{job}': Delta table {checkpoint} on S3 is being written "
    "by {holder} (last heartbeat {age}s ago). Delta on S3 allows one writing driver per table "
    "(S3SingleDriverLogStore): two would overwrite each other's commits. Stop the other "
    "writer, or configure a multi-writer LogStore (io.delta.storage.S3DynamoDBLogStore)",
    "GUARANTEE_LOCK_LOST": "job '{job}': lost its lock on {what} ({why}). It stops before "
    "writing anything more: another instance may have taken over. Check with `onceflow "
    "status`, and restart this one once it runs alone",
    "GUARANTEE_APP_ID_INVALID": "{file} holds {found}, not an app id (a UUID). Every guarded "
    "write of the checkpoint is keyed by it, so it is never guessed: if the checkpoint has "
    "committed no batch, delete the file and start again; otherwise write back the app id "
    "its sinks' marks name (`onceflow status` lists them)",
    "GUARANTEE_CHECKPOINT_MISMATCH": "job '{job}': checkpoint {checkpoint} belongs to job "
    "'{owner}' ({differences}). A checkpoint records what its job read and wrote: another "
    "job on it would skip what that job read and never deliver it. Point the job at its own "
    "checkpoint, or adopt this one on purpose with `onceflow run --adopt-checkpoint` "
    "(run_job(..., adopt_checkpoint=True))",
    "GUARANTEE_STATE_INCOMPATIBLE": "job '{job}': checkpoint {checkpoint} holds the state of "
    "{recorded}, but this job has {mine}. Spark would misread that state or drop it "
    "silently, and records seen before would count as new. Put the stateful keys back as "
    "they were, or run the changed job on a new checkpoint (it reads its source again from "
    "the start, and its sinks must be new or written under exactly-once)",
    # runtime
    "JARS_MISSING": "no JVM jars in {jars_dir}: run `make jars` (it resolves them with Maven "
    "from jvm/spark/pom.xml) or point spark.jars_dir at a folder that has them",
    "QUERY_FAILED": "job '{job}': the streaming query stopped: {cause}",
    "SERVICE_START_FAILED": "{service} did not start within {timeout}s; last lines of "
    "{log}:\n{tail}",
}


class OnceflowError(Exception):
    """Base of every error onceflow raises on purpose.

    Args:
        error_class: a key of ``MESSAGES``; stable, safe to match on.
        **params: the message parameters; kept on ``self.params`` for programs.
    """

    def __init__(self, error_class: str, **params: Any) -> None:
        if error_class not in MESSAGES:
            raise KeyError(f"error_class {error_class!r} is not in onceflow.errors.MESSAGES")
        self.error_class = error_class
        self.params = params
        super().__init__(f"[{error_class}] {MESSAGES[error_class].format(**params)}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message: enough to say what broke, no stack."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ConfigError(OnceflowError):
    """A job or profile is invalid; raised before Spark starts.

    ``others`` holds further problems found in the same validation pass, so a user fixes
    them all in one go instead of one per run.
    """

    def __init__(self, error_class: str, **params: Any) -> None:
        # ``place`` is where the value was written: ``file:line``, the file alone when its
        # line is not known, or a command-line option (``--set key=...``, no line)
        if "file" in params and "place" not in params:
            line = params.get("line")
            params["place"] = f"{params['file']}:{line}" if line else str(params["file"])
        super().__init__(error_class, **params)
        self.others: list[ConfigError] = []


class TransformError(OnceflowError):
    """A function of the job's own (``transform.python``, ``.batch_python``) raised."""


class SourceError(OnceflowError):
    """A source could not be read."""


class SinkError(OnceflowError):
    """A sink could not be written, or does not match what the job declares."""


class QualityError(OnceflowError):
    """A batch breaks an ``expect_or_fail`` rule, a rule is invalid, or rows went missing."""


class StorageError(OnceflowError):
    """The storage of a checkpoint or a table cannot be reached, refuses access, or failed."""


class GuaranteeError(OnceflowError):
    """A delivery guarantee cannot be kept (or a crash was injected on purpose)."""


class ServiceError(OnceflowError):
    """A local dev/test service (Kafka, HDFS, ...) did not start or stop."""

"""The quality stage of a batch: parse, judge, count, and split into what the sinks get
and what the quarantine table gets.

Promise: every input row of a batch ends in exactly one of good, dropped or quarantined
(or the batch fails before anything is written); ``split`` checks that the counts add up
and refuses the batch otherwise. Everything is decided from the batch's rows alone, so a
replayed batch splits the same way (rules must be deterministic, as sink queries must).

    quality:
      required: [id, account, amount]
      max_payload_bytes: 65536
      rules:
        - {name: positive_amount, expect_or_quarantine: "amount > 0"}
        - {name: known_account, expect_or_drop: "account LIKE 'acct-%'"}
        - {name: recent, expect: "event_time > TIMESTAMP'2020-01-01'"}
        - {name: has_id, expect_or_fail: "id IS NOT NULL"}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from onceflow.config import JobSpec, RuleSpec, TransformSpec
from onceflow.errors import QualityError, first_line
from onceflow.quality.expectations import FATE, REASON, Fate, broke_column, classify
from onceflow.quality.parsing import RECORD, parse_raw
from onceflow.sources.raw import PARTITION, PAYLOAD, POSITION, SOURCE
from onceflow.transforms import apply_transform

__all__ = ["QUARANTINE_SCHEMA", "WHERE_RULE", "BatchCounts", "QualitySplit", "QualityStage"]

_log = logging.getLogger("onceflow.quality")

#: The quarantine table: one row per record that did not parse or broke a quarantine rule.
QUARANTINE_SCHEMA = (
    "payload STRING, raw BINARY, source STRING, partition INT, position BIGINT, "
    "batch_id BIGINT, reason STRING, quarantined_at TIMESTAMP"
)
_SAMPLE_CHARS = 500
#: The rule a job's ``transform.where`` becomes: rows it filters out are dropped by name.
WHERE_RULE = "transform_where"


@dataclass(frozen=True)
class BatchCounts:
    """Where a batch's rows went; ``violations`` counts every rule's broken rows."""

    batch_id: int
    input: int
    good: int
    dropped: int
    quarantined: int
    violations: dict[str, int] = field(default_factory=dict)

    def as_note(self) -> dict[str, object]:
        return {
            "input": self.input,
            "good": self.good,
            "dropped": self.dropped,
            "quarantined": self.quarantined,
            "violations": dict(self.violations),
        }


@dataclass(frozen=True)
class QualitySplit:
    """What the sinks write (``good``) and what the quarantine table gets."""

    good: DataFrame
    quarantined: DataFrame
    counts: BatchCounts


class QualityStage:
    """Parses (when onceflow reads the source raw) and judges each batch of one job."""

    def __init__(self, spec: JobSpec) -> None:
        self._job = spec.name
        self._spec = spec.quality
        self._raw = spec.raw_format
        # a stateful job's stream is parsed before its stateful keys (``parse``): its
        # batches arrive parsed, with the error column
        self._parsed_in_stream = spec.parses_in_stream
        where = (
            (RuleSpec(name=WHERE_RULE, expect_or_drop=spec.transform.where),)
            if spec.transform.where
            else ()
        )
        # the job's rules, then what MERGE keys imply, then the transform's filter, which
        # drops by name what it drops, so that every record is accounted for
        self._rules = (*spec.quality.rules, *spec.key_rules(), *where)
        self._select = TransformSpec(select=spec.transform.select)

    @classmethod
    def for_job(cls, spec: JobSpec) -> QualityStage | None:
        """The job's stage, or None when nothing can drop, quarantine or fail a record."""
        return cls(spec) if spec.judges_records else None

    def judged(self, batch: DataFrame) -> DataFrame:
        """``batch`` parsed (if raw) and classified: fate, reason, a column per rule."""
        return classify(self._parsed(batch), self._rules)

    def parse(self, frame: DataFrame) -> DataFrame:
        """``frame`` (raw records) plus the schema's typed columns and ``ERROR``, the
        reason a record did not parse (NULL when it did); ``frame`` as it is when onceflow
        does not parse the source. Never drops a row."""
        raw = self._raw
        if raw is None:
            return frame
        return parse_raw(frame, raw, self._spec.required, self._spec.max_payload_bytes)

    def _parsed(self, batch: DataFrame) -> DataFrame:
        if self._parsed_in_stream:
            return batch
        return self.parse(batch)

    def check_rules(self, sample: DataFrame) -> None:
        """Raise QUALITY_RULE_INVALID for a rule that cannot be evaluated on the parsed
        rows of ``sample`` (an empty batch of the source), before the query starts."""
        parsed = self._parsed(sample)
        for rule in self._rules:
            try:
                parsed.select(F.expr(rule.condition).cast("boolean")).schema  # noqa: B018
            except Exception as exc:
                raise QualityError(
                    "QUALITY_RULE_INVALID",
                    job=self._job,
                    rule=rule.name,
                    condition=rule.condition,
                    cause=first_line(exc),
                ) from None

    @contextmanager
    def split(self, batch: DataFrame, batch_id: int) -> Iterator[QualitySplit]:
        """Judge ``batch`` once (persisted), count, fail on an ``expect_or_fail`` rule,
        and yield what the sinks and the quarantine table get. Unpersists after."""
        judged = self.judged(batch).persist()
        try:
            counts, failed = self._count(judged, batch_id)
            if failed:
                reason, sample = (
                    judged.where(F.col(FATE) == Fate.FAILED)
                    .select(REASON, self._shown(judged))
                    .limit(1)
                    .collect()[0]
                )
                raise QualityError(
                    "QUALITY_EXPECTATION_FAILED",
                    job=self._job,
                    batch_id=batch_id,
                    count=failed,
                    rule=reason,
                    sample=str(sample)[:_SAMPLE_CHARS],
                )
            # the progress line carries the counts too; this line is for debugging a batch
            _log.debug(
                "%s", json.dumps({"job": self._job, "batch_id": batch_id, **counts.as_note()})
            )
            yield QualitySplit(self.good_rows(judged), self._quarantined(judged, batch_id), counts)
        finally:
            judged.unpersist()

    def _count(self, judged: DataFrame, batch_id: int) -> tuple[BatchCounts, int]:
        """The batch's counts and how many rows failed; QUALITY_COUNTS_MISMATCH when the
        fates do not add up to the input."""

        def fate_count(fate: str) -> Column:
            return F.sum(F.when(F.col(FATE) == fate, 1).otherwise(0))

        rules = self._rules
        row = judged.agg(
            F.count(F.lit(1)).alias("input"),
            fate_count(Fate.GOOD).alias("good"),
            fate_count(Fate.DROPPED).alias("dropped"),
            fate_count(Fate.QUARANTINED).alias("quarantined"),
            fate_count(Fate.FAILED).alias("failed"),
            *[F.sum(F.col(broke_column(rule)).cast("int")).alias(rule.name) for rule in rules],
        ).collect()[0]
        failed = int(row["failed"] or 0)
        total = int(row["good"] or 0) + int(row["dropped"] or 0) + int(row["quarantined"] or 0)
        counts = BatchCounts(
            batch_id=batch_id,
            input=int(row["input"]),
            good=int(row["good"] or 0),
            dropped=int(row["dropped"] or 0),
            quarantined=int(row["quarantined"] or 0),
            violations={rule.name: int(row[rule.name] or 0) for rule in rules},
        )
        if total + failed != counts.input:
            raise QualityError(
                "QUALITY_COUNTS_MISMATCH",
                job=self._job,
                batch_id=batch_id,
                input=counts.input,
                good=counts.good,
                dropped=counts.dropped,
                quarantined=counts.quarantined,
                total=total + failed,
            )
        return counts, failed

    def _internal(self, judged: DataFrame) -> list[str]:
        return [c for c in judged.columns if c.startswith("_onceflow_")]

    def _shown(self, judged: DataFrame) -> Column:
        """The record as it arrived: its payload, or its columns as JSON."""
        if PAYLOAD in judged.columns:
            return F.expr(f"make_valid_utf8({PAYLOAD})")
        data = [F.col(f"`{c}`") for c in judged.columns if not c.startswith("_onceflow_")]
        shown = F.to_json(F.struct(*data))
        # a row the stream set apart before reshaping it carries what it was
        return F.coalesce(F.col(RECORD), shown) if RECORD in judged.columns else shown

    def good_rows(self, judged: DataFrame) -> DataFrame:
        """The rows of a judged batch the sinks get: good, transformed, no internal columns."""
        good = judged.where(F.col(FATE) == Fate.GOOD).drop(*self._internal(judged))
        return apply_transform(good, self._select)  # its where is one of the rules

    def _quarantined(self, judged: DataFrame, batch_id: int) -> DataFrame:
        rows = judged.where(F.col(FATE) == Fate.QUARANTINED)
        payload = self._shown(judged)
        if PAYLOAD in judged.columns:
            raw = F.col(PAYLOAD).cast("binary")
            source, partition, position = F.col(SOURCE), F.col(PARTITION), F.col(POSITION)
        else:
            raw = F.lit(None).cast("binary")
            kafka = "kafka_topic" in judged.columns
            source = F.col("kafka_topic") if kafka else F.lit(None).cast("string")
            partition = F.col("kafka_partition") if kafka else F.lit(None).cast("int")
            position = F.col("kafka_offset") if kafka else F.lit(None).cast("bigint")
        return rows.select(
            payload.alias("payload"),
            raw.alias("raw"),
            source.cast("string").alias("source"),
            partition.cast("int").alias("partition"),
            position.cast("bigint").alias("position"),
            F.lit(batch_id).cast("bigint").alias("batch_id"),
            F.col(REASON).alias("reason"),
            F.current_timestamp().alias("quarantined_at"),
        )

"""The streaming DataFrame a job's ``foreachBatch`` receives: its source, read and shaped.

A stateless job hands its batches on raw when onceflow parses the source (the quality
stage parses, judges and counts each batch). A stateful job (``dedup``) is parsed in the
stream instead, since its keys need typed columns; rows that did not parse skip the
stateful keys (``onceflow.transforms.apply_stateful``) and reach the quality stage, parsed
already, to be quarantined there with their reason.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from onceflow.config import JobSpec
from onceflow.quality import ERROR, QualityStage
from onceflow.sources.read import read_job_stream
from onceflow.transforms import apply_stateful, apply_transform

__all__ = ["job_stream", "typed_stream"]


def typed_stream(spark: SparkSession, spec: JobSpec, stage: QualityStage | None) -> DataFrame:
    """The source's stream, parsed when a stateful job needs its columns typed; what the
    stateful keys are applied to."""
    frame = read_job_stream(spark, spec)
    if stage is not None and spec.parses_in_stream:
        return stage.parse(frame)
    return frame


def job_stream(spark: SparkSession, spec: JobSpec, stage: QualityStage | None = None) -> DataFrame:
    """The stream ``foreachBatch`` receives: the stateful keys applied, and the transform
    unless the quality stage applies it (its ``where`` is then a rule, so that what it
    filters is counted). ``stage`` is the job's quality stage when the caller built it
    already; its rules are checked against the stream's columns before anything starts.

    Raises:
        QualityError: QUALITY_RULE_INVALID for a rule the stream's rows cannot answer.
    """
    stage = stage if stage is not None else QualityStage.for_job(spec)
    frame = typed_stream(spark, spec, stage)
    if spec.is_stateful:
        unparsed = F.col(ERROR).isNotNull() if spec.parses_in_stream else None
        frame = apply_stateful(frame, spec, unparsed)
    if stage is None:
        return apply_transform(frame, spec.transform)
    stage.check_rules(spark.createDataFrame([], frame.schema))
    return frame

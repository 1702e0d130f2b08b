"""Quality settings of a job: who parses its records, the rules that judge them, where the
ones that do not fit go. Every job has them (a job without a ``quality`` block gets the
defaults); ``onceflow.quality`` carries them out."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from onceflow.config.common import Model, refuse_repeats

__all__ = ["QualityParser", "QualitySpec", "RuleAction", "RuleSpec"]


class RuleAction(StrEnum):
    """What a row that breaks an expectation becomes (a NULL result breaks it too)."""

    KEEP = "expect"  # kept, and counted
    DROP = "expect_or_drop"  # dropped, and counted
    QUARANTINE = "expect_or_quarantine"  # routed to the quarantine table
    FAIL = "expect_or_fail"  # stops the query, naming the rule and a sample row


class RuleSpec(Model):
    """One expectation: a name and exactly one of the four keys, whose value is a SQL
    boolean expression over the parsed row: ``{name: positive, expect_or_drop: "amount > 0"}``.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """The rule's name, unique in the job; its counts and errors use it."""
    expect: str | None = None
    """A SQL condition; a row that breaks it is kept, and counted."""
    expect_or_drop: str | None = None
    """A SQL condition; a row that breaks it is dropped, and counted."""
    expect_or_quarantine: str | None = None
    """A SQL condition; a row that breaks it goes to the quarantine table."""
    expect_or_fail: str | None = None
    """A SQL condition; a row that breaks it stops the query, naming the rule and a sample row."""

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


class QualitySpec(Model):
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
    """Who parses a JSON or CSV source: ``onceflow``, counting every record, or ``spark``
    (Spark's reader, which turns what it cannot read into NULLs or skips it, uncounted)."""
    required: tuple[str, ...] = ()
    """Fields of the schema a record must have; a record without one is quarantined."""
    max_payload_bytes: int = Field(default=1_048_576, ge=1)
    """A record larger than this many bytes is quarantined."""
    rules: tuple[RuleSpec, ...] = ()
    """Expectations that judge the parsed rows."""
    quarantine: str | None = None
    """The quarantine Delta table's path; default ``data/quarantine/<job name>`` under
    ``storage.root``."""

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, rules: tuple[RuleSpec, ...]) -> tuple[RuleSpec, ...]:
        refuse_repeats([rule.name for rule in rules], "rule names must be unique")
        return rules

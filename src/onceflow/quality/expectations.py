"""Expectations: SQL rules that judge each parsed row, and what a broken rule does to it.

``classify`` gives every row a fate: ``quarantined`` when it did not parse, else by the
most severe rule it breaks (``failed`` > ``quarantined`` > ``dropped``), else ``good``;
``expect`` rules never change a fate, they are only counted. A rule whose expression is
NULL for a row is broken by it: ``amount > 0`` with a NULL amount is a violation, not a pass.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from onceflow.config import RuleAction, RuleSpec
from onceflow.quality.parsing import ERROR

__all__ = ["FATE", "REASON", "Fate", "broke_column", "classify"]

FATE = "_onceflow_fate"
REASON = "_onceflow_reason"


class Fate:
    """The values of the fate column."""

    GOOD = "good"
    DROPPED = "dropped"
    QUARANTINED = "quarantined"
    FAILED = "failed"


_SEVERITY = (
    (RuleAction.FAIL, Fate.FAILED),
    (RuleAction.QUARANTINE, Fate.QUARANTINED),
    (RuleAction.DROP, Fate.DROPPED),
)


def broke_column(rule: RuleSpec) -> str:
    """The boolean column that says a parsed row breaks ``rule``."""
    return f"_onceflow_broke_{rule.name}"


def classify(frame: DataFrame, rules: tuple[RuleSpec, ...]) -> DataFrame:
    """``frame`` plus its fate, the reason for it, and one ``broke`` column per rule.

    Raises:
        pyspark's AnalysisException: a rule that cannot be evaluated on ``frame``'s columns.
    """
    has_error = ERROR in frame.columns  # typed rows (Spark parsed them) carry none
    parsed = F.col(ERROR).isNull() if has_error else F.lit(True)
    broke = {
        rule.name: parsed & ~F.coalesce(F.expr(rule.condition), F.lit(False)) for rule in rules
    }
    judged = frame.withColumns({broke_column(rule): broke[rule.name] for rule in rules})

    fate: Column = F.when(~parsed, F.lit(Fate.QUARANTINED))
    reason: Column = F.when(
        ~parsed, F.concat(F.lit("parse: "), F.col(ERROR) if has_error else F.lit(""))
    )
    for action, outcome in _SEVERITY:
        for rule in (r for r in rules if r.action is action):
            hit = F.col(broke_column(rule))
            fate = fate.when(hit, F.lit(outcome))
            reason = reason.when(hit, F.lit(f"rule {rule.name} ({action.value}: {rule.condition})"))
    return judged.withColumns({FATE: fate.otherwise(F.lit(Fate.GOOD)), REASON: reason})

"""The job's ``join``: each batch enriched with the rows of a Delta table, by keys.

join:
  table: data/tables/accounts    # a Delta table, under storage.root when relative
  on: [account]
  columns: ["balance", "payments AS account_payments"]
"""

from __future__ import annotations

from pydantic import Field, field_validator

from onceflow.config.common import Model, refuse_repeats

__all__ = ["TableJoinSpec"]


class TableJoinSpec(Model):
    """A stream-static join: each batch's good rows, left-joined on ``keys`` with a Delta
    table, read anew for every batch at one version of the table.

    The version a batch joined with is recorded in the checkpoint before the batch
    writes anything, so a replay of that batch joins with the same version and computes
    the same rows, whatever was committed to the table meanwhile (a replay that joined
    newer rows would give the sinks it writes again other values than the ones it wrote).
    The join is a left join: a row without a match keeps NULLs, and no row is lost
    uncounted. It runs in the writer, after the quality stage and any ``aggregate``,
    before ``transform.batch_python``.
    """

    table: str = Field(min_length=1)
    """The Delta table's path (under ``storage.root`` when relative)."""
    keys: tuple[str, ...] = Field(min_length=1)
    """The columns a row and the table's row must share the values of (not ``on``, which
    YAML reads as ``true``)."""
    columns: tuple[str, ...] = ()
    """SQL expressions over the table's row that the batch gains (``payments AS
    account_payments``); every other column of the table when empty."""

    @field_validator("keys")
    @classmethod
    def _distinct(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        refuse_repeats(keys, "join keys must be distinct")
        return keys

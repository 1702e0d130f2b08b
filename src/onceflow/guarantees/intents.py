"""Durable intents of a side path into a job's sinks: what it is about to write, recorded
before it writes, so that a run killed anywhere is finished the same way by the next.

A quarantine replay (``onceflow.replay``) records intent n, ``<checkpoint>/onceflow/replay/
<n>.json``: the quarantine version it read, where the records' coordinates are and how many;
it then writes the sinks guarded by n, and marks ``<n>.done``. Intent numbers only grow, and
start above every guard id the sinks already hold for the replay's app id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from onceflow.files import CheckpointFiles
from onceflow.storage import onceflow_state

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["Intent", "ReplayIntents"]


@dataclass(frozen=True)
class Intent:
    """Replay ``number`` replays the ``count`` records under ``records`` (a folder of their
    coordinates) as of quarantine version ``version``."""

    number: int
    version: int
    records: str
    count: int


class ReplayIntents:
    """The replay intents of one checkpoint."""

    def __init__(self, spark: SparkSession, checkpoint: str) -> None:
        self.folder = onceflow_state(checkpoint) + "/replay"
        self._files = CheckpointFiles(spark, self.folder)

    def _numbers(self) -> list[int]:
        return sorted(
            int(name.removesuffix(".json"))
            for name in self._files.names()
            if name.endswith(".json") and name.removesuffix(".json").isdigit()
        )

    def pending(self) -> Intent | None:
        """The last intent, if a crash left it undone."""
        numbers = self._numbers()
        if not numbers or self._files.exists(f"{numbers[-1]}.done"):
            return None
        record = json.loads(self._files.read(f"{numbers[-1]}.json") or "{}")
        return Intent(
            numbers[-1], int(record["version"]), str(record["records"]), int(record["count"])
        )

    def next_number(self, held: Iterable[int]) -> int:
        """The next intent's number: above every earlier one and every id in ``held`` (the
        sinks' marks for the replay's app id)."""
        return max([*self._numbers(), *held, -1]) + 1

    def records_of(self, number: int) -> str:
        """Where intent ``number``'s records go (written before the intent is recorded)."""
        return f"{self.folder}/{number}.records"

    def record(self, number: int, version: int, count: int) -> Intent | None:
        """Record intent ``number``: what commits it. None when it exists already (another
        replay recorded it meanwhile)."""
        intent = Intent(number, version, self.records_of(number), count)
        text = json.dumps({"version": version, "records": intent.records, "count": count})
        return intent if self._files.create(f"{number}.json", text) else None

    def done(self, intent: Intent) -> None:
        """Mark ``intent`` carried out."""
        self._files.create(f"{intent.number}.done", "")

"""The executors' side of a PostgreSQL sink: each task COPYs its partition into the
batch's staging table, in one transaction that first deletes what an earlier attempt of
the same partition left.

So a retried or speculative task replaces its twin's rows instead of adding to them: the
twins are serialised by an advisory lock on (staging table, partition), and whichever
commits last leaves the partition's rows once. Lines arrive already encoded as CSV by the
JVM (``columns.csv_line``); Python only appends the partition number and streams them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["STAGE_FAILURE_MARK", "StageTask"]

#: Starts the message of a failed staging task, so the driver can find the database's own
#: words inside Spark's wrapped task failure.
STAGE_FAILURE_MARK = "onceflow staging failed:"
_CHUNK_LINES = 5_000


@dataclass(frozen=True)
class StageTask:
    """What one task needs: connection keywords, the staging table's name and columns."""

    params: dict[str, Any]
    schema: str | None
    stage: str
    columns: tuple[str, ...]
    part_column: str

    def __call__(self, part: int, lines: Iterable[Any]) -> Iterator[int]:
        """COPY the partition's lines; yields the number of rows staged."""
        import psycopg
        from psycopg import sql

        names = (self.schema, self.stage) if self.schema else (self.stage,)
        table = sql.Identifier(*names)
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
            table, sql.SQL(", ").join(map(sql.Identifier, (*self.columns, self.part_column)))
        )
        suffix = f",{part}\n"
        staged = 0
        try:
            with psycopg.connect(**self.params) as conn, conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (self._lock_key(), part))
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                        table, sql.Identifier(self.part_column)
                    ),
                    (part,),
                )
                with conn.cursor().copy(copy) as out:
                    chunk: list[str] = []
                    for row in lines:
                        chunk.append(row[0])
                        if len(chunk) == _CHUNK_LINES:
                            out.write(suffix.join(chunk) + suffix)
                            staged += len(chunk)
                            chunk = []
                    if chunk:
                        out.write(suffix.join(chunk) + suffix)
                        staged += len(chunk)
        except psycopg.Error as exc:
            words = str(exc).strip().splitlines()
            raise RuntimeError(f"{STAGE_FAILURE_MARK} {words[0] if words else exc!r}") from None
        yield staged

    def _lock_key(self) -> int:
        digest = hashlib.sha256(self.stage.encode()).digest()
        return int.from_bytes(digest[:4], "big", signed=True)

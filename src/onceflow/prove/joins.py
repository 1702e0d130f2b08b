"""What a stream-joined job's sinks must hold, recomputed in plain Python from the input as
it was written, never by the job's code: for prove's payments ⋈ settlements.

A payment is joined when a settlement line of its id that parses falls in the join's time
range after it; an inner join must deliver exactly those payments, once each. The time
range is read off ``within`` in the one form the workload's join has, ``<settled> BETWEEN
<time> AND <time> + INTERVAL <n> <unit>``. A job with another range, or a left join (whose
unmatched rows come out only as far as the final watermark has passed, which depends on
how the input was cut into batches), is refused before anything runs: what it must hold
would be a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from onceflow.config import JobSpec
from onceflow.errors import ConfigError
from onceflow.prove.workload import payments

__all__ = ["joined_ids", "stream_join_range"]

_RANGE = re.compile(
    r"^\s*`?(?P<other>\w+)`?\s+BETWEEN\s+`?(?P<time>\w+)`?\s+AND\s+`?(?P=time)`?\s*\+\s*"
    r"INTERVAL\s+'?(?P<n>\d+)'?\s+(?P<unit>SECONDS?|MINUTES?|HOURS?|DAYS?)\s*$",
    re.IGNORECASE,
)


def stream_join_range(spec: JobSpec, job_file: str) -> tuple[str, timedelta] | None:
    """The job's stream join as (the settlement's time column, the range's length), None
    for a job without one.

    Raises:
        ConfigError: CONFIG_UNSUPPORTED for a range in another form than the workload's.
    """
    join = spec.join
    if join is None or join.stream is None:
        return None
    found = _RANGE.match(join.within or "")
    if found is None or join.join_type != "inner":
        raise ConfigError(
            "CONFIG_UNSUPPORTED",
            file=job_file,
            problem="onceflow prove recomputes an inner stream join whose join.within reads "
            f"'<settled> BETWEEN <time> AND <time> + INTERVAL <n> <unit>', not how: "
            f"{join.join_type} within {join.within!r}",
        )
    unit = found["unit"].lower().rstrip("s") + "s"
    return found["other"], timedelta(**{unit: int(found["n"])})


def joined_ids(spec: JobSpec, count: int, seed: int) -> set[int]:
    """The ids of payments ``1..count`` of ``seed`` the job's sinks must hold: all of them,
    or for a stream join those with a settlement in range among the lines under
    ``join.stream.source.path``."""
    wanted = set(range(1, count + 1))
    join = spec.join
    if join is None or join.stream is None:
        return wanted
    found = stream_join_range(spec, spec.name)
    assert found is not None  # noqa: S101 - a stream join has one
    column, length = found
    (_, other), *_ = join.key_pairs
    times = {p.id: p.event_time for p in payments(count, seed=seed)}
    joined = set()
    for line in _lines(Path(getattr(join.stream.source, "path", ""))):
        record = _record(line)
        if record is None:
            continue
        paid, settled = record.get(other), _time(record.get(column))
        if not isinstance(paid, int) or paid not in times or settled is None:
            continue
        if times[paid] <= settled <= times[paid] + length:
            joined.add(paid)
    return joined & wanted


def _lines(folder: Path) -> Iterable[str]:
    for file in sorted(folder.glob("*.json")):
        yield from file.read_text(encoding="utf-8").splitlines()


def _record(line: str) -> dict[str, object] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None

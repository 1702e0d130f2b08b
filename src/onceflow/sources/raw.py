"""The columns of a source read raw, for onceflow to parse: every record as its payload
text plus where it came from, so a record that does not parse can be quarantined exactly
as it arrived. A kind's raw reader (``SourceKind.raw_reader``) gives these four, and may add
its own (Kafka's coordinates).

- ``_onceflow_payload``: the record's text, its bytes unchanged even when not valid UTF-8;
- ``_onceflow_source``: the file's path or the Kafka topic;
- ``_onceflow_partition``: the Kafka partition; NULL for files;
- ``_onceflow_position``: the line number in the file, from 1, or the Kafka offset.
"""

from __future__ import annotations

__all__ = ["PARTITION", "PAYLOAD", "POSITION", "SOURCE"]

PAYLOAD = "_onceflow_payload"
SOURCE = "_onceflow_source"
PARTITION = "_onceflow_partition"
POSITION = "_onceflow_position"

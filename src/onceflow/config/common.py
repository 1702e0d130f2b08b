"""What every model of a job shares: frozen, closed to unknown keys, options as strings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = [
    "JOB_NAME_PATTERN",
    "SQL_NAME",
    "Model",
    "as_str_map",
    "kafka_client_options",
    "refuse_repeats",
]

#: A job's name: it names its query, its folders (the default quarantine) and its reports.
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: A SQL identifier (PostgreSQL's 63 characters), e.g. for ``[schema.]table`` patterns.
SQL_NAME = r"[A-Za-z_][A-Za-z0-9_]{0,62}"


class Model(BaseModel):
    """Frozen, and an unknown key is an error (with a suggestion), never a silent default.

    A field's docstring (the string below it) is its description: ``onceflow reference``
    and ``onceflow schema`` show it.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, use_attribute_docstrings=True
    )


def as_str_map(value: Any) -> Any:
    """YAML reads ``maxFilesPerTrigger: 1`` as an int; Spark options are strings."""
    if isinstance(value, dict):
        return {
            str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()
        }
    return value


def refuse_repeats(names: list[str] | tuple[str, ...], what: str) -> None:
    """Raise ValueError naming every name ``names`` holds more than once (``what``:
    "keys must be distinct", say), for a field validator."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{what}; repeated: {', '.join(repeated)}")


def kafka_client_options(options: dict[str, str], own_keys: str) -> dict[str, str]:
    """``options`` when every key is a ``kafka.*`` client setting and
    ``kafka.bootstrap.servers`` is among them (a Kafka source's or sink's ``options``);
    ``own_keys`` names the settings that have keys of their own, for the message.

    Raises:
        ValueError: naming the stray keys, or the missing bootstrap servers.
    """
    stray = sorted(key for key in options if not key.startswith("kafka."))
    if stray:
        raise ValueError(
            f"only kafka.* client options go here; {', '.join(stray)} must be set with "
            f"their own key ({own_keys}, ...)"
        )
    if "kafka.bootstrap.servers" not in options:
        raise ValueError("kafka.bootstrap.servers is required")
    return options

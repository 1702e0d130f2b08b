"""Named connections a job's database sinks use (``connections:``), set by a job or a
profile."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator

from onceflow.config.common import Model, as_str_map

__all__ = ["PostgresConnection"]


class PostgresConnection(Model):
    """Where a PostgreSQL sink connects; named in the job's (or a profile's) ``connections``.

    ``password`` is accepted only from ``${env:VAR}`` (a literal is refused when the job is
    loaded) and is a ``SecretStr``, so no repr, log line or error can show it. ``options``
    are further libpq parameters (``sslmode``, ``application_name``, ...).
    """

    kind: Literal["postgres"] = "postgres"
    """The kind of server: ``postgres``."""
    host: str = Field(min_length=1)
    """The server's host name or address."""
    port: int = Field(default=5432, ge=1, le=65535)
    """The server's port."""
    database: str = Field(min_length=1)
    """The database to connect to."""
    user: str = Field(min_length=1)
    """The user to connect as."""
    password: SecretStr | None = None
    """The user's password, only as ``${env:VAR}``; never printed."""
    connect_timeout: int = Field(default=10, ge=1, le=600)
    """How long to wait for a connection, in seconds."""
    options: dict[str, str] = Field(default_factory=dict)
    """Other libpq parameters (``sslmode``, ``application_name``, ...)."""

    _strings = field_validator("options", mode="before")(as_str_map)

    @field_validator("options")
    @classmethod
    def _no_credentials_in_options(cls, options: dict[str, str]) -> dict[str, str]:
        reserved = sorted(
            set(options) & {"host", "port", "dbname", "user", "password", "connect_timeout"}
        )
        if reserved:
            raise ValueError(f"set {', '.join(reserved)} with their own keys, not in options")
        return options

    @property
    def address(self) -> str:
        """``host:port/database``, for messages (never the user's password)."""
        return f"{self.host}:{self.port}/{self.database}"

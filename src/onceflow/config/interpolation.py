"""``${env:VAR}`` interpolation, the only way a secret enters a job.

Every value that an environment variable fed is remembered as *sensitive*: printed config
shows it as ``***`` and validation errors never echo it, whether or not it was a password.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.errors import ConfigError

__all__ = ["expand_env", "interpolate_env"]

_REFERENCE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_ANY_REFERENCE = re.compile(r"\$\{[^}]*\}?")


def interpolate_env(document: Document, environ: Mapping[str, str]) -> set[KeyPath]:
    """Replace ``${env:VAR}`` in every string of ``document`` in place.

    Returns:
        The key paths whose values came (wholly or partly) from the environment.

    Raises:
        ConfigError: CONFIG_ENV_UNSET for a variable that is not set,
            CONFIG_ENV_SYNTAX for a ``${...}`` that is not ``${env:NAME}``.
    """
    sensitive: set[KeyPath] = set()
    document.data = _substitute(document.data, (), document, environ, sensitive)
    return sensitive


def _substitute(
    value: Any,
    path: KeyPath,
    document: Document,
    environ: Mapping[str, str],
    sensitive: set[KeyPath],
) -> Any:
    if isinstance(value, dict):
        return {
            key: _substitute(item, (*path, key), document, environ, sensitive)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            _substitute(item, (*path, index), document, environ, sensitive)
            for index, item in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    origin = document.origin_of(path)
    for candidate in _ANY_REFERENCE.finditer(value):
        if not _REFERENCE.fullmatch(candidate.group(0)):
            raise ConfigError(
                "CONFIG_ENV_SYNTAX",
                file=origin.file,
                line=origin.line,
                key=format_key_path(path),
                ref=candidate.group(0),
            )

    def replace(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in environ:
            raise ConfigError(
                "CONFIG_ENV_UNSET",
                file=origin.file,
                line=origin.line,
                key=format_key_path(path),
                var=var,
            )
        return environ[var]

    sensitive.add(path)
    return _REFERENCE.sub(replace, value)


def expand_env(value: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """``${env:VAR}`` in one command-line value; ``where`` names it in errors."""
    document = Document({"value": value}, name=where)
    interpolate_env(document, os.environ if environ is None else environ)
    return str(document.data["value"])

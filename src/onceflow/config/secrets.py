"""Secrets in a job: which keys hold one, and the refusal of a secret written out literally.

A secret enters a job only through ``${env:VAR}``. A key names a secret when its own name
says so (``password``, ``secret``, a ``token``, a credential's ``*.key`` such as
``fs.s3a.secret.key`` or ``fs.azure.account.key.<account>...``), whatever part of the job
it sits in: a connection, ``spark.conf``, a source's client options. A JAAS configuration
(``kafka.sasl.jaas.config``) is a secret too; there only its ``password="..."`` must be an
environment reference, the login module and the user name may be written out.

Values are judged before interpolation, so the check sees what the user wrote, and it
never shows the value: errors name the file, the line and the key.
"""

from __future__ import annotations

import re

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.config.layering import is_override
from onceflow.errors import ConfigError

__all__ = ["check_secret_literals", "is_secret_key"]

# a key's last dotted part names a secret ...
_SECRET_PART = re.compile(r"(password|passwd|secret|token|credential|apikey|api[_-]key)$")
# ... or a credential's key is named anywhere in it (fs.azure.account.key.<account>.dfs...)
_CREDENTIAL_KEY = re.compile(
    r"(^|[._-])(access|secret|account|private|sas|api|client)[._-]?key($|[._-])"
)
# names that mention a secret but hold a class, a file or a switch
_NOT_A_SECRET = re.compile(r"(provider|class|binding|type|file|path|location|enabled|mechanism)$")
_JAAS = re.compile(r"sasl\.jaas\.config$")
_JAAS_PASSWORD = re.compile(r"""password\s*=\s*"([^"]*)"|password\s*=\s*'([^']*)'""", re.I)
_ENV_REFERENCE = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}")
# CONFIG_SECRET_LITERAL's words for where the value was written, and how to give it instead
_FILE = ("written out", "")
_COMMAND_LINE = (
    "given on the command line, where shell history and process listings keep it",
    ": export VAR, then pass --set 'KEY=${env:VAR}' in single quotes, which the shell leaves alone",
)


def is_secret_key(path: KeyPath) -> bool:
    """True when the last key of ``path`` names a secret (see the module)."""
    if not path or not isinstance(path[-1], str):
        return False
    key = path[-1].lower()
    if _JAAS.search(key):
        return True
    if _NOT_A_SECRET.search(key):
        return False
    last = key.rsplit(".", 1)[-1]
    # a dotted option ending in ".key" (fs.s3a.secret.key, ssl.keystore.key) is a credential;
    # a plain field named ``key`` (a Kafka sink's key expression) is not
    dotted_key = "." in key and last == "key"
    return bool(
        _SECRET_PART.search(last) or "password" in key or dotted_key or _CREDENTIAL_KEY.search(key)
    )


def _is_literal(value: object) -> bool:
    """True when ``value`` holds anything but ``${env:VAR}`` references (and blanks)."""
    if value is None:
        return False
    if not isinstance(value, str):
        return True
    return bool(_ENV_REFERENCE.sub("", value).strip())


def _has_literal_secret(path: KeyPath, value: object) -> bool:
    key = path[-1]
    if isinstance(key, str) and _JAAS.search(key.lower()) and isinstance(value, str):
        return any(_is_literal(a or b) for a, b in _JAAS_PASSWORD.findall(value))
    return _is_literal(value)


def check_secret_literals(document: Document) -> list[ConfigError]:
    """CONFIG_SECRET_LITERAL for every secret written out (in a file, or with ``--set``)
    instead of read from ``${env:VAR}``, in ``document`` before interpolation. Each names
    the file and line (or the option) and the key."""
    errors: list[ConfigError] = []

    def visit(value: object, path: KeyPath) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, (*path, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                visit(item, (*path, index))
        elif is_secret_key(path) and _has_literal_secret(path, value):
            origin = document.origin_of(path)
            given, how = _COMMAND_LINE if is_override(origin) else _FILE
            errors.append(
                ConfigError(
                    "CONFIG_SECRET_LITERAL",
                    file=origin.file,
                    line=origin.line,
                    key=format_key_path(path),
                    given=given,
                    how=how,
                )
            )

    visit(document.data, ())
    return errors

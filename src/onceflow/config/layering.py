"""Layering: later documents win, key by key, and ``--set key.path=value`` wins last.

Mappings merge recursively; a list or a scalar in a later layer replaces the earlier one
whole (merging lists element-wise would make ``sinks`` impossible to shorten).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from onceflow.config.documents import Document, KeyPath, Origin
from onceflow.errors import ConfigError

__all__ = ["OVERRIDE_PREFIX", "apply_override", "is_override", "merge_documents", "parse_key_path"]

#: How an override names itself as a value's origin: ``--set key.path=...`` (no value shown).
OVERRIDE_PREFIX = "--set "

_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[\"([^\"]+)\"\]|\['([^']+)'\]")


def merge_documents(documents: list[Document]) -> Document:
    """Merge ``documents`` in order into a new one; the later wins."""
    merged = Document({}, {(): Origin("<merged>")}, "<merged>")
    for document in documents:
        _merge_into(merged.data, document.data, (), merged, document)
    if documents:
        # a key missing at the top is the job's to add: the last layer is the job file
        merged.origins[()] = documents[-1].origin_of(())
    return merged


def _merge_into(
    target: dict[str, Any], incoming: dict[str, Any], path: KeyPath, merged: Document, src: Document
) -> None:
    for key, value in incoming.items():
        child: KeyPath = (*path, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merged.origins[child] = src.origin_of(child)
            _merge_into(target[key], value, child, merged, src)
            continue
        target[key] = copy.deepcopy(value)
        _replace_origins(merged, src, child)


def _replace_origins(merged: Document, src: Document, prefix: KeyPath) -> None:
    for stale in [p for p in merged.origins if p[: len(prefix)] == prefix]:
        del merged.origins[stale]
    for path, origin in src.origins.items():
        if path[: len(prefix)] == prefix:
            merged.origins[path] = origin
    merged.origins.setdefault(prefix, src.origin_of(prefix))


def is_override(origin: Origin) -> bool:
    """True when ``origin`` is a ``--set`` option, not a line of a file."""
    return origin.file.startswith(OVERRIDE_PREFIX)


def parse_key_path(text: str) -> KeyPath:
    """``"sinks[0].path"`` or ``"sinks.0.path"`` -> ``("sinks", 0, "path")``.

    A key that itself contains dots goes in quoted brackets:
    ``spark.conf["spark.sql.shuffle.partitions"]``.

    Raises:
        ValueError: for an empty path or stray characters.
    """
    parts: list[str | int] = []
    position = 0
    for match in _SEGMENT.finditer(text):
        if match.start() != position:
            raise ValueError(f"cannot read the key path {text!r} at position {position}")
        name, index = match.group(1), match.group(2)
        quoted = match.group(3) or match.group(4)
        if quoted is not None:
            parts.append(quoted)
        elif index is not None:
            parts.append(int(index))
        elif name.isdigit():
            parts.append(int(name))
        else:
            parts.append(name)
        position = match.end()
        if position < len(text) and text[position] == ".":
            position += 1
    if not parts or position != len(text):
        raise ValueError(f"cannot read the key path {text!r}")
    return tuple(parts)


def apply_override(document: Document, override: str, position: int = 1) -> None:
    """Apply one ``key.path=value`` to ``document`` in place; the value is read as YAML.

    Errors name the override by its key (or, without a ``=``, by its ``position`` among the
    ``--set`` options), never by its value: it may be a secret. The value, and any mapping or
    list the override had to create on its way, are recorded as written by
    ``--set key.path=...``, so a later error about them names the option, not a file.

    Raises:
        ConfigError: CONFIG_BAD_OVERRIDE when the text has no ``=``, the path cannot be read,
            or it steps into a list index that does not exist.
    """
    key_text, sep, value_text = override.partition("=")
    if not sep or not key_text.strip():
        raise ConfigError(
            "CONFIG_BAD_OVERRIDE",
            override=f"option {position} (its text is not shown: it may hold a secret)",
            problem="expected KEY=VALUE",
        )
    shown = f"{key_text.strip()}=..."
    try:
        path = parse_key_path(key_text.strip())
    except ValueError as exc:
        raise ConfigError("CONFIG_BAD_OVERRIDE", override=shown, problem=str(exc)) from None
    try:
        value = yaml.safe_load(value_text) if value_text.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(
            "CONFIG_BAD_OVERRIDE", override=shown, problem="the value is not valid YAML"
        ) from None

    origin = Origin(f"{OVERRIDE_PREFIX}{key_text.strip()}=...")
    node: Any = document.data
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(
                    "CONFIG_BAD_OVERRIDE", override=shown, problem=f"no list item [{part}]"
                )
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(
                "CONFIG_BAD_OVERRIDE", override=shown, problem=f"'{part}' is not a mapping"
            )
        if part not in node or not isinstance(node[part], dict | list):
            node[part] = [] if isinstance(nxt, int) else {}
            document.origins[path[: depth + 1]] = origin
        node = node[part]

    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(
                "CONFIG_BAD_OVERRIDE", override=shown, problem=f"no list item [{last}]"
            )
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(
            "CONFIG_BAD_OVERRIDE", override=shown, problem="the parent is not a mapping"
        )
    for stale in [p for p in document.origins if p[: len(path)] == path]:
        del document.origins[stale]
    document.origins[path] = origin

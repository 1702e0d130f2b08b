"""YAML documents that remember where every value came from.

A ``Document`` is the plain data of one YAML file plus, for every key path in it, the file
and line that wrote it. Later stages (interpolation, layering, validation) use that to name
the file and line in their errors. Loading refuses what plain ``yaml.safe_load`` silently
accepts: the same key twice in one mapping (the later would win unseen) and non-string keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from onceflow.errors import ConfigError, first_line

__all__ = ["Document", "KeyPath", "Origin", "format_key_path", "load_document"]

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Origin:
    """Where a value was written: a file (or ``--set``) and a 1-based line (0 if unknown)."""

    file: str
    line: int = 0


@dataclass
class Document:
    """One layer of configuration: its data and the origin of every key path in it."""

    data: dict[str, Any]
    origins: dict[KeyPath, Origin] = field(default_factory=dict)
    name: str = "<config>"

    def origin_of(self, path: KeyPath) -> Origin:
        """The origin of ``path``, or of its nearest ancestor that has one."""
        for depth in range(len(path), -1, -1):
            found = self.origins.get(path[:depth])
            if found is not None:
                return found
        return Origin(self.name)


def format_key_path(path: KeyPath) -> str:
    """``("sinks", 0, "path")`` -> ``"sinks[0].path"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "<top>"


def load_document(path: Path) -> Document:
    """Read one YAML file into a ``Document``; an empty file is an empty mapping.

    Raises:
        ConfigError: CONFIG_FILE_NOT_FOUND, CONFIG_YAML_SYNTAX, CONFIG_NOT_A_MAPPING,
            CONFIG_DUPLICATE_KEY or CONFIG_NON_STRING_KEY, naming the file and line.
    """
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("CONFIG_FILE_NOT_FOUND", file=name, hint="") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ConfigError(
            "CONFIG_YAML_SYNTAX", file=name, line=line, problem=f"not UTF-8 text: {exc.reason}"
        ) from None
    loader: yaml.SafeLoader | None = None
    origins: dict[KeyPath, Origin] = {}
    try:
        loader = yaml.SafeLoader(text)  # refuses non-printable characters already
        root = loader.get_single_node()
        if root is None:
            return Document({}, {(): Origin(name, 1)}, name)
        # constructing values can fail too: a tag SafeLoader has no constructor for ("=")
        data = _build(loader, root, (), name, origins)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError(
            "CONFIG_YAML_SYNTAX", file=name, line=line, problem=exc.problem or str(exc)
        ) from None
    except yaml.YAMLError as exc:  # a ReaderError: a character YAML does not allow
        position = getattr(exc, "position", 0)
        line = text[:position].count("\n") + 1
        raise ConfigError(
            "CONFIG_YAML_SYNTAX", file=name, line=line, problem=first_line(exc)
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError("CONFIG_NOT_A_MAPPING", file=name, found=type(data).__name__)
    return Document(data, origins, name)


def _build(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    path: KeyPath,
    file: str,
    origins: dict[KeyPath, Origin],
) -> Any:
    origins[path] = Origin(file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise ConfigError("CONFIG_NON_STRING_KEY", file=file, line=line, key=key)
            if key in first_line:
                raise ConfigError(
                    "CONFIG_DUPLICATE_KEY",
                    file=file,
                    line=line,
                    key=format_key_path((*path, key)),
                    first_line=first_line[key],
                )
            first_line[key] = line
            result[key] = _build(loader, value_node, (*path, key), file, origins)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(loader, item, (*path, index), file, origins)
            for index, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)

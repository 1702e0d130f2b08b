"""Turn pydantic's validation errors into ``ConfigError``s a data engineer can act on.

Each error names the file and line that wrote the offending key (after layering, that may be
a profile or ``--set``), the key path as the user wrote it (``sinks[0].path``, without
pydantic's internal union tags), and for an unknown key the nearest valid one. A value that
came from the environment or from ``--set`` is never echoed back.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.errors import ConfigError

__all__ = ["to_config_errors"]


def to_config_errors(
    error: ValidationError, model: type[BaseModel], document: Document, sensitive: set[KeyPath]
) -> list[ConfigError]:
    """One ``ConfigError`` per pydantic error; unknown keys first, since a misspelt key
    usually also makes a required one look missing."""
    details = error.errors()
    # An error on a container whose items failed (``sinks`` "should have at least 1 item"
    # after its only item was rejected) is an echo of the item's error: leave it out.
    locs = [tuple(d["loc"]) for d in details]
    details = [
        d
        for d in details
        if not any(len(o) > len(d["loc"]) and o[: len(d["loc"])] == tuple(d["loc"]) for o in locs)
    ]
    details.sort(key=lambda d: d["type"] != "extra_forbidden")
    return [_convert(detail, model, document, sensitive) for detail in details]


def _convert(
    detail: ErrorDetails, model: type[BaseModel], document: Document, sensitive: set[KeyPath]
) -> ConfigError:
    path, parent_type = _user_path(model, tuple(detail["loc"]))
    origin = document.origin_of(path)
    key = format_key_path(path)
    kind = detail["type"]

    if kind == "extra_forbidden":
        valid = _field_names(parent_type)
        close = difflib.get_close_matches(str(path[-1]), valid, n=1, cutoff=0.6)
        suggestion = f"; did you mean '{close[0]}'?" if close else ""
        if valid:
            suggestion += f" (valid keys here: {', '.join(sorted(valid))})"
        return ConfigError(
            "CONFIG_UNKNOWN_KEY", file=origin.file, line=origin.line, key=key, suggestion=suggestion
        )
    if kind in ("missing", "union_tag_not_found"):
        missing = key if kind == "missing" else format_key_path((*path, "kind"))
        return ConfigError("CONFIG_MISSING_KEY", file=origin.file, key=missing)

    problem = detail["msg"][0].lower() + detail["msg"][1:]
    if kind.startswith("value_error"):
        problem = problem.removeprefix("value error, ")
    if kind == "union_tag_invalid":
        problem = f"has an unknown kind; {problem}"
    elif (
        path not in sensitive
        and not origin.file.startswith("--set ")  # an override's value may be a secret
        and _is_scalar(detail.get("input"))
    ):
        problem = f"{problem}; got {detail['input']!r}"
    else:
        problem = f"{problem}"
    return ConfigError(
        "CONFIG_INVALID_VALUE", file=origin.file, line=origin.line, key=key, problem=problem
    )


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _field_names(tp: Any) -> list[str]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []


def _user_path(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[KeyPath, Any]:
    """Map pydantic's ``loc`` to the user's key path, dropping discriminator tags.

    Returns the cleaned path and the type that holds its last element (for suggestions).
    """
    path: list[str | int] = []
    current: Any = model
    parent: Any = model
    for part in loc:
        current = _unwrap(current)
        parent = current
        if isinstance(current, type) and issubclass(current, BaseModel):
            if _member_with_tag((current,), part) is not None and part not in current.model_fields:
                continue  # the discriminator tag pydantic puts in loc, even for one member
            current = _field_type(current, str(part))
            path.append(part)
            continue
        members = _union_members(current)
        if members is not None:
            tagged = _member_with_tag(members, part)
            if tagged is not None:
                current = tagged
                continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin in (tuple, list) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            current = Any
        path.append(part)
    return tuple(path), parent


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    members = _union_members(tp)
    if members is not None:
        real = [m for m in members if m is not type(None)]
        if len(real) == 1:
            return _unwrap(real[0])
    return tp


def _union_members(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return tuple(_unwrap(arg) for arg in typing.get_args(tp))
    return None


def _member_with_tag(members: tuple[Any, ...], tag: Any) -> Any:
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            kind = member.model_fields.get("kind")
            if kind is not None and tag in typing.get_args(kind.annotation):
                return member
    return None


def _field_type(model: type[BaseModel], name: str) -> Any:
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias):
            return info.annotation
    return Any

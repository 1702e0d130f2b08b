"""Turn pydantic's validation errors into ``ConfigError``s a data engineer can act on.

Each error names the place that wrote the offending key (after layering, that may be a
profile, or a ``--set`` option), the key path as the user wrote it (``sinks[0].path``,
without pydantic's internal union tags), and what was expected in plain words ("must be a
list", never "should be a valid tuple"). For an unknown key or an unknown value of a closed
set (``guarantee: exactly_once``) it suggests the nearest valid one. A value that came from
the environment or from ``--set`` is never echoed back.
"""

from __future__ import annotations

import difflib
import enum
import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.config.layering import is_override
from onceflow.errors import ConfigError

__all__ = ["to_config_errors"]

_QUOTED = re.compile(r"'([^']*)'")
_LIST_TYPES = ("tuple_type", "list_type", "set_type", "frozen_set_type", "iterable_type")
_MAPPING_TYPES = ("model_type", "model_attributes_type", "dataclass_type", "dict_type")
#: pydantic's error types, in the words of a job file.
_PLAIN = {
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_too_long": "must be at most {max_length} characters long",
    "too_long": "must have at most {max_length} item(s)",
    "string_pattern_mismatch": "must match the pattern '{pattern}'",
}


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
    path, parent_type, leaf_type = _user_path(model, tuple(detail["loc"]))
    key = format_key_path(path)
    kind = detail["type"]

    if kind == "extra_forbidden":
        valid = _field_names(parent_type)
        suggestion = _did_you_mean(str(path[-1]), valid)
        if valid:
            suggestion += f" (valid keys here: {', '.join(sorted(valid))})"
        return ConfigError(
            "CONFIG_UNKNOWN_KEY", place=_place(document, path), key=key, suggestion=suggestion
        )
    if kind in ("missing", "union_tag_not_found"):
        missing = path if kind == "missing" else (*path, "kind")
        # the file (or --set) that should have said it; a line would point at the parent
        place = _place(document, missing, with_line=False)
        return ConfigError("CONFIG_MISSING_KEY", place=place, key=format_key_path(missing))

    where = (*path, "kind") if kind == "union_tag_invalid" else path
    origin = document.origin_of(where)
    # a value from the environment or the command line may be a secret: never shown, and
    # one from the environment not even hinted at by a suggestion
    secret = path in sensitive
    hidden = secret or is_override(origin)
    problem = _problem(detail, leaf_type, hidden)
    if not hidden and kind != "union_tag_invalid" and _is_scalar(detail.get("input")):
        problem = f"{problem}; got {detail['input']!r}"
    if not secret:
        problem += _suggestion(detail, leaf_type)
    return ConfigError(
        "CONFIG_INVALID_VALUE",
        place=_place(document, where),
        file=origin.file,
        line=origin.line,
        key=key,
        problem=problem,
    )


def _place(document: Document, path: KeyPath, with_line: bool = True) -> str:
    """Where ``path`` was written; for a value a file wrote, also the ``--set`` options
    that changed what lies under it (a trigger given ``once`` on the command line)."""
    origin = document.origin_of(path)
    place = f"{origin.file}:{origin.line}" if origin.line and with_line else origin.file
    if is_override(origin):
        return place
    under = sorted(
        {o.file for p, o in document.origins.items() if p[: len(path)] == path and is_override(o)}
    )
    return f"{place} (with {', '.join(under)})" if under else place


def _problem(detail: ErrorDetails, leaf_type: Any, hidden: bool) -> str:
    """What was expected, in the words of a job file; ``hidden``: without the value given."""
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    if kind in _LIST_TYPES:
        return "must be a list"
    if kind in _MAPPING_TYPES:
        keys = _field_names(leaf_type)
        return f"must be a mapping with keys {', '.join(keys)}" if keys else "must be a mapping"
    if kind in ("enum", "literal_error"):
        return "must be one of " + ", ".join(f"'{v}'" for v in _allowed(detail, leaf_type))
    if kind == "union_tag_invalid":
        tag = "" if hidden else f" '{ctx.get('tag')}'"
        allowed = ", ".join(f"'{v}'" for v in _allowed(detail, leaf_type))
        return f"has an unknown kind{tag}; it must be one of {allowed}"
    if kind == "string_too_short":
        length = ctx.get("min_length", 1)
        return "must not be empty" if length == 1 else f"must be at least {length} characters long"
    if kind == "too_short":
        length = ctx.get("min_length", 1)
        return f"must have at least {length} item{'' if length == 1 else 's'}"
    if kind in _PLAIN:
        return _PLAIN[kind].format(**ctx)
    message = detail["msg"]
    if kind.startswith(("value_error", "assertion_error")):
        return message.split(", ", 1)[1] if ", " in message else message
    # a type not met above: pydantic's words, made to read like the rest
    message = re.sub(r"^(Input|Value) should be\b", "must be", message)
    return message[0].lower() + message[1:]


def _suggestion(detail: ErrorDetails, leaf_type: Any) -> str:
    """``; did you mean 'exactly-once'?`` for a near miss of a closed set, else ""."""
    if detail["type"] in ("enum", "literal_error"):
        return _did_you_mean(str(detail.get("input")), _allowed(detail, leaf_type))
    if detail["type"] == "union_tag_invalid":
        tag = (detail.get("ctx") or {}).get("tag")
        return _did_you_mean(str(tag), _allowed(detail, leaf_type))
    return ""


def _allowed(detail: ErrorDetails, leaf_type: Any) -> list[str]:
    """The values a closed set allows: its enum's or ``Literal``'s, or the kinds a tag may
    name (from pydantic's message, which lists them)."""
    ctx = detail.get("ctx") or {}
    if detail["type"] == "union_tag_invalid":
        return _QUOTED.findall(str(ctx.get("expected_tags", "")))
    return _allowed_values(leaf_type) or _QUOTED.findall(str(ctx.get("expected", "")))


def _did_you_mean(given: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(given.lower(), [v.lower() for v in valid], n=1, cutoff=0.6)
    if not close:
        return ""
    return f"; did you mean '{next(v for v in valid if v.lower() == close[0])}'?"


def _allowed_values(tp: Any) -> list[str]:
    """The words a closed set (an enum, a ``Literal``) allows, or [] for another type."""
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return [str(member.value) for member in tp]
    if typing.get_origin(tp) is typing.Literal:
        return [str(arg) for arg in typing.get_args(tp)]
    return []


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _field_names(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [info.alias or name for name, info in tp.model_fields.items()]
    return []


def _user_path(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[KeyPath, Any, Any]:
    """Map pydantic's ``loc`` to the user's key path, dropping discriminator tags.

    Returns the cleaned path, the type that holds its last element (for suggestions) and
    the type of the value at the path (for what was expected).
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
    return tuple(path), parent, current


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

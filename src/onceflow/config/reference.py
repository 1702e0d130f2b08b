"""``docs/reference.md``: every key a job file may hold, generated from the models.

For each key: its path as a user writes it (``sinks[].merge.keys``), its type in plain
words, its default and its description (the field's docstring). The job's own keys come
first, then the keys of each of onceflow's own source and sink kinds; a kind from another
package documents itself. ``onceflow reference --out docs/reference.md`` writes it, and a
test fails when the committed file differs from what the models say. Never imports Spark.
"""

from __future__ import annotations

import enum
import inspect
import math
import types
import typing
from collections.abc import Iterator
from typing import Any, NamedTuple

import yaml
from pydantic import BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from onceflow.config.job import job_model
from onceflow.config.kinds import BUILTIN_SINKS, BUILTIN_SOURCES, Kinds, load_reference
from onceflow.config.modes import WriteMode
from onceflow.config.specs import SinkSpec, SourceSpec

__all__ = ["REFERENCE_COMMAND", "builtin_kinds", "reference_markdown"]

REFERENCE_COMMAND = "onceflow reference --out docs/reference.md"

_INTRO = f"""\
# Job file reference

Every key a job file may hold, with its type, its default and what it means, for
onceflow's own kinds of sources and sinks. It is generated from the models: run
`{REFERENCE_COMMAND}` after changing one (a test fails while this
file is stale), and do not edit it by hand. `onceflow schema` writes the same as a JSON
Schema, for an editor.

Profiles (`conf/<env>.yaml`) and `--set` take the same keys. Any value may be given as
`${{env:VAR}}`, read from the environment when the job loads; a secret (a password, a
credential's key, a token) may only be given that way.
"""


class Row(NamedTuple):
    """One key of the reference."""

    key: str
    type: str
    default: str
    description: str


def builtin_kinds() -> Kinds:
    """onceflow's own kinds only, whatever other packages are installed."""
    return Kinds(
        [load_reference(ref) for ref in BUILTIN_SOURCES],
        [load_reference(ref) for ref in BUILTIN_SINKS],
    )


def reference_markdown(registry: Kinds | None = None) -> str:
    """The reference as Markdown, over the kinds of ``registry`` (onceflow's own by default)."""
    registry = registry or builtin_kinds()
    parts = [_INTRO, "## The job\n", _table(_rows(job_model(registry), ""))]
    for title, prefix, declared in (
        ("Sources", "source.", registry.sources.values()),
        ("Sinks", "sinks[].", registry.sinks.values()),
    ):
        parts.append(f"## {title}\n")
        for kind in declared:
            rows = _rows(kind.spec, prefix)
            modes = getattr(kind, "modes", None)
            if modes is not None:  # a sink names the modes its own kind has
                mode = f"{prefix}mode"
                said = "one of " + _words(m.value for m in WriteMode if m in modes)
                rows = (row._replace(type=said) if row.key == mode else row for row in rows)
            parts.append(f"### `kind: {kind.name}`\n")
            parts.append(_text(kind.spec.__doc__) + "\n")
            parts.append(_table(rows))
    return "\n".join(parts)


def _table(rows: Iterator[Row]) -> str:
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for row in rows:
        cells = (f"`{row.key}`", row.type, row.default, row.description)
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _rows(model: type[BaseModel], prefix: str) -> Iterator[Row]:
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        tp = _unwrap(info.annotation)
        yield Row(key, _type_text(tp, info), _default_text(info), _description(model, name, tp))
        nested, child_prefix = _nested(tp, key)
        if nested is not None:
            yield from _rows(nested, child_prefix)


def _nested(tp: Any, key: str) -> tuple[type[BaseModel] | None, str]:
    """The model whose keys sit under ``key``, and their prefix; None for a leaf, or for a
    source or sink (each kind has its own section)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_model(tp):
        return tp, f"{key}."
    if origin is tuple and args and _is_model(_unwrap(args[0])):
        return _unwrap(args[0]), f"{key}[]."
    if origin is dict and len(args) == 2 and _is_model(_unwrap(args[1])):
        return _unwrap(args[1]), f"{key}.<name>."
    return None, ""


def _is_model(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and issubclass(tp, BaseModel)
        and not issubclass(tp, SourceSpec | SinkSpec)
    )


def _unwrap(tp: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` -> ``X``."""
    while True:
        if typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            real = [arg for arg in typing.get_args(tp) if arg is not type(None)]
            if len(real) == 1:
                tp = real[0]
                continue
        return tp


def _type_text(tp: Any, info: FieldInfo | None = None) -> str:
    text = _base_type_text(tp)
    if info is not None:
        text += _constraints(info)
    return text


def _base_type_text(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        kinds = [typing.get_args(m.model_fields["kind"].annotation)[0] for m in map(_unwrap, args)]
        return "mapping; its `kind` is one of " + _words(kinds)
    if origin is typing.Literal:
        return f"`{args[0]}`" if len(args) == 1 else "one of " + _words(args)
    if origin is tuple:
        return f"list of {_plural(_unwrap(args[0]))}"
    if origin is dict:
        return f"mapping of names to {_plural(_unwrap(args[1]))}"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + _words([member.value for member in tp])
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping"
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp is SecretStr:
        return "string, only `${env:VAR}`"
    return simple.get(tp, str(tp))


def _plural(tp: Any) -> str:
    singular = _base_type_text(tp)
    if singular == "mapping":
        return "mappings"
    if singular.startswith("mapping;"):
        return "mappings, each by `kind`"
    return singular + "s" if " " not in singular else singular


def _words(values: Any) -> str:
    return ", ".join(f"`{value}`" for value in values)


def _constraints(info: FieldInfo) -> str:
    said: list[str] = []
    for item in info.metadata:
        for attribute, words in (("ge", "at least"), ("gt", "more than"),
                                 ("le", "at most"), ("lt", "less than")):  # fmt: skip
            value = getattr(item, attribute, None)
            if value is not None:
                said.append(f"{words} {value}")
        min_length = getattr(item, "min_length", None)
        if min_length:
            said.append("not empty" if min_length == 1 else f"at least {min_length} long")
        pattern = getattr(item, "pattern", None)
        if pattern:
            said.append(f"matching `{pattern}`")
    return (", " + ", ".join(said)) if said else ""


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is None or value is PydanticUndefined:
        return "none"
    adapter: TypeAdapter[Any] = TypeAdapter(info.annotation or Any)
    dumped = adapter.dump_python(value, mode="json", exclude_defaults=True)
    text = yaml.safe_dump(dumped, default_flow_style=True, width=math.inf, sort_keys=False)
    return f"`{text.removesuffix('...' + chr(10)).strip()}`"


def _description(model: type[BaseModel], name: str, tp: Any) -> str:
    """The field's docstring, else the same field's in a base model (a kind's ``kind``
    narrows its base's), else the docstring of the model it holds."""
    for base in model.__mro__:
        fields = getattr(base, "model_fields", {})
        if name in fields and fields[name].description:
            return _text(fields[name].description)
    nested, _ = _nested(tp, name)
    return _text(nested.__doc__) if nested is not None else ""


def _text(doc: str | None) -> str:
    """A docstring's first paragraph on one line, in Markdown."""
    first = inspect.cleandoc(doc or "").split("\n\n")[0]
    return " ".join(first.split()).replace("``", "`")

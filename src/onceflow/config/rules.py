"""Combinations that cannot keep their promise, refused before Spark starts.

Field-level validation (types, required keys) is the models' job; these rules look across
fields: the job's guarantee against each sink's kind and write mode, what each kind itself
refuses (its declaration's ``rules``), and outputs that would share a folder.
"""

from __future__ import annotations

from onceflow.config.documents import Document, KeyPath, format_key_path
from onceflow.config.job import JobSpec
from onceflow.config.join_rules import join_problems
from onceflow.config.kinds import kinds
from onceflow.config.modes import Guarantee
from onceflow.config.stateful_rules import stateful_problems
from onceflow.errors import ConfigError

__all__ = ["check_guarantee_rules"]


def check_guarantee_rules(spec: JobSpec, document: Document) -> list[ConfigError]:
    """Every rule the job breaks, as CONFIG_GUARANTEE_REFUSED errors naming file and key."""
    problems: list[tuple[KeyPath, str]] = []
    if spec.strategy is not None and spec.guarantee is not Guarantee.EXACTLY_ONCE:
        problems.append(
            (
                ("strategy",),
                f"a strategy is only read with guarantee: exactly-once, not {spec.guarantee.value}",
            )
        )
    source = kinds().source(spec.source.kind)
    problems += [(("source", *key), why) for key, why in source.rules(spec.source, spec)]
    for index, sink in enumerate(spec.sinks):
        problems += [((("sinks", index, *key)), why) for key, why in _sink_problems(spec, sink)]
    problems += _overlapping_outputs(spec)
    problems += stateful_problems(spec)
    problems += join_problems(spec)
    return [_refusal(document, path, why) for path, why in problems]


def _sink_problems(spec: JobSpec, sink: object) -> list[tuple[KeyPath, str]]:
    """What the sink's kind cannot do here: the mode, exactly-once in that mode, its own
    rules. Keys are under the sink (``("mode",)``; ``()`` for the sink as a whole)."""
    from onceflow.config.specs import SinkSpec

    assert isinstance(sink, SinkSpec)  # noqa: S101 - JobSpec.sinks holds them
    kind = kinds().sink(sink.kind)
    mode = spec.mode_of(sink)
    title = kind.title or kind.name
    if mode not in kind.modes:
        modes = ", ".join(sorted(m.value for m in kind.modes))
        hint = f"; {kind.mode_hint}" if kind.mode_hint else ""
        return [(("mode",), f"a {title} sink writes by {modes}, not {mode}{hint}")]
    problems: list[tuple[KeyPath, str]] = []
    if spec.guarantee is Guarantee.EXACTLY_ONCE and mode not in kind.guarded_modes:
        hint = f": {kind.guard_hint}" if kind.guard_hint else ""
        problems.append(((), f"exactly-once cannot guard a {title} {mode}{hint}"))
    return problems + kind.rules(sink, spec)


def _overlapping_outputs(spec: JobSpec) -> list[tuple[KeyPath, str]]:
    """Two outputs in one place mix their data: a Delta log inside another table, a
    quarantine appended into a sink, a checkpoint inside a table that a replace-batch or a
    VACUUM rewrites. Every pair of the checkpoint, the file sinks and the quarantine must be
    apart: neither the same path nor one inside the other; two sinks of any kind may not
    write the same place."""
    places: list[tuple[KeyPath, str, str]] = [(("checkpoint",), "the checkpoint", spec.checkpoint)]
    problems: list[tuple[KeyPath, str]] = []
    written: dict[str, str] = {}
    for index, sink in enumerate(spec.sinks):
        where = sink.location
        if where in written:
            problems.append(
                (("sinks", index), f"sink '{sink.name}' writes {where} as sink '{written[where]}' "
                 "does: give each its own place")
            )  # fmt: skip
        written.setdefault(where, sink.name)
        if kinds().sink(sink.kind).file_backed:
            places.append((("sinks", index, "path"), f"sink '{sink.name}'", where))
    quarantine = spec.quarantine_sink()
    if quarantine is not None:
        places.append((("quality", "quarantine"), "the quarantine table", quarantine.location))
    for later, place in enumerate(places):
        for earlier in places[:later]:
            # the key reported is the inner one (of the same folder, the later one)
            inner, outer = (earlier, place) if _inside(earlier[2], place[2]) else (place, earlier)
            if inner[2].rstrip("/") == outer[2].rstrip("/"):
                if inner[1].startswith("sink") and outer[1].startswith("sink"):
                    continue  # said above, as two sinks in one place
                relation = "in the same folder as"
            elif _inside(inner[2], outer[2]):
                relation = "inside"
            else:
                continue
            problems.append(
                (inner[0], f"{inner[1]} ({inner[2]}) is {relation} {outer[1]} ({outer[2]}); "
                 "give each its own folder")
            )  # fmt: skip
    return problems


def _inside(path: str, folder: str) -> bool:
    """True when ``path`` lies strictly inside ``folder``."""
    return path.rstrip("/").startswith(folder.rstrip("/") + "/")


def _refusal(document: Document, path: KeyPath, why: str) -> ConfigError:
    origin = document.origin_of(path)
    return ConfigError(
        "CONFIG_GUARANTEE_REFUSED",
        file=origin.file,
        line=origin.line,
        key=format_key_path(path),
        why=why,
    )

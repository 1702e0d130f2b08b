"""The guarantee report: a progress line per finished scenario, a terminal table, JSON with
the documented field names, Markdown, and a PNG of what was lost and duplicated
(matplotlib, from the ``plots`` extra).

A report of a run that stopped early is *partial* and says so: its Markdown title and
verdict name how many scenarios finished of how many and why it stopped, and its JSON is
an object ``{"partial": true, "reason", "finished", "scenarios", "rows": [...]}`` instead
of the whole run's plain list of rows, so that a reader expecting the list fails instead of
taking a few rows for the verdict.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from onceflow.prove.harness import ProveRow, ScenarioDone

__all__ = [
    "FIELDS",
    "Partial",
    "progress_line",
    "to_json",
    "to_markdown",
    "to_png",
    "to_table",
]

FIELDS = (
    "guarantee",
    "strategy",
    "crash_point",
    "kills",
    "expected",
    "delivered",
    "lost",
    "duplicated",
    "wrong",
    "balance_drift",
    "promise",
    "promise_held",
)


@dataclass(frozen=True)
class Partial:
    """A report of a run that stopped early: of how many scenarios, and why it stopped."""

    scenarios: int
    reason: str  # "interrupted by SIGINT", "a scenario's run failed"


def progress_line(done: ScenarioDone) -> str:
    """``[3/14] exactly-once mid_write@1: held (lost 0, duplicated 0) 31s — about 4 min
    left``: one finished scenario, its verdict, its time and the estimate of the rest."""
    row = done.row
    counts = [f"lost {row.lost}", f"duplicated {row.duplicated}"]
    if row.wrong is not None:
        counts.append(f"wrong {row.wrong}")
    if row.balance_drift is not None:
        counts.append(f"balance drift {row.balance_drift:.2f}")
    verdict = "held" if row.promise_held else "BROKEN"
    note = f"; {row.note}" if row.note else ""
    line = (
        f"[{done.finished}/{done.total}] {done.label}: {verdict} ({', '.join(counts)}{note}) "
        f"{done.seconds:.0f}s"
    )
    if done.finished < done.total:
        line += f" — about {_about(done.seconds_left)} left"
    return line


def _about(seconds: float) -> str:
    """A rough duration: ``40 s`` under a minute and a half, else whole minutes."""
    if seconds < 90:
        return f"{max(10, round(seconds / 10) * 10)} s"
    return f"{round(seconds / 60)} min"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def to_table(rows: Sequence[ProveRow]) -> str:
    """Fixed-width columns for a terminal (the promise text left out: it is per guarantee)."""
    fields = [f for f in FIELDS if f != "promise"]
    cells = [[_cell(row.as_report()[f]) for f in fields] for row in rows]
    widths = [max(len(f), *(len(c[i]) for c in cells)) for i, f in enumerate(fields)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(fields, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def to_markdown(rows: Sequence[ProveRow], title: str, partial: Partial | None = None) -> str:
    """A Markdown table of every field, and a one-line verdict; a ``partial`` report says
    so in its title and verdict."""
    held = sum(row.promise_held for row in rows)
    header = "| " + " | ".join(FIELDS) + " |"
    rule = "|" + "---|" * len(FIELDS)
    body = ["| " + " | ".join(_cell(row.as_report()[f]) for f in FIELDS) + " |" for row in rows]
    verdict = f"{held} of {len(rows)} scenario(s) kept their promise."
    if partial is not None:
        title = f"{title} (PARTIAL: {len(rows)} of {partial.scenarios} scenarios)"
        verdict = (
            f"PARTIAL REPORT: {partial.reason}; {len(rows)} of {partial.scenarios} "
            f"scenario(s) finished, the others were not run to the end. {verdict}"
        )
    return "\n".join([f"# {title}", "", header, rule, *body, "", verdict, ""])


def to_json(rows: Sequence[ProveRow], path: Path, partial: Partial | None = None) -> None:
    """Write the rows as a JSON list of objects with exactly ``FIELDS``; a ``partial``
    report as an object that says so, with the same rows under ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    listed = [row.as_report() for row in rows]
    report: object = listed
    if partial is not None:
        report = {
            "partial": True,
            "reason": partial.reason,
            "finished": len(rows),
            "scenarios": partial.scenarios,
            "rows": listed,
        }
    path.write_text(json.dumps(report, indent=2) + "\n")


def _scenario(row: ProveRow) -> str:
    has_strategy = row.strategy and row.strategy != "-"
    return f"{row.guarantee} ({row.strategy})" if has_strategy else row.guarantee


_AXIS_LABELS = {
    "lost": "records lost",
    "duplicated": "records duplicated",
    "wrong": "CDC rows wrong\n(stale, or a wrong interval)",
    "balance_drift": "balance drift\n(sum of |balance - exact sum|)",
}


def to_png(rows: Sequence[ProveRow], path: Path, title: str = "onceflow prove") -> None:
    """Plot lost and duplicated records per guarantee x crash point into ``path`` (PNG),
    and the balance drift when an aggregate sink was checked.

    The panels share the crash points on x; each guarantee is one bar per point, annotated
    with its count. A scenario whose promise did not hold gets a red edge and "NO" over its
    bars. matplotlib is imported here, not at module level: this module also runs on
    clusters where the ``plots`` extra is not installed.

    Raises:
        ModuleNotFoundError: matplotlib is not installed (``pip install 'onceflow[plots]'``).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: the PNG is the only output
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    points = list(dict.fromkeys(row.crash_point for row in rows))
    scenarios = list(dict.fromkeys(_scenario(row) for row in rows))
    by = {(_scenario(row), row.crash_point): row for row in rows}
    width = 0.8 / max(len(scenarios), 1)
    colours = plt.get_cmap("tab10")

    # a loss or a double write may show only in an aggregate sink (its balances)
    measures = ["lost", "duplicated"]
    if any(row.wrong is not None for row in rows):  # a CDC sink was checked
        measures.append("wrong")
    if any(row.balance_drift is not None for row in rows):
        measures.append("balance_drift")
    figure, axes = plt.subplots(
        len(measures),
        1,
        figsize=(max(6.0, 1.6 * len(points) * max(len(scenarios), 2) / 2), 3.5 * len(measures)),
        sharex=True,
    )
    for axis, measure in zip(axes, measures, strict=True):
        for index, scenario in enumerate(scenarios):
            legend: str | None = scenario  # once per guarantee
            for x, point in enumerate(points):
                row = by.get((scenario, point))
                if row is None:
                    continue
                value = float(getattr(row, measure) or 0)
                held = row.promise_held
                offset = x - 0.4 + width * (index + 0.5)
                axis.bar(
                    offset,
                    value,
                    width * 0.9,
                    color=colours(index % 10),
                    edgecolor="black" if held else "red",
                    linewidth=0.6 if held else 2.5,
                    label=legend,
                )
                legend = None
                text = f"{value:,.2f}" if measure == "balance_drift" else f"{value:,.0f}"
                label = text if held else f"{text}\nNO"
                axis.annotate(
                    label,
                    (offset, value),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="black" if held else "red",
                    fontweight="normal" if held else "bold",
                )
        axis.set_ylabel(_AXIS_LABELS[measure])
        axis.margins(y=0.25)
        axis.set_ylim(0, max(axis.get_ylim()[1], 1.0))  # all zero is still a readable axis
        if measure != "balance_drift":
            axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(points)), points)
    axes[-1].set_xlabel("crash point (the job process SIGKILLed there, then restarted)")
    axes[0].legend(fontsize=8, loc="upper left")
    kept = sum(row.promise_held for row in rows)
    figure.suptitle(f"{title}\n{kept} of {len(rows)} scenario(s) kept their promise")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

"""How ``onceflow run`` shows a running job on its stderr.

In a terminal: one status line, redrawn in place at every batch (batch, rows/s, lag, the
last batch's time and what the guarantee did), with warnings and errors printed above it.
Anywhere else (a file, a pipe, a scheduler's log): plain log lines, the per-batch JSON
line among them, so nothing depends on a terminal to be read back.
"""

from __future__ import annotations

import logging
from typing import Any, TextIO

__all__ = ["LiveProgress", "console_handler", "progress_line"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CLEAR_LINE = "\r\x1b[2K"


def progress_line(summary: dict[str, Any]) -> str:
    """One short line for a batch's ``batch_summary`` (and the notes merged into it)."""
    rates = summary.get("rows_per_second") or {}
    lag = summary.get("source_lag")
    lag_text = ", ".join(f"{n:,} {unit}" for unit, n in lag.items()) if lag else "-"
    seconds = float((summary.get("durations_ms") or {}).get("triggerExecution", 0)) / 1000
    parts = [
        f"{summary.get('job')}: batch {summary.get('batch_id')}",
        f"{int(summary.get('input_rows') or 0):,} rows",
        f"{float(rates.get('in') or 0):,.0f} rows/s in",
        f"{float(rates.get('out') or 0):,.0f} rows/s out",
        f"lag {lag_text}",
        f"last batch {seconds:.2f} s",
    ]
    guarantee = summary.get("guarantee")
    if isinstance(guarantee, dict):
        parts.append(str(guarantee.get("action")))
    quality = summary.get("quality")
    if isinstance(quality, dict) and quality.get("quarantined"):
        parts.append(f"{int(quality['quarantined']):,} quarantined")
    return " | ".join(parts)


class LiveProgress(logging.Handler):
    """Redraws one line in place for records carrying a batch ``summary``; prints every
    other record on its own line above it. Meant for a terminal only."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._line = ""
        self.setFormatter(logging.Formatter(_LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            summary = getattr(record, "summary", None)
            if isinstance(summary, dict):
                self._line = progress_line(summary)
                self._stream.write(_CLEAR_LINE + self._line)
            else:
                self._stream.write(_CLEAR_LINE + self.format(record) + "\n" + self._line)
            self._stream.flush()
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        """Leave the last status line in place and end it."""
        if self._line:
            self._stream.write("\n")
            self._stream.flush()
            self._line = ""
        super().close()


def console_handler(stream: TextIO) -> logging.Handler:
    """``LiveProgress`` when ``stream`` is a terminal, else plain log lines."""
    if stream.isatty():
        return LiveProgress(stream)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    return handler

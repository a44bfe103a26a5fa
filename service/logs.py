"""Log output of the server process: one JSON object per line, or text for a terminal.

Both formats go through one handler on the root logger, so the service's own records,
uvicorn's and the access log (``service.access``, written by the request middleware) come
out alike. Every record made while a request is served carries that request's id, and its
trace and span ids when tracing is on, without the code that logs knowing about either.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, Literal, TextIO

from service import request_id, tracing

LogFormat = Literal["json", "text"]

#: Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "request_id",
}
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    """The request id and trace ids of the record (given explicitly, or current)."""
    out: dict[str, str] = {}
    rid = record.__dict__.get("request_id") or request_id.current()
    if rid:
        out["request_id"] = rid
    ids = tracing.current_ids()
    if ids is not None:
        out["trace_id"], out["span_id"] = ids
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601 with milliseconds),
    level, logger, message, the request id and trace ids, whatever came in ``extra=``, and
    the traceback of an exception as one string."""

    def format(self, record: logging.LogRecord) -> str:
        seconds = int(record.created)
        millis = int((record.created - seconds) * 1000)
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context_of(record))
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an object passed in ``extra=`` must never cost the log line.
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, then ``request_id=...`` (and trace ids) when known."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context_of(record)
        if not context:
            return line
        tail = " ".join(f"{key}={value}" for key, value in context.items())
        first, newline, rest = line.partition("\n")
        return f"{first} [{tail}]{newline}{rest}"


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``log_format`` at ``level``.

    Replaces the root logger's handlers, so it is for the server process (``python -m
    service``), not for a library user's process.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "configure_logging"]

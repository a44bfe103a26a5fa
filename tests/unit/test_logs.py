"""Log lines: one JSON object per line (or text), each carrying the request id when known."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from service import request_id
from service.logs import JsonFormatter, TextFormatter, configure_logging


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("service.test", logging.WARNING, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def bound() -> Iterator[str]:
    token = request_id.bind("req-42")
    try:
        yield "req-42"
    finally:
        request_id.unbind(token)


def test_json_line_has_the_fields_and_stays_one_line() -> None:
    line = JsonFormatter().format(record("two\nlines %s", "here", status=201, path="/a"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines here"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "service.test"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    assert (entry["status"], entry["path"]) == (201, "/a")
    assert "request_id" not in entry  # outside any request, no id is made up


def test_json_line_carries_the_current_request_id(bound: str) -> None:
    assert json.loads(JsonFormatter().format(record("x")))["request_id"] == bound


def test_an_explicit_request_id_wins(bound: str) -> None:
    entry = json.loads(JsonFormatter().format(record("x", request_id="other")))
    assert entry["request_id"] == "other"


def test_json_line_keeps_the_traceback_and_odd_extras() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record("failed", thing=object())
        rec.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: boom" in entry["exception"]
    assert entry["thing"].startswith("<object")


def test_text_line_ends_with_the_request_id(bound: str) -> None:
    line = TextFormatter().format(record("hello"))
    assert line.endswith("service.test: hello [request_id=req-42]")


def test_text_line_without_a_request_is_plain() -> None:
    assert TextFormatter().format(record("hello")).endswith("WARNING service.test: hello")


def test_configure_logging_routes_every_logger_through_one_handler() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging("info", "json", out)
        logging.getLogger("uvicorn.error").info("started %d", 1)
        logging.getLogger("service.x").debug("hidden")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert [(e["logger"], e["message"]) for e in lines] == [("uvicorn.error", "started 1")]

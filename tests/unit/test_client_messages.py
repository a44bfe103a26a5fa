"""The client's pure parts: readings out, problems and answers in, event streams, frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from forecast_client import calls
from forecast_client.errors import (
    ApiError,
    InvalidInput,
    NotFound,
    ServerError,
    ServiceUnavailable,
    ServiceUnreachable,
    StateMismatch,
    StreamLimitExceeded,
    Unauthorized,
    problem_error,
)
from forecast_client.messages import (
    EventParser,
    FeedFailed,
    closed_error,
    socket_answer,
    stream_event,
    websocket_url,
)
from forecast_client.retry import Retry
from forecast_client.session import Attempts
from forecast_client.types import Reading, StreamAnswer, readings_json

STREAM = {
    "stream_id": "s",
    "model": {"name": "m", "version": 2},
    "seq": 3,
    "last_timestamp": "2026-11-23T08:00:00Z",
    "forecast": {
        "model": {"name": "m", "version": 2},
        "target": "load",
        "origin": "2026-11-23T08:00:00Z",
        "steps": [
            {
                "step": 1,
                "timestamp": "2026-11-23T09:00:00Z",
                "median": 2.0,
                "quantiles": {"0.1": 1.0, "0.5": 2.0, "0.9": 3.0},
            }
        ],
    },
}


def test_readings_go_out_as_the_service_reads_them() -> None:
    naive = datetime(2026, 11, 23, 8, 0)
    paris = datetime(2026, 11, 23, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    sent = [(1_790_000_000, 1.5), Reading(naive, [1, 2]), (paris, 3.0), ("2026-11-23Z", 1)]
    assert readings_json(sent) == [
        {"timestamp": 1_790_000_000.0, "value": 1.5},
        {"timestamp": "2026-11-23T08:00:00+00:00", "values": [1.0, 2.0]},
        {"timestamp": "2026-11-23T09:00:00+01:00", "value": 3.0},
        {"timestamp": "2026-11-23Z", "value": 1.0},
    ]


def test_stream_ids_are_one_path_segment_whatever_they_hold() -> None:
    assert calls.stream_path("plant/line 1") == "/v1/streams/plant%2Fline%201"
    assert calls.stream_path("a%b?c#d") == "/v1/streams/a%25b%3Fc%23d"


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (404, {"code": "unknown-stream"}, NotFound),
        (422, {"code": "invalid-input"}, InvalidInput),
        (401, {"code": "unauthenticated"}, Unauthorized),
        (403, {"code": "stream-limit", "limit": 5}, StreamLimitExceeded),
        (409, {"code": "state-mismatch"}, StateMismatch),
        (503, {"code": "store-unavailable"}, ServiceUnavailable),
        (500, {"code": "internal"}, ServerError),
        (418, "not a problem", ApiError),
    ],
)
def test_problems_become_the_most_specific_exception(
    status: int, body: object, cls: type[ApiError]
) -> None:
    error = problem_error(status, body, request_id="r-1")
    assert type(error) is cls
    assert error.status == status
    assert error.request_id == "r-1"


def test_an_error_carries_everything_the_problem_says() -> None:
    response = httpx.Response(
        422,
        headers={"x-request-id": "abc", "content-type": "application/problem+json"},
        json={
            "type": "urn:stateful-forecast:problem:invalid-input",
            "title": "Invalid input",
            "status": 422,
            "detail": "2 values, the model has 1 feature",
            "code": "invalid-input",
            "field": "observations[0].values",
            "request_id": "abc",
        },
    )
    error = calls.error_of(response)
    assert isinstance(error, InvalidInput)
    assert (error.code, error.title, error.field, error.request_id) == (
        "invalid-input",
        "Invalid input",
        "observations[0].values",
        "abc",
    )
    assert "observations[0].values" in str(error)
    limit = calls.error_of(httpx.Response(403, json={"code": "stream-limit", "limit": 7}))
    assert isinstance(limit, StreamLimitExceeded)
    assert limit.limit == 7
    busy = calls.error_of(httpx.Response(503, headers={"retry-after": "2"}, text="down"))
    assert busy.retry_after == 2.0
    assert busy.detail == "down"


def test_a_delete_retried_after_a_lost_answer_counts_a_404_as_done() -> None:
    call = calls.delete_stream("s")
    gone = httpx.Response(404, json={"code": "unknown-stream", "detail": "no stream"})
    assert calls.finish(call, gone, retried=True) is None
    with pytest.raises(NotFound):
        calls.finish(call, gone, retried=False)
    with pytest.raises(NotFound):
        calls.finish(calls.get_stream("s"), gone, retried=True)


def test_attempts_pause_for_retryable_answers_and_give_up_on_failures() -> None:
    attempts = Attempts(Retry(attempts=3, backoff=0.01), "GET", "/x")
    assert attempts.after_answer(404, None) is None
    assert attempts.after_answer(503, 1.0) == 1.0
    assert attempts.after_answer(502, None) is not None
    assert attempts.after_answer(503, None) is None, "the tries are spent: the answer stands"
    attempts.retries = 0
    attempts.after_failure(ConnectionError("reset"))
    attempts.after_failure(ConnectionError("reset"))
    with pytest.raises(ServiceUnreachable, match="ConnectionError"):
        attempts.after_failure(ConnectionError("reset"))
    assert calls.retry_after(httpx.Response(503, headers={"retry-after": "2"})) == 2.0


def answer(i: int, status: int) -> StreamAnswer:
    if status == 200:
        return StreamAnswer.of({"id": i, "stream_id": f"s{i}", "status": 200, "result": None})
    error = {"status": status, "code": "store-unavailable", "title": "down", "detail": "d"}
    return StreamAnswer.of({"id": i, "stream_id": f"s{i}", "status": status, "error": error})


def test_bulk_rounds_send_again_only_the_streams_that_answered_503() -> None:
    items = calls.bulk_items({"s0": [(1, 1.0)], "s1": [(1, 1.0)], "s2": [(1, 1.0)]})
    rounds = calls.BulkRounds(items, "full", Retry(attempts=3, backoff=0.01))
    first = rounds.call().json["streams"]
    assert [s["stream_id"] for s in first] == ["s0", "s1", "s2"]
    assert rounds.absorb([answer(0, 200), answer(1, 503), answer(2, 422)]) is not None
    assert [s["stream_id"] for s in rounds.call().json["streams"]] == ["s1"]
    assert rounds.absorb([answer(1, 503)]) is not None
    assert rounds.absorb([answer(1, 503)]) is None  # attempts spent: its 503 is its answer
    assert [(a.stream_id, a.status) for a in rounds.answers()] == [
        ("s0", 200),
        ("s1", 503),
        ("s2", 422),
    ]
    assert all(a.id is None for a in rounds.answers()), "the round's own ids stay inside"


def test_the_event_parser_follows_the_event_stream_format() -> None:
    parser = EventParser()
    lines = [": keep-alive", "", "event: snapshot", 'data: {"a":', "data: 1}", "", "data:x", ""]
    events = [e for e in map(parser.line, lines) if e is not None]
    assert events == [("snapshot", '{"a":\n1}'), ("message", "x")]


def test_subscription_events_are_typed_and_an_error_event_asks_to_follow_again() -> None:
    snapshot = stream_event("snapshot", json.dumps(STREAM))
    assert snapshot is not None
    assert snapshot.kind == "snapshot"
    assert snapshot.result is None
    update = stream_event("forecast", json.dumps({**STREAM, "applied": 1, "skipped": []}))
    assert update is not None
    assert update.result is not None
    assert update.result.applied == 1
    forecast = update.stream.forecast
    assert forecast is not None
    assert forecast.median == [2.0]
    assert forecast.quantile(0.9) == [3.0]
    assert forecast.steps[0].timestamp == datetime(2026, 11, 23, 9, tzinfo=UTC)
    with pytest.raises(KeyError, match=r"0\.25"):
        forecast.quantile(0.25)
    assert stream_event("other", "{}") is None
    with pytest.raises(FeedFailed):
        stream_event("error", '{"status": 503}')


def test_websocket_answers_and_close_codes() -> None:
    ok = socket_answer(json.dumps({"id": 4, "stream_id": "s", "status": 200, "result": STREAM}))
    assert ok.ok
    assert ok.unwrap().seq == 3
    bad = socket_answer(
        json.dumps({"id": 5, "status": 400, "error": {"status": 400, "code": "malformed-body"}})
    )
    assert bad.id == 5
    assert not bad.ok
    with pytest.raises(ApiError, match="400"):
        bad.unwrap()
    assert isinstance(closed_error(4401, "no key"), Unauthorized)
    assert closed_error(1009, "too big") is not None
    assert closed_error(1006, "") is None
    assert closed_error(None, "") is None
    assert websocket_url("https://h:8/base/") == "wss://h:8/base/v1/ws"
    assert websocket_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/v1/ws"


def test_the_client_stands_alone_and_shares_the_version() -> None:
    """Importing the client loads none of the service (nor numpy, onnxruntime, litestar)."""
    import subprocess
    import sys

    import forecast_client
    import service

    assert forecast_client.__version__ == service.__version__
    probe = (
        "import sys, forecast_client; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'service', 'numpy', 'onnxruntime', 'litestar', 'redis'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

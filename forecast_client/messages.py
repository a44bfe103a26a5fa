"""The streaming interfaces' messages, with no I/O: WebSocket frames and server-sent events.

Both clients (sync and async) read and write them through these functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response

from forecast_client.errors import ApiError, Forbidden, Unauthorized, problem_error
from forecast_client.types import ObserveResult, ReadingLike, Stream, StreamAnswer, StreamEvent
from forecast_client.types import readings_json as _readings

#: Close codes that are the service's last word: a retry would be refused the same way.
#: 1008: the sender ignored the rate limit; 1009: a message over the size limit; 4401/4403:
#: no valid key, or one whose role is too weak (4000 + the HTTP status).
FINAL_CLOSE_CODES = frozenset({1008, 1009, 4401, 4403})


class FeedFailed(Exception):
    """The service ended a subscription with an ``error`` event: subscribe again."""


def websocket_url(base_url: str) -> str:
    """``/v1/ws`` of the service at ``base_url`` (http -> ws, https -> wss)."""
    parts = urlsplit(base_url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/ws", "", ""))


def observe_message(stream_id: str, readings: Sequence[ReadingLike], message_id: int | str) -> str:
    return json.dumps(
        {"id": message_id, "stream_id": stream_id, "observations": _readings(readings)}
    )


def socket_answer(text: str | bytes) -> StreamAnswer:
    """One WebSocket answer: a stream's outcome, or a problem with the message itself (400
    unreadable, 422 invalid, 429 over the rate), which has ``error`` and no ``stream_id``."""
    data: Any = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"unexpected WebSocket answer: {str(text)[:200]}")
    return StreamAnswer.of(data)


def closed_error(code: int | None, reason: str) -> ApiError | None:
    """The error a close code stands for, when retrying cannot help; None when it can."""
    if code not in FINAL_CLOSE_CODES:
        return None
    status = {4401: 401, 4403: 403, 1008: 429, 1009: 413}[code]
    cls: type[ApiError] = {401: Unauthorized, 403: Forbidden}.get(status, ApiError)
    return cls(status, code=f"websocket-close-{code}", title="WebSocket closed", detail=reason)


def raise_if_final(closed: ConnectionClosed) -> None:
    """Raise the error a closed connection stands for, when retrying cannot help."""
    final = closed_error(closed.rcvd.code if closed.rcvd else None, str(closed))
    if final is not None:
        raise final from closed


def handshake_error(response: Response, retry_statuses: frozenset[int]) -> ApiError:
    """The error of a WebSocket upgrade the service refused with an HTTP answer; raised at
    once when it is not one to retry."""
    try:
        problem: Any = json.loads(bytes(response.body)) if response.body else {}
    except ValueError:
        problem = {}
    error = problem_error(
        response.status_code, problem, request_id=response.headers.get("x-request-id")
    )
    if response.status_code not in retry_statuses:
        raise error
    return error


class EventParser:
    """Lines of a ``text/event-stream`` in, ``(event, data)`` out at each blank line."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def line(self, line: str) -> tuple[str, str] | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            done = (self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return done
        if line.startswith(":"):  # a comment: the keep-alive
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


class EventFeed:
    """Lines of a subscription in, its typed events out (see :func:`stream_event`)."""

    def __init__(self) -> None:
        self._parser = EventParser()

    def feed(self, line: str) -> StreamEvent | None:
        message = self._parser.line(line)
        return None if message is None else stream_event(*message)


def stream_event(event: str, data: str) -> StreamEvent | None:
    """The subscription's event, None for one this client does not know (skipped).

    Raises:
        FeedFailed: the service's ``error`` event (its feed broke): follow again.
    """
    if event == "error":
        raise FeedFailed(data[:200])
    if event == "snapshot":
        return StreamEvent("snapshot", Stream.of(json.loads(data)))
    if event == "forecast":
        body = json.loads(data)
        return StreamEvent("forecast", Stream.of(body), ObserveResult.of(body))
    return None


__all__ = [
    "FINAL_CLOSE_CODES",
    "EventFeed",
    "EventParser",
    "FeedFailed",
    "closed_error",
    "handshake_error",
    "observe_message",
    "raise_if_final",
    "socket_answer",
    "stream_event",
    "websocket_url",
]

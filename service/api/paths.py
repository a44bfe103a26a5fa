"""Stream ids in URL paths: a percent-encoded ``/`` stays inside its path segment.

A stream id may hold ``/`` (``plant/line-1/temp``), sent as ``%2F``. The ASGI server hands
over the path already percent-decoded, where ``/v1/streams/a%2Fobservations`` and
``/v1/streams/a/observations`` are the same text, and Litestar routes on that text. So:

- :func:`reroute` runs in front of the router (in the edge layer, ``service.api.access``). When
  the raw path holds a percent-escape, it decodes the raw path segment by segment and writes
  each segment back with ``%`` and ``/`` escaped (``%25``, ``%2F``), so every segment stays
  one path component for the router. Other requests pass untouched.
- :func:`stream_id_middleware` runs after routing: for such a request it unescapes the
  ``stream_id`` path parameter, which then holds the client's ``/`` and ``%``. Other path
  parameters (model names, versions) keep the escaped text and so can never hold a ``/`` (a
  model name becomes a directory name in the repository).

A raw path whose percent-escapes are not UTF-8 would reach the router with U+FFFD in place
of each bad byte, silently naming another stream or model; it is refused before routing
instead (400, in the error form of the API the path is under).
"""

from __future__ import annotations

import json
import re
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from service import request_id
from service.api.errors import PROBLEM_JSON

#: Key in the scope's state: the path was re-escaped.
_ESCAPED: Final = "forecast_escaped_path"
_UNESCAPE: Final = re.compile("%2F|%25")
#: The path parameter that may hold ``/``.
STREAM_ID: Final = "stream_id"


class PathNotUTF8(ValueError):
    """A raw path whose percent-escapes do not decode as UTF-8."""


def routing_path(raw_path: bytes) -> str | None:
    """The path to route ``raw_path`` on, or None for one without percent-escapes.

    Decoded here, segment by segment, rather than trusting the server's decoding: that one
    loses the difference between ``/`` and ``%2F``, replaces bytes that are not UTF-8, and
    (in Litestar's test client) decodes twice.

    Raises:
        PathNotUTF8: the percent-decoded path is not UTF-8.
    """
    raw_path = raw_path.split(b"?", 1)[0]
    if b"%" not in raw_path:
        return None
    try:
        texts = [unquote_to_bytes(part).decode("utf-8") for part in raw_path.split(b"/")]
    except UnicodeDecodeError as exc:
        raise PathNotUTF8(f"the URL path is not UTF-8 once percent-decoded: {exc}") from None
    return "/".join(t.replace("%", "%25").replace("/", "%2F") for t in texts)


def _refusal(path: str, detail: str) -> tuple[bytes, bytes]:
    """A 400 body in the error form of the API under ``path``, and its media type."""
    rid = request_id.current()
    extra = {} if rid is None else {"request_id": rid}
    if path == "/v2" or path.startswith("/v2/"):
        return json.dumps({"error": detail, **extra}).encode(), b"application/json"
    body = {
        "type": "urn:stateful-forecast:problem:malformed-path",
        "title": "Malformed request path",
        "status": 400,
        "detail": detail,
        "code": "malformed-path",
        **extra,
    }
    return json.dumps(body).encode(), PROBLEM_JSON.encode()


def reroute(scope: Scope) -> None:
    """Route ``scope`` (HTTP or WebSocket) on its raw path re-escaped, when it has escapes.

    Raises:
        PathNotUTF8: the percent-decoded path is not UTF-8 (answer it with :func:`refuse`).
    """
    raw = scope.get("raw_path")
    if not raw or b"%" not in raw:
        return
    path = routing_path(raw)
    if path is not None:
        scope["path"] = path  # raw_path, like path, holds any root_path
        scope.setdefault("state", {})[_ESCAPED] = True


async def refuse(scope: Scope, send: Send, detail: str) -> None:
    """Answer a request whose path :func:`reroute` refused: 400 in its API's error form, or
    a WebSocket closed with 1008 (a socket cannot be answered in JSON)."""
    if scope["type"] != ScopeType.HTTP:
        await send({"type": "websocket.close", "code": 1008, "reason": detail})
        return
    body, media_type = _refusal(scope["path"], detail)
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 400,
        "headers": [
            (b"content-type", media_type),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: "/" if m.group() == "%2F" else "%", text)


def stream_id_middleware(app: ASGIApp) -> ASGIApp:
    """Litestar middleware: the ``stream_id`` as the client encoded it (see the module)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        params: dict[str, Any] = scope.get("path_params", {})
        if scope.get("state", {}).get(_ESCAPED) and isinstance(params.get(STREAM_ID), str):
            # A new dict: Litestar caches the one it parsed, per path.
            scope["path_params"] = {**params, STREAM_ID: _unescape(params[STREAM_ID])}
        await app(scope, receive, send)

    return middleware


__all__ = [
    "STREAM_ID",
    "PathNotUTF8",
    "refuse",
    "reroute",
    "routing_path",
    "stream_id_middleware",
]

"""The outermost layer of every HTTP request and WebSocket: its id, its access log line, its
request metrics, its span.

It wraps the app's whole handler (``Litestar.asgi_handler``), not the per-route middleware
stack, so unmatched paths, wrong methods and the docs get an id, a log line and a count too
(one layer for all of them: each layer costs every request a closure and an await). For each
connection it takes the request id from ``X-Request-ID`` (or makes one), makes it current for
everything below, returns it in the response's ``X-Request-ID`` header, and, once the answer
is complete, writes one access log line (``service.access``: INFO, DEBUG for the health
probes and ``/metrics``, which orchestrators and Prometheus call every few seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service import request_id
from service.api.bodies import deadline_receive
from service.api.middleware import UNMATCHED, RequestRecorder
from service.api.paths import PathNotUTF8, refuse, reroute
from service.tracing import Tracing

ACCESS_LOGGER: Final = "service.access"
_HEADER: Final = request_id.HEADER.lower().encode("latin-1")
#: Paths called by machines on a schedule: their access lines are DEBUG, not INFO.
_QUIET_PREFIXES: Final = ("/health/", "/v2/health/", "/metrics")


def request_context(
    app: ASGIApp,
    record: RequestRecorder | None = None,
    tracing: Tracing | None = None,
    body_timeout_seconds: float | None = None,
) -> ASGIApp:
    """``app`` wrapped so every HTTP and WebSocket connection gets an id, a log line and,
    with ``tracing``, a server span; with ``record``, every HTTP request is counted and timed
    under its route template (``unmatched`` for 404s and wrong methods).

    In front of the router it also re-escapes a path holding encoded slashes
    (``service.api.paths``) and, with ``body_timeout_seconds``, bounds the time an HTTP
    request's body may take to arrive (``service.api.bodies.deadline_receive``).
    """
    if body_timeout_seconds is not None and not body_timeout_seconds > 0:
        raise ValueError(f"a body timeout must be positive, got {body_timeout_seconds}")
    access = logging.getLogger(ACCESS_LOGGER)

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != ScopeType.HTTP and kind != ScopeType.WEBSOCKET:
            await app(scope, receive, send)
            return
        if body_timeout_seconds is not None and kind == ScopeType.HTTP:
            loop_time = asyncio.get_running_loop().time()
            receive = deadline_receive(receive, body_timeout_seconds, loop_time)
        incoming = None
        for name, value in scope["headers"]:
            if name == _HEADER:
                incoming = value
                break
        rid = request_id.accept(incoming)
        header = (_HEADER, rid.encode("latin-1"))
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start" or kind == "websocket.accept":
                fields = cast(dict[str, Any], message)
                status = int(fields["status"]) if kind == "http.response.start" else 101
                fields["headers"] = [*(fields.get("headers") or ()), header]
            elif kind == "websocket.close" and status == 500:
                status = 403  # closed before it was accepted: the server answers 403
            await send(message)

        method = str(scope.get("method", "WS"))  # a WebSocket scope has no method

        def finish() -> None:
            if record is not None and method != "WS":
                route = str(scope.get("path_template") or UNMATCHED)
                record(route, method, status, time.perf_counter() - start)
            path = scope["path"]
            level = logging.DEBUG if path.startswith(_QUIET_PREFIXES) else logging.INFO
            if access.isEnabledFor(level):
                _log_access(access, level, scope, method, path, status, start)

        async def route() -> None:
            try:
                reroute(scope)
            except PathNotUTF8 as exc:
                await refuse(scope, send_with_id, str(exc))
                return
            await app(scope, receive, send_with_id)

        token = request_id.bind(rid)
        try:
            if tracing is None:
                try:
                    await route()
                finally:
                    finish()
            else:
                with tracing.request(method, scope["path"], list(scope["headers"])) as span:
                    try:
                        await route()
                    finally:
                        tracing.finish_request(span, method, scope.get("path_template"), status)
                        finish()  # inside the span, so the line carries its trace id
        finally:
            request_id.unbind(token)

    return handle


def _log_access(
    access: logging.Logger,
    level: int,
    scope: Scope,
    method: str,
    path: str,
    status: int,
    start: float,
) -> None:
    millis = round((time.perf_counter() - start) * 1000.0, 3)
    client = scope.get("client")
    peer = f"{client[0]}:{client[1]}" if client else "-"
    version = scope.get("http_version", "1.1")
    access.log(
        level,
        '%s "%s %s HTTP/%s" %d %.1fms',
        peer,
        method,
        # A percent-encoded newline is a real one in the decoded path: no forged lines.
        path if path.isprintable() else path.encode("unicode_escape").decode("ascii"),
        version,
        status,
        millis,
        extra={
            "client": peer,
            "method": method,
            "path": path,
            "route": scope.get("path_template"),
            "status": status,
            "duration_ms": millis,
            "http_version": version,
        },
    )


__all__ = ["ACCESS_LOGGER", "request_context"]

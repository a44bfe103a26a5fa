"""The HTTP server's limits: how long a client may take over a request, how many may connect.

uvicorn on its own waits for a request's headers for as long as the client likes: 300
half-sent requests stayed open until the client gave up, bounded only by the file
descriptor limit. Three settings bound that:

- ``http_header_timeout_seconds``: a connection must complete a request's headers within
  this long of opening, or of the first byte after the previous answer (idle keep-alive
  connections are closed by uvicorn's own keep-alive timeout before that). Enforced here, in
  the HTTP protocol, since no request exists for the app to see yet; the client gets a bare
  ``408`` and the connection is closed.
- ``http_body_timeout_seconds``: the whole body must arrive within this long of the
  headers. Enforced in the app (``service.api.bodies.deadline_receive``), so the answer is a
  ``408`` in the API's own error form.
- ``http_max_connections``: connections beyond it are answered ``503`` by uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from service.settings import Settings

_TIMEOUT_BODY = b"the request headers took too long to arrive\n"
#: What a connection too slow with its headers gets before it is closed.
REQUEST_TIMEOUT = b"".join(
    [
        b"HTTP/1.1 408 Request Timeout\r\n",
        b"content-type: text/plain; charset=utf-8\r\n",
        b"content-length: %d\r\n" % len(_TIMEOUT_BODY),
        b"connection: close\r\n\r\n",
        _TIMEOUT_BODY,
    ]
)


def header_timeout_protocol(seconds: float, base: Any = AutoHTTPProtocol) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (``base``), closing connections slow to send their headers.

    It relies on what both of uvicorn's HTTP/1.1 protocols have: ``transport``, ``loop`` and
    the current request's ``cycle`` (made once a request's headers are complete, with a
    ``response_complete`` flag).
    """
    if not seconds > 0:
        raise ValueError(f"a header timeout must be positive, got {seconds}")

    class HeaderTimeoutProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None
        _timed_cycle: Any = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                self._disarm()  # closed, or upgraded to a WebSocket: no longer ours to time
                return
            cycle = self.cycle
            if cycle is not None and cycle is not self._timed_cycle:
                self._timed_cycle = cycle  # a request's headers are complete
                self._disarm()
            elif cycle is None or cycle.response_complete:
                self._arm()  # bytes of a request whose headers are still to come

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _expire(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            cycle = self.cycle
            if cycle is not None and cycle is self._timed_cycle and not cycle.response_complete:
                return  # a request is being answered: its body has a deadline of its own
            self.transport.write(REQUEST_TIMEOUT)
            self.transport.close()

    return HeaderTimeoutProtocol


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``uvicorn.run`` for ``settings``: address, logs and limits."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        # uvicorn's records go through the service's handler; the app writes the access log.
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "http": header_timeout_protocol(settings.http_header_timeout_seconds),
        "limit_concurrency": settings.http_max_connections,
    }


__all__ = ["REQUEST_TIMEOUT", "header_timeout_protocol", "uvicorn_options"]

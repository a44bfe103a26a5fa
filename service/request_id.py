"""The id that follows one request through the load balancer, a replica and every log line.

A client (or nginx, which passes its own ``$request_id`` when the client sent none) names the
request in ``X-Request-ID``; an id that does not fit :data:`PATTERN` (too long, or characters
that could forge a log line) is replaced by a new one rather than trusted. The id of the
request being served lives in a context variable, so log records, error bodies and spans made
anywhere below the request (worker threads included: ``asyncio.to_thread`` copies the
context) can read it without it being passed along.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar, Token
from typing import Final

HEADER: Final = "X-Request-ID"
#: What an incoming id may look like: nginx's 32 hex digits, UUIDs, ULIDs and the like.
#: ``deploy/nginx/forecast.conf`` applies the same rule before it forwards one.
PATTERN: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_current: ContextVar[str | None] = ContextVar("forecast_request_id", default=None)


def new_id() -> str:
    """A fresh id: 32 hex digits, the form nginx's ``$request_id`` has."""
    return os.urandom(16).hex()


def accept(incoming: bytes | str | None) -> str:
    """The id to use for a request that came with ``incoming`` (or none): it, or a new one."""
    if incoming:
        text = incoming.decode("latin-1") if isinstance(incoming, bytes) else incoming
        if PATTERN.fullmatch(text):
            return text
    return new_id()


def current() -> str | None:
    """The id of the request being served here, or None outside any request."""
    return _current.get()


def bind(request_id: str | None) -> Token[str | None]:
    """Make ``request_id`` current; returns the token :func:`unbind` takes to undo it."""
    return _current.set(request_id)


def unbind(token: Token[str | None]) -> None:
    _current.reset(token)


__all__ = ["HEADER", "PATTERN", "accept", "bind", "current", "new_id", "unbind"]

"""Request bodies and WebSocket messages: bounded in nesting before they are decoded, and
bodies bounded in the time they take to arrive.

JSON decoders recurse: ``{"a":`` repeated 5,000 times made every decoder of the service
raise ``RecursionError`` (a 500 on REST and v2, a dead task on the WebSocket). No body the
service understands nests deeper than 8 levels, so anything deeper than
:data:`MAX_JSON_DEPTH` is refused as malformed (400) before a decoder sees it.

The check costs nothing for ordinary bodies: one with at most ``MAX_JSON_DEPTH`` brackets
cannot nest deeper, and counting brackets is a C loop. Only bodies with more (bulk requests)
are scanned, with numpy, at well under a microsecond per stream of a bulk request.

A body must also arrive within ``http_body_timeout_seconds`` of its headers
(:func:`body_deadline`): a client that stops half way gets a 408 in the API's error form and
the connection is closed, instead of holding it for as long as it likes.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import msgspec
import numpy as np
from litestar import Request
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from service.errors import MalformedInput

#: Deepest nesting of arrays and objects accepted in a body or message.
MAX_JSON_DEPTH: Final = 32


def _mark_table() -> bytes:
    """``bytes.translate`` table: each byte as its mark (int8): +1 opens an array or object,
    -1 closes one, 2 is a quote, 0 is anything else."""
    table = bytearray(256)
    table[ord("[")] = table[ord("{")] = 1
    table[ord("]")] = table[ord("}")] = 0xFF
    table[ord('"')] = 2
    return bytes(table)


_TABLE: Final = _mark_table()
#: An escape inside a string (the only place JSON allows a backslash) and its character.
_ESCAPE: Final = re.compile(rb"\\.", re.DOTALL)


class _IdOnly(msgspec.Struct):
    id: str | int | None = None


def json_depth(data: bytes | str) -> int:
    """How deeply the arrays and objects of a JSON text nest (0 for a bare value).

    Brackets inside strings do not count. For text that is not JSON the answer is some
    number; the decoder refuses such text anyway.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)  # an escape pair never opens, closes or ends anything
    marks = np.frombuffer(data.translate(_TABLE), dtype=np.int8)
    marks = marks[marks != 0]
    quotes = marks == 2
    in_string = (np.cumsum(quotes) & 1).astype(bool)  # after an odd number of quotes
    steps = np.where(quotes | in_string, 0, marks)
    return int(np.cumsum(steps, dtype=np.int64).max(initial=0))


def check_depth(data: bytes | str, what: str = "the request body") -> None:
    """Raise MalformedInput if ``data`` nests deeper than ``MAX_JSON_DEPTH``."""
    if isinstance(data, bytes):
        opening = data.count(b"[") + data.count(b"{")
    else:
        opening = data.count("[") + data.count("{")
    if opening <= MAX_JSON_DEPTH:  # a text cannot nest deeper than it has brackets
        return
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:
        raise MalformedInput(
            f"{what} nests arrays and objects {depth} levels deep; at most "
            f"{MAX_JSON_DEPTH} are accepted"
        )


def decode_json(data: bytes | str, what: str = "the request body") -> Any:
    """Decode a JSON body or message to Python objects, nesting bounded.

    Raises:
        MalformedInput: too deeply nested, not JSON (NaN and Infinity are not), not UTF-8,
            or a number no float or integer can hold.
    """
    check_depth(data, what)
    try:
        return msgspec.json.decode(data)
    except msgspec.MsgspecError as exc:
        raise MalformedInput(f"{what} is not valid JSON: {exc}") from None


def message_id(data: bytes | str) -> str | int | None:
    """The top-level ``id`` of a JSON object, when it can be read, for answers to echo.

    Best effort for messages that are refused anyway: None when there is no such id or the
    text cannot be read (a decoder that recurses too deep gives up rather than crashing).
    """
    try:
        return msgspec.json.decode(data, type=_IdOnly).id
    except (msgspec.MsgspecError, RecursionError):
        return None


class BoundedRequest(Request[Any, Any, Any]):
    """Litestar's request, with the nesting of JSON bodies bounded before they are decoded."""

    async def json(self) -> Any:
        check_depth(await self.body())
        return await super().json()


class RequestTimeout(HTTPException):
    """The body did not arrive in time; answered 408, and the connection is closed."""

    status_code = 408


def body_deadline(seconds: float) -> Any:
    """Litestar middleware: a request's body must arrive within ``seconds`` of its headers.

    Only reading the body is timed; once it is in, ``receive`` waits as long as the handler
    likes (a streaming answer listens on it for the client going away).
    """
    if not seconds > 0:
        raise ValueError(f"a body timeout must be positive, got {seconds}")

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            deadline = asyncio.get_running_loop().time() + seconds
            body_done = False

            async def timed_receive() -> ReceiveMessage:
                nonlocal body_done
                if body_done:
                    return await receive()
                try:
                    async with asyncio.timeout_at(deadline):
                        message = await receive()
                except TimeoutError:
                    raise RequestTimeout(
                        f"the request body did not arrive within {seconds:g} s",
                        headers={"Connection": "close"},
                    ) from None
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                return message

            await app(scope, timed_receive, send)

        return middleware

    return wrap


__all__ = [
    "MAX_JSON_DEPTH",
    "BoundedRequest",
    "RequestTimeout",
    "body_deadline",
    "check_depth",
    "decode_json",
    "json_depth",
    "message_id",
]

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
(:func:`deadline_receive`): a client that stops half way gets a 408 in the API's error form and
the connection is closed, instead of holding it for as long as it likes.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, Final

import msgspec
import numpy as np
from litestar import Request
from litestar.exceptions import HTTPException, SerializationException
from litestar.types import Receive, ReceiveMessage

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
#: Where msgspec says a JSON text went wrong.
_AT_BYTE: Final = re.compile(r"\(byte (\d+)\)")
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
        raise MalformedInput(f"{what} is not valid JSON: {explained(str(exc), data)}") from None


def explained(error: str, data: bytes | str) -> str:
    """A decoder's error, saying so when the culprit is a NaN or Infinity literal.

    Python's ``json.dumps`` (and so ``tritonclient``) writes non-finite floats that way, and
    "invalid character" would leave a client guessing.
    """
    at = _AT_BYTE.search(error)
    if at is not None:
        raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
        if raw[int(at[1]) :].startswith((b"NaN", b"Infinity", b"-Infinity")):
            return (
                f"NaN and Infinity are not numbers in JSON (byte {at[1]}); every value must "
                "be a finite number"
            )
    return error


def message_id(data: bytes | str) -> str | int | None:
    """The top-level ``id`` of a JSON object, when it can be read, for answers to echo.

    For messages refused anyway: a valid one is decoded (nothing but the id is kept); one
    that is not valid or nests too deep is searched for a top-level ``"id":`` followed by a
    string or an integer. None when there is no such id.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        check_depth(raw)
        return msgspec.json.decode(raw, type=_IdOnly).id
    except (MalformedInput, msgspec.MsgspecError):
        return _top_level_id(raw)


#: A key "id" and its string or integer value (in text whose escapes are neutralised).
_ID_MEMBER: Final = re.compile(rb'"id"\s*:\s*("[^"]*"|-?[0-9]+)')


def _top_level_id(data: bytes) -> str | int | None:
    """The value of an ``"id"`` key at depth 1 outside any string, found without decoding."""
    if b'"id"' not in data:
        return None
    neutral = _ESCAPE.sub(b"__", data)  # same length, so positions stay those of ``data``
    marks = np.frombuffer(neutral.translate(_TABLE), dtype=np.int8)
    quotes = marks == 2
    quotes_before = np.cumsum(quotes) - quotes
    in_string = (quotes_before & 1).astype(bool)
    depth = np.cumsum(np.where(quotes | in_string, 0, marks), dtype=np.int64)
    for member in _ID_MEMBER.finditer(neutral):
        at = member.start()
        if not in_string[at] and depth[at] == 1:
            try:
                value = msgspec.json.decode(data[member.start(1) : member.end(1)])
            except msgspec.MsgspecError:
                return None
            return value if isinstance(value, str | int) else None
    return None


class BoundedRequest(Request[Any, Any, Any]):
    """Litestar's request, with the nesting of JSON bodies bounded before they are decoded."""

    async def json(self) -> Any:
        body = await self.body()
        check_depth(body)
        try:
            return await super().json()
        except SerializationException as exc:
            detail = explained(str(exc), body)
            raise MalformedInput(f"the request body is not valid JSON: {detail}") from None


class RequestTimeout(HTTPException):
    """The body did not arrive in time; answered 408, and the connection is closed."""

    status_code = 408


def deadline_receive(receive: Receive, seconds: float, loop_time: float) -> Receive:
    """``receive`` for one HTTP request whose body must arrive within ``seconds`` of
    ``loop_time`` (the event loop's clock when its headers were in).

    Only reading the body is timed; once it is in, ``receive`` waits as long as the handler
    likes (a streaming answer listens on it for the client going away). A body that does not
    arrive in time raises :class:`RequestTimeout` where the handler reads it, so the answer is
    a 408 in the API's error form.
    """
    deadline = loop_time + seconds
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

    return timed_receive


__all__ = [
    "MAX_JSON_DEPTH",
    "BoundedRequest",
    "RequestTimeout",
    "check_depth",
    "deadline_receive",
    "decode_json",
    "explained",
    "json_depth",
    "message_id",
]

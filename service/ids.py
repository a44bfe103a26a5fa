"""The one grammar of the names clients give streams: REST stream ids, v2 sequence ids.

An id is any Unicode text of 1 to 256 bytes in UTF-8 with no control characters: none of
C0 (U+0000-U+001F), DEL, C1 (U+0080-U+009F), and not the line and paragraph separators
U+2028/U+2029, so an id can never break a log line or a header. Everything else is allowed:
``plant/line-1/temp``, ``Kühlhaus 3``, Greek or Cyrillic letters, spaces, braces and colons. Ids are
compared as given, byte for byte: no case folding and no Unicode normalisation.

Every interface applies this rule through :func:`check_id` (the core checks every stream id
it is handed, so REST paths, bulk items, WebSocket messages, server-sent events and v2
sequences cannot drift apart); how an id becomes a store key is ``service.state.keys``.

A v2 sequence lives in the stream namespace under a prefix: the integer sequence 42 is the
stream ``v2:42``, the string sequence ``pump-7`` the stream ``v2:s:pump-7``. Such a stream id
may be longer than 256 bytes by its prefix, so that every valid sequence id has a stream.
"""

from __future__ import annotations

import re
from typing import Final

from service.errors import InvalidInput

#: Most bytes of an id in UTF-8.
MAX_ID_BYTES: Final = 256
#: Stream ids of v2 sequences: ``v2:<uint64>`` and ``v2:s:<id>``.
SEQUENCE_PREFIX: Final = "v2:"
STRING_SEQUENCE_PREFIX: Final = "v2:s:"

#: Characters an id may not hold: C0, DEL, C1, U+2028, U+2029, and lone surrogates (which
#: are not text and have no UTF-8 form).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

#: The rule in words, for error messages and the API's description.
ID_RULE: Final = (
    f"1-{MAX_ID_BYTES} bytes of UTF-8 text without control characters (U+0000-U+001F, "
    "U+007F-U+009F, U+2028, U+2029); anything else is allowed, '/' and spaces included "
    "(percent-encode them in a URL path)"
)
#: The character rule as an ECMA-262 pattern (JSON Schema): lengths are bytes, so checked
#: apart from it.
ID_JSON_PATTERN: Final = "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]+$"


def id_problem(text: str) -> str | None:
    """What is wrong with ``text`` as an id, or None when it is one."""
    if not text:
        return "is empty"
    bad = _FORBIDDEN.search(text)
    if bad is not None:
        char = bad.group()
        what = "a lone surrogate" if "\ud800" <= char <= "\udfff" else "a control character"
        return f"holds {what} (U+{ord(char):04X}) at position {bad.start()}"
    size = len(text.encode("utf-8"))
    if size > MAX_ID_BYTES:
        return f"is {size} bytes in UTF-8, more than {MAX_ID_BYTES}"
    return None


def check_id(text: object, *, field: str, what: str = "id") -> str:
    """``text`` if it is a valid id; InvalidInput naming ``field`` otherwise.

    The message shows at most the id's first 40 characters, escaped, so a hostile id never
    reaches a log line or an answer raw.
    """
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a string", field=field)
    problem = id_problem(text)
    if problem is not None:
        raise InvalidInput(f"{what} {shown(text)} {problem}; ids are {ID_RULE}", field=field)
    return text


def check_stream_id(text: str, *, field: str = "stream_id") -> str:
    """A stream id: a valid id, or the stream of a v2 string sequence (its prefix + an id)."""
    check_id(text.removeprefix(STRING_SEQUENCE_PREFIX) or text, field=field, what="stream id")
    return text


def sequence_stream_id(sequence_id: int | str) -> str:
    """The stream of a v2 sequence; the caller has checked the id (``check_id``, uint64)."""
    if isinstance(sequence_id, int):
        return f"{SEQUENCE_PREFIX}{sequence_id}"
    return f"{STRING_SEQUENCE_PREFIX}{sequence_id}"


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message: escaped, and cut after ``limit`` characters."""
    if len(text) > limit:
        return repr(text[:limit])[:-1] + "...'"
    return repr(text)


__all__ = [
    "ID_JSON_PATTERN",
    "ID_RULE",
    "MAX_ID_BYTES",
    "SEQUENCE_PREFIX",
    "STRING_SEQUENCE_PREFIX",
    "check_id",
    "check_stream_id",
    "id_problem",
    "sequence_stream_id",
    "shown",
]

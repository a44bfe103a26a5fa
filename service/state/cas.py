"""The compare-and-set every backend runs: its rule, its Lua script and its wire format.

One batch is a sequence of items ``(key, expected, value)``:

- ``expected`` is ``None`` (the key must not exist), a 16-byte *token* (incarnation + seq:
  this stream at this position) or an 86-byte *stamp* (the record's header, write nonce
  included: exactly this record; see ``record.py``).
- ``value`` is the new record, or ``None`` to only *verify* that ``expected`` still holds
  (a reading answered as a duplicate from a cached record writes nothing, but must still be
  proven current).

An item succeeds when ``expected`` holds, or when the key already holds ``value`` (the
same header, write nonce included: a call retried after its reply was lost reports the
write that landed; every record carries a random nonce, so this matches only a writer's
own retry). A succeeding write
stores ``value`` with a fresh time to live; items apply in order, so a key given twice
sees the first item's write. Each item's outcome is ``True`` when it succeeded, and
otherwise the record now stored (``None``: none), so a writer that lost can step again from
it without reading it back.

The rule is written twice, in Lua for Redis (``CAS_BODY``, one script for one server and for
each node of a cluster) and in Python for the embedded store (``succeeds``); the contract
suite runs the same cases against both. On the wire a batch is one argument (``pack``):
redis-py packs every argument in Python, ~0.7 µs each, so 3 per item cost more than the
script itself.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Literal, Protocol

from service.state.record import HEADER_SIZE, STAMP_SIZE, TOKEN_SIZE, TOKEN_SLICE

#: An item of a batch: key, expected token or stamp (None: must not exist), new record
#: (None: verify only).
Item = tuple[str, bytes | None, bytes | None]
#: True (written or verified), or the record the key holds now (None: none).
Outcome = Literal[True] | bytes | None

#: Per item: key length, expected length, value length (0 each for "none").
_ITEM_HEAD = struct.Struct("<HHI")
_MAX_KEY = 0xFFFF

#: ARGV[1]: the time to live in milliseconds; ARGV[2]: the items, each ``_ITEM_HEAD`` and
#: then its key, expected token or stamp, and value. Only each record's header (its first 86
#: bytes: token, model, sizes, write nonce) is read, not the whole record, and all of them
#: before any write, so a cluster node that does not serve one of the keys (a stale slot
#: map) refuses the whole call before writing (the error starts with NOTLOCAL). A value whose
#: header is already stored is this very write, retried. Returns per item 1, or the current
#: record (0 for none). PSETEX, not SET with PX: one argument fewer to pass from Lua per key.
CAS_BODY = """
local ttl = ARGV[1]
local blob = ARGV[2]
local keys, expected, values = {}, {}, {}
local pos, n, size = 1, 0, #blob
while pos <= size do
  local kl, el, vl
  kl, el, vl, pos = struct.unpack('<HHI4', blob, pos)
  n = n + 1
  keys[n] = string.sub(blob, pos, pos + kl - 1)
  pos = pos + kl
  expected[n] = string.sub(blob, pos, pos + el - 1)
  pos = pos + el
  values[n] = string.sub(blob, pos, pos + vl - 1)
  pos = pos + vl
end
local heads = {}
for i = 1, n do
  local reply = redis.pcall('GETRANGE', keys[i], 0, 85)
  if type(reply) == 'table' and reply.err then
    return redis.error_reply('NOTLOCAL ' .. reply.err)
  end
  heads[i] = reply
end
local written = {}
local results = {}
for i = 1, n do
  local key, want, value = keys[i], expected[i], values[i]
  local head = written[key] or heads[i]
  local ok
  if want == '' then
    ok = head == ''
  elseif #want == 16 then
    ok = string.sub(head, 5, 20) == want
  else
    ok = head == want
  end
  if value ~= '' then
    ok = ok or (head ~= '' and head == string.sub(value, 1, 86))
    if ok then
      redis.call('PSETEX', key, ttl, value)
      written[key] = string.sub(value, 1, 86)
    end
  end
  if ok then
    results[i] = 1
  else
    results[i] = redis.call('GET', key) or 0
  end
end
return results
"""


def check_expected(expected: bytes | None) -> bytes:
    """The wire form of an expected token or stamp: empty for "must not exist"."""
    if expected is None:
        return b""
    if len(expected) not in (TOKEN_SIZE, STAMP_SIZE):
        raise ValueError(
            f"a compare-and-set token is {TOKEN_SIZE} bytes (or a stamp {STAMP_SIZE}), "
            f"got {len(expected)}"
        )
    return bytes(expected)


def pack(items: Sequence[Item]) -> bytes:
    """The items as ``CAS_BODY``'s ARGV[2]; refuses what no backend could honour."""
    parts: list[bytes] = []
    head = _ITEM_HEAD.pack
    for key, expected, value in items:
        raw_key = key.encode("utf-8")
        if len(raw_key) > _MAX_KEY:
            raise ValueError(f"a key is at most {_MAX_KEY} bytes, got {len(raw_key)}")
        want = check_expected(expected)
        new = b"" if value is None else value
        parts.append(head(len(raw_key), len(want), len(new)) + raw_key + want + new)
    return b"".join(parts)


def outcomes(reply: Sequence[int | bytes]) -> list[Outcome]:
    """``CAS_BODY``'s reply as one outcome per item."""
    return [True if r == 1 else (None if r == 0 else bytes(r)) for r in reply]


def succeeds(current: bytes | None, expected: bytes | None, value: bytes | None) -> bool:
    """The rule of ``CAS_BODY`` for one item, for stores that run in this process."""
    if current is None:
        return expected is None
    if value is not None and current[:HEADER_SIZE] == value[:HEADER_SIZE]:
        return True  # this very write, retried
    if expected is None:
        return False
    if len(expected) == TOKEN_SIZE:
        return current[TOKEN_SLICE] == expected
    return current[:HEADER_SIZE] == expected


class _Commits(Protocol):
    async def commit_many(self, items: Sequence[Item], ttl_seconds: float) -> list[Outcome]: ...


class CompareAndSet:
    """``compare_and_set`` and ``compare_and_set_many`` of a store that has ``commit_many``."""

    async def compare_and_set(
        self: _Commits, key: str, expected_token: bytes | None, value: bytes, ttl_seconds: float
    ) -> bool:
        (outcome,) = await self.commit_many([(key, expected_token, value)], ttl_seconds)
        return outcome is True

    async def compare_and_set_many(
        self: _Commits,
        items: Sequence[tuple[str, bytes | None, bytes]],
        ttl_seconds: float,
    ) -> list[bool]:
        if not items:
            return []
        return [outcome is True for outcome in await self.commit_many(items, ttl_seconds)]

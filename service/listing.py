"""Paging through one tenant's streams (``GET /v1/streams``), on every store alike.

The store scans keys by their beginning (``StateStore.scan``): the tenant's key start, plus
the tagged id prefix asked for (``service.state.keys.tenant_streams``), so no other tenant's
key can come up. A Redis server is one shard; a Redis Cluster has one per primary, scanned in
turn; the embedded store answers its shard in one sorted step.

A page holds at most ``limit`` streams. A scan step may bring more than fit: the page then
ends inside the step, and its cursor says so (the step's start, and the last stream id
taken): the next page takes that step again and keeps the keys sorting after that one. The
cursor is opaque to clients (URL-safe base64 of JSON) and only ever reaches the caller's own
tenant's keys, whatever it holds; one that does not decode, or names a shard the store does
not have, is refused (400).

Redis's SCAN guarantees carry over: a stream that exists for the whole listing is listed; one
created or deleted meanwhile may or may not be; a stream may (rarely, across a rehash) come
twice. A cluster failover between two pages may repeat or miss some.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass

from service.errors import MalformedInput
from service.state.base import StateStore
from service.state.keys import stream_id_of, stream_key, tenant_streams
from service.state.record import NO_TIMESTAMP, RecordError, StreamRecord

log = logging.getLogger(__name__)

#: Most streams a page may hold.
MAX_LIMIT = 1000
#: Scan steps one page takes at most (a sparse prefix in a big keyspace finds few per step).
MAX_STEPS = 64
#: The cursor format's version, the first item of its JSON.
_FORMAT = 1


class InvalidCursor(MalformedInput):
    """A cursor this listing did not hand out (or one for another prefix)."""

    title = "Invalid cursor"
    code = "invalid-cursor"


@dataclass(frozen=True, slots=True)
class StreamSummary:
    stream_id: str
    model: str
    version: int
    seq: int
    last_ts: float | None


@dataclass(frozen=True, slots=True)
class Position:
    """Where a listing goes on: the shard, its scan cursor, and the last id already taken
    from the step at that cursor ("" when none was)."""

    shard: int = 0
    scan: int = 0
    after: str = ""

    def encode(self, prefix: str) -> str:
        raw = json.dumps([_FORMAT, self.shard, self.scan, self.after, prefix]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str, prefix: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            version, shard, scan, after, made_for = json.loads(raw)
        except (binascii.Error, ValueError, TypeError):
            raise InvalidCursor(
                "the cursor is not one this service handed out", field="cursor"
            ) from None
        fields_ok = isinstance(shard, int) and isinstance(scan, int) and isinstance(after, str)
        if version != _FORMAT or not fields_ok or not (0 <= shard < 2**16 and 0 <= scan < 2**64):
            raise InvalidCursor("the cursor is not one this service handed out", field="cursor")
        if made_for != prefix:
            raise InvalidCursor(
                "the cursor belongs to a listing with another prefix", field="cursor"
            )
        return cls(shard, scan, after)


async def list_streams(
    store: StateStore,
    key_prefix: str,
    tenant: str,
    *,
    prefix: str = "",
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[StreamSummary], str | None]:
    """One page of ``tenant``'s streams whose id begins with ``prefix``, and the cursor of
    the next page (None: this was the last). A page may hold fewer than ``limit`` (even
    none) and still have a next one: a page stops after ``MAX_STEPS`` scan steps."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}, got {limit}")
    at = Position() if cursor is None else Position.decode(cursor, prefix)
    start = tenant_streams(key_prefix, tenant, prefix)
    keys: list[str] = []
    after = stream_key(key_prefix, tenant, at.after) if at.after else ""
    shard, scan = at.shard, at.scan
    following: Position | None = None
    for _ in range(MAX_STEPS):
        try:
            step = await store.scan(start, shard=shard, cursor=scan)
        except ValueError as exc:
            raise InvalidCursor(str(exc), field="cursor") from None
        fresh = sorted(k for k in set(step.keys) if k > after)
        room = limit - len(keys)
        if len(fresh) > room:  # the page ends inside this step
            keys += fresh[:room]
            following = Position(shard, scan, stream_id_of(key_prefix, tenant, keys[-1]) or "")
            break
        keys += fresh
        after = ""
        if step.cursor:
            scan = step.cursor
        elif shard + 1 < step.shards:
            shard, scan = shard + 1, 0
        else:
            following = None  # every shard scanned: the last page
            break
        following = Position(shard, scan)
        if len(keys) == limit:
            break
    summaries = await _summaries(store, key_prefix, tenant, list(dict.fromkeys(keys)))
    return summaries, None if following is None else following.encode(prefix)


async def _summaries(
    store: StateStore, key_prefix: str, tenant: str, keys: list[str]
) -> list[StreamSummary]:
    """Each stream's model and position, from its record; gone or unreadable ones left out."""
    out: list[StreamSummary] = []
    for key, raw in zip(keys, await store.get_many(keys), strict=True):
        stream_id = stream_id_of(key_prefix, tenant, key)
        if raw is None or stream_id is None:
            continue  # deleted or expired since the scan
        try:
            record = StreamRecord.decode(raw)
        except RecordError:
            log.warning("stream %r of tenant %r has an unreadable record", stream_id, tenant)
            continue
        last = None if record.last_ts == NO_TIMESTAMP else record.last_ts
        out.append(StreamSummary(stream_id, record.model, record.version, record.seq, last))
    return out


__all__ = ["MAX_LIMIT", "InvalidCursor", "StreamSummary", "list_streams"]

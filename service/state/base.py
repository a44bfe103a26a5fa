"""The state store protocol that every backend implements.

Stores deal in opaque encoded records (see ``record.py``); the only thing they know about a
record is where its compare-and-set token (bytes 4..20) and write nonce (bytes 74..82) sit.
The compare-and-set rule itself is written once for every backend, in ``cas.py``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.state.cas import Item, Outcome


@dataclass(frozen=True, slots=True)
class ScanStep:
    """One step of a scan over one shard (a Redis Cluster primary; the one server otherwise).

    ``cursor`` 0: the shard has no more; ``shards``: how many the store has now.
    """

    keys: list[str]
    cursor: int
    shards: int


#: Keys a scan step looks at (Redis's COUNT hint). Fixed, so a step taken again from the same
#: cursor covers the same keys (listing resumes a page cut inside a step that way).
SCAN_COUNT = 512


@runtime_checkable
class StateStore(Protocol):
    """Async key-value store with per-key compare-and-set and idle expiry.

    Every method raises ``service.errors.StoreUnavailable`` when the backend cannot be
    reached or does not answer within the configured timeout; never anything else for an
    outage, and never a silent empty answer.
    """

    async def get(self, key: str) -> bytes | None:
        """The record under ``key``, or None if there is none (never stored, deleted, expired)."""
        ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """``get`` for many keys in one round trip, in the order given."""
        ...

    async def commit_many(self, items: Sequence[Item], ttl_seconds: float) -> list[Outcome]:
        """Compare-and-set (or verify) many ``(key, expected, value)`` in one round trip.

        The rule is ``service.state.cas``'s: each item succeeds or fails on its own, in
        order; its outcome is True, or the record the key holds now (None: none), so the
        caller can step again from it without another read.
        """
        ...

    async def compare_and_set(
        self, key: str, expected_token: bytes | None, value: bytes, ttl_seconds: float
    ) -> bool:
        """Store ``value`` if the current record's token equals ``expected_token``.

        ``expected_token=None`` means the key must not exist. Returns False, writing
        nothing, when the condition does not hold. The key expires ``ttl_seconds`` after
        this write unless written again.

        A key that already holds exactly ``value`` counts as written (True, TTL refreshed),
        so a call retried after its reply was lost reports the write that landed. Every
        record carries a random write nonce, so this matches only a writer's own retry:
        two replicas that compute the same update still write different bytes, and the
        slower one loses the race and sees the observation as a duplicate.
        """
        ...

    async def compare_and_set_many(
        self, items: Sequence[tuple[str, bytes | None, bytes]], ttl_seconds: float
    ) -> list[bool]:
        """``compare_and_set`` for many ``(key, expected_token, value)`` in one round trip.

        Each item succeeds or fails on its own.
        """
        ...

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store ``value`` unconditionally (stream creation or reset)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        ...

    async def time_left(self, keys: Sequence[str]) -> list[float | None]:
        """Seconds until each key expires, in one round trip, in the order given.

        None for a key that does not exist (never stored, deleted, expired); ``math.inf`` for
        one that never expires.
        """
        ...

    # A quota is a set of members, each with a score: a deadline in the store's own clock
    # (whole milliseconds), so replicas with skewed clocks agree on it. Scores are opaque to
    # callers: they are read to be handed back to ``quota_settle``, never compared to a
    # clock of the caller's.

    async def quota_admit(self, quota: str, member: str, ttl_seconds: float, limit: int) -> bool:
        """Count ``member`` in ``quota`` if it is already counted or fewer than ``limit`` are.

        Atomic: of callers racing for the last free place exactly one gets it. An admitted
        member's score becomes the store's now + ``ttl_seconds`` (rounded down), or its old
        score + 1 ms if that is later: every admission changes the score, which is how
        ``quota_settle`` tells a member admitted again since it was read. Returns False,
        changing nothing, when ``limit`` others are counted.
        """
        ...

    async def quota_lapsed(self, quota: str, count: int) -> list[tuple[str, float]]:
        """Up to ``count`` members whose score is not in the future, lowest first, with it."""
        ...

    async def quota_score(self, quota: str, member: str) -> float | None:
        """``member``'s score, or None if it is not counted."""
        ...

    async def quota_settle(
        self, quota: str, items: Sequence[tuple[str, float, float | None]]
    ) -> int:
        """Apply ``(member, seen_score, seconds_left)`` to members still scored ``seen_score``.

        Such a member is removed when ``seconds_left`` is None, else scored the store's now
        + ``seconds_left`` (rounded down). A member whose score differs was admitted again
        (or settled by someone else) since it was read and is left alone, so a stream
        created again meanwhile is never uncounted. Atomic; returns how many were removed.
        """
        ...

    async def scan(self, start: str, *, shard: int, cursor: int) -> ScanStep:
        """Keys beginning with ``start`` (live ones) from ``shard``, continuing at ``cursor``.

        Redis's SCAN rules: a key present for the whole scan is returned at least once, one
        added or removed meanwhile may or may not be; a step may return none. ``ValueError``
        for a shard or cursor the store does not have.
        """
        ...

    async def ping(self) -> None:
        """Return if the backend answers, raise ``StoreUnavailable`` otherwise."""
        ...

    async def close(self) -> None:
        """Release connections the store opened itself."""
        ...


def quota_ttl_ms(ttl_seconds: float, limit: int) -> int:
    """A quota score's lifetime in whole milliseconds, rounded down so it never outlives
    the stream it counts; refuses what can only be a caller's bug, the same on every backend.
    """
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
    if limit < 1:
        raise ValueError(f"a quota limit is at least 1, got {limit}")
    return math.floor(ttl_seconds * 1000)


def check_count(count: int) -> None:
    """Refuse a page size of ``quota_lapsed`` that could only be a caller's bug."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")


def settle_left_ms(seconds_left: float | None) -> int | None:
    """``quota_settle``'s time left in whole milliseconds (rounded down), None kept."""
    if seconds_left is None:
        return None
    if not 0 <= seconds_left < math.inf:
        raise ValueError(f"seconds_left must be finite and not negative, got {seconds_left}")
    return math.floor(seconds_left * 1000)


__all__ = ["SCAN_COUNT", "ScanStep", "StateStore", "check_count", "quota_ttl_ms", "settle_left_ms"]

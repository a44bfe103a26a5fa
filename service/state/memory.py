"""The embedded in-process store: the default, so the service runs with nothing else installed.

State lives in this process only and is lost when it exits. Every operation runs to its end
without awaiting, so on one event loop each read-modify-write is atomic, exactly like a Lua
script on Redis.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence

from service.state.base import ScanStep, check_count, quota_ttl_ms, settle_left_ms
from service.state.cas import CompareAndSet, Item, Outcome, check_expected, succeeds

#: Run a sweep after this many operations ...
_SWEEP_EVERY = 32
#: ... looking at no more than this many entries, so no call ever pays for the whole store.
_SWEEP_BATCH = 64


class MemoryStore(CompareAndSet):
    """A dict of key -> (record, monotonic deadline) with lazy expiry and a bounded sweep.

    Expired entries are dropped when touched, and every ``_SWEEP_EVERY`` operations a sweep
    visits the ``_SWEEP_BATCH`` least recently written entries, dropping the expired ones and
    rotating the live ones to the back. So memory follows the live streams, not every stream
    ever seen, at a cost of a few entries per operation.
    """

    def __init__(self) -> None:
        # Ordered by last write (each write moves its key to the back), so with one idle
        # timeout for all streams the entries that expire first sit at the front.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._ops_since_sweep = 0
        # quota -> member -> score (monotonic milliseconds). Bounded by the callers' limits.
        self._quotas: dict[str, dict[str, int]] = {}

    def __len__(self) -> int:
        """How many entries are held, expired ones not yet dropped included (for tests)."""
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        self._tick()
        return self._live(key, time.monotonic())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._tick()
        now = time.monotonic()
        return [self._live(key, now) for key in keys]

    async def commit_many(self, items: Sequence[Item], ttl_seconds: float) -> list[Outcome]:
        for _, expected, _ in items:
            _check_args(expected, ttl_seconds)
        self._tick()
        now = time.monotonic()
        return [
            self._commit(key, expected, value, ttl_seconds, now) for key, expected, value in items
        ]

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        _check_args(None, ttl_seconds)
        self._tick()
        self._write(key, value, ttl_seconds, time.monotonic())

    async def delete(self, key: str) -> bool:
        self._tick()
        existed = self._live(key, time.monotonic()) is not None
        self._entries.pop(key, None)
        return existed

    async def time_left(self, keys: Sequence[str]) -> list[float | None]:
        self._tick()
        now = time.monotonic()
        left: list[float | None] = []
        for key in keys:
            alive = self._live(key, now) is not None
            left.append(self._entries[key][1] - now if alive else None)
        return left

    async def quota_admit(self, quota: str, member: str, ttl_seconds: float, limit: int) -> bool:
        ttl_ms = quota_ttl_ms(ttl_seconds, limit)
        members = self._quotas.get(quota, {})
        current = members.get(member)
        if current is None and len(members) >= limit:
            return False
        score = _now_ms() + ttl_ms
        if current is not None:
            score = max(score, current + 1)
        self._quotas.setdefault(quota, members)[member] = score
        return True

    async def quota_lapsed(self, quota: str, count: int) -> list[tuple[str, float]]:
        check_count(count)
        now = _now_ms()
        members = self._quotas.get(quota, {})
        lapsed = sorted((score, member) for member, score in members.items() if score <= now)
        return [(member, float(score)) for score, member in lapsed[:count]]

    async def quota_score(self, quota: str, member: str) -> float | None:
        score = self._quotas.get(quota, {}).get(member)
        return None if score is None else float(score)

    async def quota_settle(
        self, quota: str, items: Sequence[tuple[str, float, float | None]]
    ) -> int:
        lefts = [settle_left_ms(left) for _, _, left in items]
        members = self._quotas.get(quota, {})
        now = _now_ms()
        removed = 0
        for (member, seen, _), left in zip(items, lefts, strict=True):
            if members.get(member) != seen:
                continue
            if left is None:
                del members[member]
                removed += 1
            else:
                members[member] = now + left
        if not members:
            self._quotas.pop(quota, None)
        return removed

    async def scan(self, start: str, *, shard: int, cursor: int) -> ScanStep:
        """Every live key beginning with ``start``, sorted, in one step (one shard)."""
        if shard != 0 or cursor != 0:
            raise ValueError("the embedded store has one shard, scanned in one step")
        self._tick()
        now = time.monotonic()
        keys = [k for k, (_, deadline) in self._entries.items() if k.startswith(start)]
        return ScanStep(sorted(k for k in keys if self._live(k, now) is not None), 0, 1)

    async def ping(self) -> None:
        """Always answers: the store is this process."""

    async def close(self) -> None:
        """Nothing to release; the data stays readable until the object is dropped."""

    def _live(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline <= now:
            del self._entries[key]
            return None
        return value

    def _commit(
        self, key: str, expected: bytes | None, value: bytes | None, ttl_seconds: float, now: float
    ) -> Outcome:
        current = self._live(key, now)
        if not succeeds(current, expected, value):
            return current
        if value is not None:
            self._write(key, value, ttl_seconds, now)
        return True

    def _write(self, key: str, value: bytes, ttl_seconds: float, now: float) -> None:
        self._entries[key] = (bytes(value), now + ttl_seconds)
        self._entries.move_to_end(key)

    def _tick(self) -> None:
        self._ops_since_sweep += 1
        if self._ops_since_sweep >= _SWEEP_EVERY:
            self._ops_since_sweep = 0
            self.sweep(_SWEEP_BATCH)

    def sweep(self, limit: int) -> int:
        """Visit up to ``limit`` entries from the front; drop expired ones. Returns how many."""
        now = time.monotonic()
        dropped = 0
        for _ in range(min(limit, len(self._entries))):
            key, (_, deadline) = next(iter(self._entries.items()))
            if deadline <= now:
                del self._entries[key]
                dropped += 1
            else:
                self._entries.move_to_end(key)
        return dropped


def _check_args(token: bytes | None, ttl_seconds: float) -> None:
    """Refuse what can only be a caller's bug, the same way every backend does."""
    check_expected(token)
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")


def _now_ms() -> int:
    """The clock of quota scores: this process's monotonic clock, in whole milliseconds."""
    return math.floor(time.monotonic() * 1000)

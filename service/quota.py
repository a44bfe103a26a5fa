"""How many streams a tenant keeps: counted at creation, with no cost to observations.

Each tenant has a quota in the store (``keys.quota_key``): the ids of its streams, each
scored with a deadline no later than the stream's expiry as known when it was scored.

- Creating a stream first *admits* it, atomically in the store: allowed when it is counted
  already (a replace is never counted twice) or fewer than the limit are; admitting scores
  it now + the stream TTL, and the record is written after that, so the score is early.
- Observations refresh a stream's expiry but not its score: the hot path pays nothing. So a
  member scored in the future is certainly alive, and one scored in the past only *may* be
  gone. Only when a create finds the tenant at its limit are those lapsed members looked
  at: each stream key's remaining time is asked for, a gone stream is uncounted and a live
  one re-scored to its real expiry. That costs O(lapsed members), never a keyspace scan.
- Every change to a member read earlier is conditional on its score being unchanged, and
  every admission changes the score; so a stream created again (or deleted) by another
  replica between the read and the change is never uncounted by mistake. What can go wrong
  (an outage between admission and the write, or between the deletion and the uncounting)
  leaves a member counted with no stream: over-counted, never under, until it lapses and
  the next prune finds its stream gone.

On a Redis Cluster the quota sits in its own slot (the tenant is its hash tag) and the
streams in theirs, so scores are in the quota node's clock while a stream's remaining time
is measured on its own node; the time spent between the two calls is taken off, so a score
is late by at most the difference of two one-way network delays. A late score only counts a
stream a moment longer than it lives; an early one costs one more remaining-time query.

Streams created while the limit was 0 (off) are not counted; a limit lowered below the
count refuses creates until deletes and expiry bring the count under it.
"""

from __future__ import annotations

import time

from service.errors import StreamLimitExceeded
from service.metrics import Metrics
from service.state.base import StateStore
from service.state.keys import quota_key, stream_key

#: Lapsed members looked at per round trip while pruning.
PRUNE_PAGE = 256


class StreamQuota:
    """The per-tenant stream limit of one service, over its store.

    Args:
        store: The state store the streams live in.
        metrics: Refused creations are counted in ``streams_refused``.
        key_prefix: Namespace of the service's keys (the streams' and the quotas').
        limit: Most streams per tenant; 0 turns the limit off and makes no store call at all.
        ttl_seconds: The streams' idle expiry, the lifetime of an admission's score.
    """

    def __init__(
        self,
        store: StateStore,
        metrics: Metrics,
        *,
        key_prefix: str,
        limit: int,
        ttl_seconds: float,
    ) -> None:
        if limit < 0:
            raise ValueError(f"the stream limit is 0 (off) or more, got {limit}")
        self._store = store
        self._refused = metrics.streams_refused
        self._prefix = key_prefix
        self._limit = limit
        self._ttl = ttl_seconds

    async def admit(self, tenant: str, stream_id: str) -> None:
        """Count the stream before it is written, or raise ``StreamLimitExceeded``.

        Refused once, lapsed members are pruned and admission is tried once more; refused
        again, nothing has changed but the scores of streams found alive.
        """
        if not self._limit:
            return
        quota = quota_key(self._prefix, tenant)
        if await self._store.quota_admit(quota, stream_id, self._ttl, self._limit):
            return
        await self._prune(tenant, quota)
        if await self._store.quota_admit(quota, stream_id, self._ttl, self._limit):
            return
        self._refused.labels(StreamLimitExceeded.code).inc()
        raise StreamLimitExceeded(
            f"tenant {tenant!r} keeps {self._limit} stream(s), the most allowed "
            "(max_streams_per_tenant); delete one, or let idle ones expire, first",
            limit=self._limit,
        )

    async def seen(self, tenant: str, stream_id: str) -> float | None:
        """The stream's score before it is deleted, for ``release`` (None: not counted)."""
        if not self._limit:
            return None
        return await self._store.quota_score(quota_key(self._prefix, tenant), stream_id)

    async def release(self, tenant: str, stream_id: str, seen: float | None) -> None:
        """Uncount a deleted stream, unless it was admitted again since ``seen`` was read."""
        if seen is None:
            return
        await self._store.quota_settle(quota_key(self._prefix, tenant), [(stream_id, seen, None)])

    async def _prune(self, tenant: str, quota: str) -> None:
        """Settle lapsed members a page at a time, until one is uncounted or none is left.

        Re-scored members leave the lapsed range, so each page is new; the bound only
        guards against a store that keeps answering the same page.
        """
        for _ in range(self._limit // PRUNE_PAGE + 2):
            lapsed = await self._store.quota_lapsed(quota, PRUNE_PAGE)
            if not lapsed:
                return
            keys = [stream_key(self._prefix, tenant, member) for member, _ in lapsed]
            asked = time.monotonic()
            lefts = await self._store.time_left(keys)
            spent = time.monotonic() - asked
            items = [
                (member, score, None if left is None else max(0.0, min(left, self._ttl) - spent))
                for (member, score), left in zip(lapsed, lefts, strict=True)
            ]
            removed = await self._store.quota_settle(quota, items)
            if removed or len(lapsed) < PRUNE_PAGE:
                return

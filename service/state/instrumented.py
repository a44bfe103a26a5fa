"""A store wrapper that times every call, counts failures and traces it (when tracing is on),
leaving the backend untouched."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from service import tracing
from service.errors import StoreUnavailable
from service.metrics import Metrics
from service.state.base import ScanStep, StateStore
from service.state.cas import Item, Outcome

T = TypeVar("T")


class InstrumentedStore:
    """Wraps any ``StateStore`` with latency histograms and error counters per operation."""

    def __init__(self, inner: StateStore, metrics: Metrics) -> None:
        self.inner = inner
        self._latency = metrics.store_latency
        self._errors = metrics.store_errors

    async def _timed(self, op: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            with tracing.span(f"store {op}", {"store.operation": op}, client=True):
                return await call
        except StoreUnavailable:
            self._errors.labels(op).inc()
            raise
        finally:
            self._latency.labels(op).observe(time.perf_counter() - start)

    async def get(self, key: str) -> bytes | None:
        return await self._timed("get", self.inner.get(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._timed("get_many", self.inner.get_many(keys))

    async def commit_many(self, items: Sequence[Item], ttl_seconds: float) -> list[Outcome]:
        return await self._timed("cas_many", self.inner.commit_many(items, ttl_seconds))

    async def compare_and_set(
        self, key: str, expected_token: bytes | None, value: bytes, ttl_seconds: float
    ) -> bool:
        return await self._timed(
            "cas", self.inner.compare_and_set(key, expected_token, value, ttl_seconds)
        )

    async def compare_and_set_many(
        self, items: Sequence[tuple[str, bytes | None, bytes]], ttl_seconds: float
    ) -> list[bool]:
        return await self._timed("cas_many", self.inner.compare_and_set_many(items, ttl_seconds))

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        await self._timed("put", self.inner.put(key, value, ttl_seconds))

    async def delete(self, key: str) -> bool:
        return await self._timed("delete", self.inner.delete(key))

    async def time_left(self, keys: Sequence[str]) -> list[float | None]:
        return await self._timed("time_left", self.inner.time_left(keys))

    async def quota_admit(self, quota: str, member: str, ttl_seconds: float, limit: int) -> bool:
        return await self._timed(
            "quota_admit", self.inner.quota_admit(quota, member, ttl_seconds, limit)
        )

    async def quota_lapsed(self, quota: str, count: int) -> list[tuple[str, float]]:
        return await self._timed("quota_lapsed", self.inner.quota_lapsed(quota, count))

    async def quota_score(self, quota: str, member: str) -> float | None:
        return await self._timed("quota_score", self.inner.quota_score(quota, member))

    async def quota_settle(
        self, quota: str, items: Sequence[tuple[str, float, float | None]]
    ) -> int:
        return await self._timed("quota_settle", self.inner.quota_settle(quota, items))

    async def scan(self, start: str, *, shard: int, cursor: int) -> ScanStep:
        return await self._timed("scan", self.inner.scan(start, shard=shard, cursor=cursor))

    async def ping(self) -> None:
        await self._timed("ping", self.inner.ping())

    async def close(self) -> None:
        await self.inner.close()

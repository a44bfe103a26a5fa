"""The record cache never applies a stale state, on the embedded store, a real Redis and a
real Redis Cluster, and a lost compare-and-set is retried without another read.

Two replicas (two forecasters, each with its own client and cache) share one store. One of
them caches a stream; then the other advances it, deletes and re-creates it, or the stream
expires, or the store is flushed or comes back from an older snapshot. Every reading must
still apply exactly once to what the store holds: the state equals one model call over the
readings the store's record has applied, from the initial state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis

from service.errors import UnknownStream
from service.forecaster import Forecaster, Observations, ObserveResult
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.state import open_store
from service.state.base import StateStore
from service.state.instrumented import InstrumentedStore
from service.state.keys import stream_key
from service.state.memory import MemoryStore
from service.state.record import StreamRecord
from tests.support.redis_server import RedisServer, redis_available

T0 = 1_790_000_000.0
HOUR = 3600.0
TENANT = "default"
MODEL = "demo-lstm"


def values_at(hour: int) -> list[float]:
    return [float(np.sin(hour)), 20.0 - hour]


def reading(*hours: int) -> Observations:
    return Observations.build([T0 + HOUR * h for h in hours], [values_at(h) for h in hours])


@dataclass
class Replica:
    forecaster: Forecaster
    metrics: Metrics

    def calls(self, op: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "forecast_store_duration_seconds_count", {"op": op}
        )
        return value or 0.0


@pytest.fixture
def registry(model_repository: Path) -> Iterator[ModelRegistry]:
    models = ModelRegistry.load(model_repository, providers="cpu")
    yield models
    models.close()


@pytest.fixture(params=["memory", "redis", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    return str(request.getfixturevalue(fixture))


@dataclass
class Pair:
    a: Replica
    b: Replica
    store: StateStore


async def open_pair(registry: ModelRegistry, url: str, ttl: float = 3600.0) -> Pair:
    shared = MemoryStore() if url == "memory://" else None

    def replica() -> Replica:
        metrics = Metrics()
        inner = shared if shared is not None else open_store(url, timeout_seconds=2.0)
        store = InstrumentedStore(inner, metrics)
        return Replica(Forecaster(registry, store, metrics, ttl_seconds=ttl), metrics)

    inspect = shared if shared is not None else open_store(url, timeout_seconds=2.0)
    return Pair(replica(), replica(), inspect)


async def close_pair(pair: Pair) -> None:
    for one in (pair.a, pair.b):
        await one.forecaster.aclose()
        await one.forecaster.store.close()
    await pair.store.close()


@pytest.fixture
async def pair(registry: ModelRegistry, url: str) -> AsyncIterator[Pair]:
    opened = await open_pair(registry, url)
    yield opened
    await close_pair(opened)


async def stored(store: StateStore, stream: str) -> StreamRecord:
    raw = await store.get(stream_key("fcst", TENANT, stream))
    assert raw is not None
    return StreamRecord.decode(raw)


def assert_state_is(registry: ModelRegistry, record: StreamRecord, hours: list[int]) -> None:
    """The stored state is the model run once over exactly these readings."""
    runtime = registry.get(MODEL)
    x = np.array([[values_at(h) for h in hours]], dtype=np.float32)
    forecast, state = runtime.run(x, runtime.initial_state[None])
    assert record.seq == len(hours)
    assert record.last_ts == T0 + HOUR * hours[-1]
    np.testing.assert_allclose(record.state, state[0], rtol=1e-4, atol=1e-5)
    assert record.forecast is not None
    np.testing.assert_allclose(record.forecast, forecast[0], rtol=1e-4, atol=1e-5)


async def test_another_replica_advanced_the_stream(registry: ModelRegistry, pair: Pair) -> None:
    a, b = pair.a.forecaster, pair.b.forecaster
    await a.create_stream(TENANT, "s", MODEL)
    await a.observe(TENANT, "s", reading(0))  # a caches the record at seq 1
    await b.observe(TENANT, "s", reading(1))  # b advances it behind a's back
    lost = pair.a.calls("cas_many")
    reads = pair.a.calls("get_many")
    result = await a.observe(TENANT, "s", reading(2))
    assert (result.applied, result.stream.seq) == (1, 3)
    # Stepped from the stale cache, lost, stepped again from what the store returned.
    assert pair.a.calls("cas_many") == lost + 2
    assert pair.a.calls("get_many") == reads  # the retry needed no read
    assert_state_is(registry, await stored(pair.store, "s"), [0, 1, 2])


async def test_a_duplicate_answered_from_a_stale_cache_is_verified(
    registry: ModelRegistry, pair: Pair
) -> None:
    a, b = pair.a.forecaster, pair.b.forecaster
    await a.create_stream(TENANT, "s", MODEL)
    await a.observe(TENANT, "s", reading(0, 1))
    await b.observe(TENANT, "s", reading(2))
    # Hour 1 is a duplicate in a's cache too, but the answer must show the stream as it is.
    result = await a.observe(TENANT, "s", reading(1))
    assert (result.applied, result.skipped) == (0, (T0 + HOUR,))
    assert result.stream.seq == 3
    assert result.stream.last_timestamp == T0 + 2 * HOUR
    assert_state_is(registry, await stored(pair.store, "s"), [0, 1, 2])


async def test_a_reading_fresh_only_in_a_stale_cache_is_skipped(
    registry: ModelRegistry, pair: Pair
) -> None:
    a, b = pair.a.forecaster, pair.b.forecaster
    await a.create_stream(TENANT, "s", MODEL)
    await a.observe(TENANT, "s", reading(0))
    await b.observe(TENANT, "s", reading(1, 2))
    result = await a.observe(TENANT, "s", reading(2))  # b applied it already
    assert (result.applied, result.skipped, result.stream.seq) == (0, (T0 + 2 * HOUR,), 3)
    assert_state_is(registry, await stored(pair.store, "s"), [0, 1, 2])


async def test_deleted_and_recreated_with_the_same_id_and_seq(
    registry: ModelRegistry, pair: Pair
) -> None:
    a, b = pair.a.forecaster, pair.b.forecaster
    await a.create_stream(TENANT, "s", MODEL)
    await a.observe(TENANT, "s", reading(0))  # a caches seq 1
    await b.delete_stream(TENANT, "s")
    await b.create_stream(TENANT, "s", MODEL, history=reading(5))  # seq 1 again, new stream
    result = await a.observe(TENANT, "s", reading(6))
    assert (result.applied, result.stream.seq) == (1, 2)
    assert_state_is(registry, await stored(pair.store, "s"), [5, 6])


async def test_deleted_elsewhere_is_unknown_here(pair: Pair) -> None:
    a, b = pair.a.forecaster, pair.b.forecaster
    await a.create_stream(TENANT, "s", MODEL)
    await a.observe(TENANT, "s", reading(0))
    await b.delete_stream(TENANT, "s")
    for hours in ((1,), (0,)):  # a fresh reading, and one the cache calls a duplicate
        with pytest.raises(UnknownStream):
            await a.observe(TENANT, "s", reading(*hours))
    assert await pair.store.get(stream_key("fcst", TENANT, "s")) is None


async def test_an_expired_stream_is_never_brought_back(registry: ModelRegistry, url: str) -> None:
    pair = await open_pair(registry, url, ttl=0.3)
    try:
        a = pair.a.forecaster
        await a.create_stream(TENANT, "s", MODEL)
        await a.observe(TENANT, "s", reading(0))
        await asyncio.sleep(0.6)
        with pytest.raises(UnknownStream):
            await a.observe(TENANT, "s", reading(1))
        assert await pair.store.get(stream_key("fcst", TENANT, "s")) is None
    finally:
        await close_pair(pair)


async def test_a_flushed_store_is_seen_at_once(
    pair: Pair, url: str, request: pytest.FixtureRequest
) -> None:
    if url == "memory://":
        pytest.skip("the embedded store has no FLUSHALL")
    a = pair.a.forecaster
    await a.create_stream(TENANT, "s", MODEL)
    await a.observe(TENANT, "s", reading(0))
    server = "redis_cluster" if url.startswith("redis+cluster") else "redis_server"
    request.getfixturevalue(server).flushall()  # the fixture's own servers, never 6379
    for hours in ((1,), (0,)):
        with pytest.raises(UnknownStream):
            await a.observe(TENANT, "s", reading(*hours))
    assert await pair.store.get(stream_key("fcst", TENANT, "s")) is None


@pytest.fixture
def snapshot_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


async def test_a_store_back_from_an_older_snapshot(
    registry: ModelRegistry, snapshot_server: RedisServer
) -> None:
    """Redis restarted with writes lost: the cached record is newer than the store's, and
    the new reading applies to what the store has, once."""
    pair = await open_pair(registry, snapshot_server.url)
    try:
        a = pair.a.forecaster
        await a.create_stream(TENANT, "s", MODEL)
        await a.observe(TENANT, "s", reading(0))
        with redis.Redis(port=snapshot_server.port) as client:
            client.save()  # what the restart brings back: seq 1
        await a.observe(TENANT, "s", reading(1))  # acknowledged, then lost with the process
        snapshot_server.restart(kill=True)
        result: ObserveResult | None = None
        for _ in range(3):  # the first call may find the old connection closed
            try:
                result = await a.observe(TENANT, "s", reading(2))
                break
            except Exception:
                await asyncio.sleep(0.2)
        assert result is not None
        assert (result.applied, result.stream.seq) == (1, 2)
        assert_state_is(registry, await stored(pair.store, "s"), [0, 2])
    finally:
        await close_pair(pair)


async def test_replicas_racing_through_their_caches_lose_nothing(
    registry: ModelRegistry, pair: Pair
) -> None:
    """Each replica keeps stepping from its own cache while the other writes the same
    streams: every reading applies once, in order, on every stream."""
    a, b = pair.a.forecaster, pair.b.forecaster
    streams = [f"r{i}" for i in range(6)]
    for stream in streams:
        await a.create_stream(TENANT, stream, MODEL)
    hours = list(range(12))

    async def feed(replica: Forecaster, hour: int) -> None:
        await asyncio.gather(*(replica.observe(TENANT, s, reading(hour)) for s in streams))

    for hour in hours:
        # Both replicas send the same reading: one applies it, the other skips it.
        await asyncio.gather(feed(a, hour), feed(b, hour))
    for stream in streams:
        assert_state_is(registry, await stored(pair.store, stream), hours)

"""The streams-per-tenant limit, on every backend and over HTTP.

The core is driven directly over the embedded store, a real Redis and a real Redis Cluster;
the REST and v2 routes run in-process. Streams expire in these tests after a second or less,
so the sleeps are short; each waits well past a deadline, never to one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.errors import StreamLimitExceeded
from service.forecaster import Forecaster, Observations
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.settings import Settings
from service.state import open_store
from service.state.base import StateStore
from service.state.instrumented import InstrumentedStore
from service.state.keys import quota_key, stream_key
from tests.conftest import STORE_TIMEOUT_SECONDS
from tests.support import RedisServer, redis_available

MODEL = "demo-gru"
T0 = 1_790_000_000.0
LIMIT = 3


@pytest.fixture
def registry(model_repository: Path) -> Iterator[ModelRegistry]:
    models = ModelRegistry.load(model_repository, providers="cpu")
    yield models
    models.close()


@asynccontextmanager
async def forecaster(
    registry: ModelRegistry, store: StateStore, *, limit: int = LIMIT, ttl: float = 60.0
) -> AsyncIterator[Forecaster]:
    f = Forecaster(registry, store, Metrics(), max_streams_per_tenant=limit, ttl_seconds=ttl)
    try:
        yield f
    finally:
        await f.aclose()


async def stored(store: StateStore, names: list[str], tenant: str = "acme") -> list[str]:
    values = await store.get_many([stream_key("fcst", tenant, n) for n in names])
    return [n for n, v in zip(names, values, strict=True) if v is not None]


def refused(f: Forecaster) -> float:
    value = f.metrics.registry.get_sample_value(
        "forecast_streams_refused_total", {"reason": "stream-limit"}
    )
    return value or 0.0


def reading(hour: int) -> Observations:
    return Observations.build([T0 + 3600.0 * hour], [[1.0, 20.0]])


# --- the core, every backend ----------------------------------------------------------------


async def test_the_stream_over_the_limit_is_refused_and_not_created(
    registry: ModelRegistry, store: StateStore
) -> None:
    async with forecaster(registry, store) as f:
        for name in ("a", "b", "c"):
            assert (await f.create_stream("acme", name, MODEL)).created

        with pytest.raises(StreamLimitExceeded) as caught:
            await f.create_stream("acme", "d", MODEL, history=reading(0))

        assert caught.value.limit == LIMIT
        assert caught.value.code == "stream-limit"
        assert "3 stream(s)" in caught.value.detail
        assert await stored(store, ["a", "b", "c", "d"]) == ["a", "b", "c"]
        assert await store.quota_score(quota_key("fcst", "acme"), "d") is None
        assert refused(f) == 1

        # Replacing a stream at the limit is no new stream.
        replaced = await f.create_stream("acme", "b", MODEL, history=reading(0))
        assert not replaced.created
        assert replaced.stream.seq == 1
        # Deleting one frees a place.
        await f.delete_stream("acme", "a")
        assert (await f.create_stream("acme", "d", MODEL)).created
        with pytest.raises(StreamLimitExceeded):
            await f.create_stream("acme", "a", MODEL)
        assert await stored(store, ["a", "b", "c", "d"]) == ["b", "c", "d"]


async def test_tenants_are_counted_apart(registry: ModelRegistry, store: StateStore) -> None:
    async with forecaster(registry, store, limit=1) as f:
        await f.create_stream("acme", "s", MODEL)
        await f.create_stream("globex", "s", MODEL)
        with pytest.raises(StreamLimitExceeded):
            await f.create_stream("acme", "t", MODEL)
        await f.delete_stream("globex", "s")
        await f.create_stream("globex", "t", MODEL)
        with pytest.raises(StreamLimitExceeded):
            await f.create_stream("acme", "t", MODEL)


async def test_expired_streams_free_their_places(
    registry: ModelRegistry, store: StateStore
) -> None:
    async with forecaster(registry, store, limit=2, ttl=0.3) as f:
        await f.create_stream("acme", "a", MODEL)
        await f.create_stream("acme", "b", MODEL)

        await asyncio.sleep(0.6)

        # Both are found gone and uncounted by the one prune: two places.
        await f.create_stream("acme", "c", MODEL)
        await f.create_stream("acme", "d", MODEL)
        assert await store.quota_score(quota_key("fcst", "acme"), "a") is None
        with pytest.raises(StreamLimitExceeded):
            await f.create_stream("acme", "e", MODEL)
        assert await stored(store, ["c", "d", "e"]) == ["c", "d"]


async def test_a_stream_kept_alive_by_observations_stays_counted(
    registry: ModelRegistry, store: StateStore
) -> None:
    ttl = 1.5
    async with forecaster(registry, store, limit=2, ttl=ttl) as f:
        await f.create_stream("acme", "a", MODEL)
        await f.create_stream("acme", "b", MODEL)
        created = time.monotonic()
        await asyncio.sleep(0.6 * ttl)
        await f.observe("acme", "a", reading(0))  # each write moves the expiry on, not the score
        await f.observe("acme", "b", reading(0))
        await asyncio.sleep(max(0.0, created + 1.1 * ttl - time.monotonic()))
        quota = quota_key("fcst", "acme")
        assert len(await store.quota_lapsed(quota, 10)) == 2  # first deadlines have passed

        with pytest.raises(StreamLimitExceeded):
            await f.create_stream("acme", "c", MODEL)

        assert await stored(store, ["a", "b", "c"]) == ["a", "b"]
        assert await store.quota_lapsed(quota, 10) == []  # found alive: scored to their expiry


async def test_concurrent_creates_never_pass_the_limit(
    registry: ModelRegistry, store: StateStore
) -> None:
    await store.ping()  # see test_store_quota_contract: a cold cluster client drops calls
    async with forecaster(registry, store) as f:
        names = [f"s{i}" for i in range(24)]
        results = await asyncio.gather(
            *(f.create_stream("acme", n, MODEL) for n in names), return_exceptions=True
        )

        made = [n for n, r in zip(names, results, strict=True) if not isinstance(r, Exception)]
        assert len(made) == LIMIT
        assert all(isinstance(r, StreamLimitExceeded) for r in results if isinstance(r, Exception))
        assert await stored(store, names) == made


@pytest.fixture(params=["redis", "cluster"])
def shared_url(request: pytest.FixtureRequest) -> str:
    return str(
        request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    )


async def test_two_replicas_on_one_store_share_the_limit(
    registry: ModelRegistry, shared_url: str
) -> None:
    """Two services on one store, each with its own client, as two replicas would be."""
    stores = [open_store(shared_url, timeout_seconds=STORE_TIMEOUT_SECONDS) for _ in range(2)]
    try:
        for one in stores:
            await one.ping()
        async with forecaster(registry, stores[0]) as f1, forecaster(registry, stores[1]) as f2:
            names = [f"s{i}" for i in range(20)]
            results = await asyncio.gather(
                *(
                    (f1 if i % 2 else f2).create_stream("acme", n, MODEL)
                    for i, n in enumerate(names)
                ),
                return_exceptions=True,
            )
            made = [n for n, r in zip(names, results, strict=True) if not isinstance(r, Exception)]
            assert len(made) == LIMIT
            assert await stored(stores[0], names) == made
            # A delete on one replica frees a place for the other.
            await f1.delete_stream("acme", made[0])
            await f2.create_stream("acme", "late", MODEL)
            with pytest.raises(StreamLimitExceeded):
                await f1.create_stream("acme", "later", MODEL)
    finally:
        for one in stores:
            await one.close()


async def test_no_limit_makes_no_quota_call(registry: ModelRegistry, store: StateStore) -> None:
    metrics = Metrics()
    instrumented = InstrumentedStore(store, metrics)
    f = Forecaster(registry, instrumented, metrics, max_streams_per_tenant=0)
    try:
        for i in range(5):
            await f.create_stream("acme", f"s{i}", MODEL)
        await f.delete_stream("acme", "s0")
    finally:
        await f.aclose()
    ops = {
        sample.labels["op"]
        for family in metrics.registry.collect()
        if family.name == "forecast_store_duration_seconds"
        for sample in family.samples
    }
    assert ops == {"get", "put", "delete"}
    assert await store.quota_score(quota_key("fcst", "acme"), "s1") is None


# --- HTTP -----------------------------------------------------------------------------------


def app_settings(repository: Path, **overrides: Any) -> Settings:
    return Settings(
        model_repository=repository, providers="cpu", max_streams_per_tenant=2, **overrides
    )


async def test_rest_and_v2_answer_403_at_the_limit(model_repository: Path) -> None:
    app = create_app(app_settings(model_repository))
    async with AsyncTestClient(app=app) as client:
        for name in ("a", "b"):
            r = await client.put(f"/v1/streams/{name}", json={"model": MODEL})
            assert r.status_code == 201, r.text

        r = await client.put("/v1/streams/c", json={"model": MODEL})

        assert r.status_code == 403
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["code"] == "stream-limit"
        assert body["type"] == "urn:stateful-forecast:problem:stream-limit"
        assert body["status"] == 403
        assert body["limit"] == 2
        assert "max_streams_per_tenant" in body["detail"]
        assert (await client.get("/v1/streams/c")).status_code == 404

        x = {"name": "x", "datatype": "FP32", "shape": [1, 1, 2], "data": [1.0, 20.0]}
        step = {"inputs": [x], "parameters": {"sequence_id": 7, "sequence_start": True}}
        r = await client.post(f"/v2/models/{MODEL}/infer", json=step)

        assert r.status_code == 403
        assert "max_streams_per_tenant" in r.json()["error"]
        assert (await client.get("/v1/streams/v2:7")).status_code == 404
        # Ending a sequence frees its place like a delete.
        assert (await client.delete("/v1/streams/a")).status_code == 204
        r = await client.post(f"/v2/models/{MODEL}/infer", json=step)
        assert r.status_code == 200, r.text
        metrics = (await client.get("/metrics")).text
        assert 'forecast_streams_refused_total{reason="stream-limit"} 2.0' in metrics


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer(appendonly=True) as server:  # its data survives the restart
        yield server


async def test_store_outage_during_admission_is_a_503(
    model_repository: Path, private_redis: RedisServer
) -> None:
    settings = app_settings(
        model_repository, store_url=private_redis.url, store_timeout_seconds=0.5
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.put("/v1/streams/a", json={"model": MODEL})).status_code == 201
        private_redis.stop()

        r = await client.put("/v1/streams/b", json={"model": MODEL})

        assert r.status_code == 503
        assert r.json()["code"] == "store-unavailable"
        assert int(r.headers["retry-after"]) >= 1
        metrics = (await client.get("/metrics")).text
        # The first store call of a create is its admission: that is where the outage hit.
        assert 'forecast_store_errors_total{op="quota_admit"} 1.0' in metrics
        assert 'forecast_store_errors_total{op="put"}' not in metrics

        private_redis.start()
        assert (await client.put("/v1/streams/b", json={"model": MODEL})).status_code == 201
        r = await client.put("/v1/streams/c", json={"model": MODEL})
        assert r.status_code == 403

"""The store's connection pool: sized by a setting, waited for, and full reported as full.

redis-py's own pool refuses a call at once when all its connections are busy, and that was
read as an outage: a burst of subscribers on a healthy Redis got 503s. Calls now wait for a
connection within the store timeout, and only one that never gets one is refused, as
``StoreBusy`` (503, code ``store-busy``), never as a store outage.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from litestar.testing import AsyncTestClient

from service.api.errors import problem_body
from service.app import create_app
from service.errors import StoreBusy, StoreUnavailable
from service.settings import Settings
from service.state import open_store
from service.state.redis import ConnectionGate, bounded
from tests.support.redis_server import RedisServer


async def test_a_call_waits_for_its_turn_and_a_turn_that_never_comes_is_busy() -> None:
    gate = ConnectionGate(2)
    held = [asyncio.create_task(bounded(asyncio.sleep(0.5), 5.0, "slow", gate)) for _ in range(2)]
    await asyncio.sleep(0.05)  # both turns are taken now
    waiter = bounded(asyncio.sleep(0), 0.1, "GET", gate)
    with pytest.raises(StoreBusy) as refused:
        await waiter
    assert "all 2 connections" in refused.value.detail
    assert problem_body(refused.value)["status"] == 503
    assert problem_body(refused.value)["code"] == "store-busy"
    # A call with time enough gets a turn once one is free.
    assert await bounded(asyncio.sleep(0, "done"), 5.0, "GET", gate) == "done"
    await asyncio.gather(*held)


async def test_a_call_that_got_its_turn_and_then_hangs_is_an_outage() -> None:
    gate = ConnectionGate(1)
    with pytest.raises(StoreUnavailable) as refused:
        await bounded(asyncio.sleep(5), 0.1, "GET", gate)
    assert not isinstance(refused.value, StoreBusy)
    assert "did not answer GET" in refused.value.detail


@pytest.mark.parametrize("size", [4, 100])
async def test_many_more_calls_than_connections_all_succeed(
    redis_url: str, redis_server: RedisServer, size: int
) -> None:
    """1,000 concurrent reads through a pool of ``size``: every one answered, and Redis never
    sees more than ``size`` connections from the store."""
    store = open_store(redis_url, timeout_seconds=5.0, max_connections=size)
    admin = aioredis.Redis(port=redis_server.port)
    try:
        await store.put("k", b"v", 60.0)
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                clients = await admin.client_list()
                peak = max(peak, len(clients) - 1)  # less the admin connection itself
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(watch())
        try:
            values = await asyncio.gather(*(store.get("k") for _ in range(1000)))
        finally:
            watcher.cancel()
        assert values == [b"v"] * 1000
        assert 1 <= peak <= size
    finally:
        await admin.aclose()
        await store.close()


async def test_the_backstop_of_the_clients_own_pool_is_busy_not_an_outage(
    redis_url: str,
) -> None:
    """Without the gate, redis-py's pool refuses at once; that too is reported as busy."""
    client = aioredis.Redis.from_url(redis_url, max_connections=1)
    try:
        blocker = asyncio.create_task(client.execute_command("BLPOP", "nothing", 1))
        await asyncio.sleep(0.1)
        with pytest.raises(StoreBusy):
            await bounded(client.get("k"), 2.0, "GET")
        await blocker
    finally:
        await client.aclose()


async def test_a_full_pool_keeps_the_replica_ready(model_repository: Path, redis_url: str) -> None:
    """Readiness says the pool is busy but stays 200: a full pool is load, not an outage."""
    settings = Settings(
        model_repository=model_repository,
        providers="cpu",
        store_url=redis_url,
        store_timeout_seconds=0.2,
        store_max_connections=1,
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        assert (await client.get("/health/ready")).status_code == 200
        gate = client.app.state.forecaster.store.inner._gate
        async with gate.turn():  # the one connection is taken for the whole check
            ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["store"].startswith("busy:")
        assert (await client.get("/health/ready")).json()["store"] == "ok"

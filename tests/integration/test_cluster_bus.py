"""The forecast bus on Redis Cluster: sharded pub/sub (SPUBLISH / SSUBSCRIBE) on real nodes.

Bus-level tests use two buses as two replicas would; the service-level tests run two
``python -m service`` processes on one cluster and listen to server-sent events on one while
writing to the other.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from redis.crc import key_slot

from service.bus import RedisClusterBus
from service.errors import StoreUnavailable
from service.state import parse_cluster_url
from service.state.keys import channel_pattern, stream_channel, stream_key
from tests.support.redis_server import RedisClusterServer
from tests.support.service_process import ServiceProcess
from tests.support.sse import (
    A_READ,
    A_WRITE,
    TENANT_KEYS,
    check_tenant_isolation,
    subscribed,
)

PREFIX = "fcst"
PATTERN = channel_pattern(PREFIX)
T0 = 1_800_000_000.0
#: Long enough for a slow machine, short enough to fail a broken feed quickly.
WAIT = 10.0

KEYS = TENANT_KEYS


def obs(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [float(i % 7), 20.0 - i * 0.1]}


def channel(tenant: str, stream: str) -> str:
    return stream_channel(PREFIX, stream_key(PREFIX, tenant, stream))


def owners(url: str) -> dict[int, str]:
    """Slot -> the address of the primary serving it, from CLUSTER SLOTS."""
    nodes, _, _ = parse_cluster_url(url)
    with redis.Redis(host=nodes[0][0], port=nodes[0][1]) as client:
        ranges = client.execute_command("CLUSTER SLOTS")
    table: dict[int, str] = {}
    for start, end, primary, *_ in ranges:
        host = primary[0].decode() if isinstance(primary[0], bytes) else primary[0]
        for slot in range(start, end + 1):
            table[slot] = f"{host}:{primary[1]}"
    return table


def streams_on_each_node(url: str, tenant: str = "acme") -> list[str]:
    """One stream id per primary: their channels (and keys) live on different nodes."""
    table = owners(url)
    found: dict[str, str] = {}
    for i in range(1000):
        stream = f"s{i}"
        found.setdefault(table[key_slot(channel(tenant, stream).encode())], stream)
    assert len(found) == len(set(table.values())) >= 3
    return list(found.values())


def spublish_calls(url: str) -> int:
    """SPUBLISH commands every primary has served so far."""
    total = 0
    for host, port in parse_cluster_url(url)[0]:
        with redis.Redis(host=host, port=port) as client:
            stats = client.info("commandstats").get("cmdstat_spublish")
        total += int(stats["calls"]) if stats else 0
    return total


def bus(url: str, *, refresh_seconds: float = 0.0, timeout: float = 2.0) -> RedisClusterBus:
    nodes, username, password = parse_cluster_url(url)
    return RedisClusterBus(
        nodes,
        pattern=PATTERN,
        timeout_seconds=timeout,
        username=username,
        password=password,
        refresh_seconds=refresh_seconds,
    )


@pytest.fixture
async def buses(redis_cluster_url: str) -> AsyncIterator[tuple[RedisClusterBus, RedisClusterBus]]:
    """Two buses on the session's cluster, as two replicas hold them."""
    a, b = bus(redis_cluster_url), bus(redis_cluster_url)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def until(check: Any, what: str) -> None:
    """Poll an async ``check`` until it holds (a readiness wait, not a timing assertion)."""
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def listed(b: RedisClusterBus, channels: Sequence[str]) -> bool:
    await b.refresh()
    return all(b.has_subscribers(channels))


def test_a_channel_lives_in_its_stream_keys_slot() -> None:
    for tenant, stream in [("acme", "pump"), ("beta", "pump"), ("t", "a:b@c.d-e_f")]:
        key = stream_key(PREFIX, tenant, stream)
        assert f"{{{tenant}:{stream}}}" in channel(tenant, stream)
        assert key_slot(channel(tenant, stream).encode()) == key_slot(key.encode())


async def test_subscriber_hears_another_bus_on_every_node_in_order(
    buses: tuple[RedisClusterBus, RedisClusterBus], redis_cluster_url: str
) -> None:
    a, b = buses
    channels = [channel("acme", s) for s in streams_on_each_node(redis_cluster_url)]
    async with AsyncExitStack() as stack:
        inboxes = [aiter(await stack.enter_async_context(a.subscribe(c))) for c in channels]
        await b.refresh()
        assert b.has_subscribers([*channels, channel("acme", "nobody")]) == [True] * len(
            channels
        ) + [False]
        for i in range(5):
            await b.publish([(c, f"{c}#{i}".encode()) for c in channels])
        for c, inbox in zip(channels, inboxes, strict=True):
            heard = [await asyncio.wait_for(anext(inbox), WAIT) for _ in range(5)]
            assert heard == [f"{c}#{i}".encode() for i in range(5)]


async def test_has_subscribers_is_cached_and_forgets_a_subscriber_gone(
    redis_cluster_url: str,
) -> None:
    a, fresh, cached = (
        bus(redis_cluster_url),
        bus(redis_cluster_url),
        bus(redis_cluster_url, refresh_seconds=3600.0),
    )
    c = channel("acme", "pump")
    try:
        await cached.refresh()  # lists nobody, and keeps that for an hour
        async with a.subscribe(c):
            assert a.has_subscribers([c]) == [True]  # its own subscriber: known at once
            await fresh.refresh()
            assert fresh.has_subscribers([c]) == [True]
            await cached.refresh()
            assert cached.has_subscribers([c]) == [False]  # not asked again yet
        assert a.has_subscribers([c]) == [False]
        await until(lambda: _not_listed(fresh, c), "the channel leaves PUBSUB SHARDCHANNELS")
    finally:
        for each in (a, fresh, cached):
            await each.close()


async def _not_listed(b: RedisClusterBus, c: str) -> bool:
    await b.refresh()
    return b.has_subscribers([c]) == [False]


async def test_a_killed_subscriber_connection_is_re_established(
    buses: tuple[RedisClusterBus, RedisClusterBus], redis_cluster: RedisClusterServer
) -> None:
    a, b = buses
    c = channel("acme", "pump")
    async with a.subscribe(c) as feed:
        inbox = aiter(feed)
        for port in redis_cluster.ports:
            with redis.Redis(port=port) as node:
                node.execute_command("CLIENT KILL TYPE pubsub")
        await until(lambda: listed(b, [c]), "the subscription is back")
        await b.publish([(c, b"again")])
        assert await asyncio.wait_for(anext(inbox), WAIT) == b"again"


async def test_slot_moved_feed_follows_and_lost_node_ends_feed_without_crashing() -> None:
    """On a private cluster: a slot moved to another primary takes the subscriber with it; a
    node killed ends the feeds it carried, and publishing there is logged, not raised."""
    with RedisClusterServer() as cluster:
        a, b = bus(cluster.url, timeout=1.0), bus(cluster.url, timeout=1.0)
        try:
            c = channel("acme", "pump")
            slot = key_slot(c.encode())
            async with a.subscribe(c) as feed:
                inbox = aiter(feed)
                source = owners(cluster.url)[slot]
                target = next(p for p in cluster.ports if f"127.0.0.1:{p}" != source)
                _move_slot(cluster.ports, slot, target)
                await until(lambda: listed(b, [c]), "the subscription is on the new owner")
                assert owners(cluster.url)[slot] == f"127.0.0.1:{target}"
                await b.publish([(c, b"moved")])
                assert await asyncio.wait_for(anext(inbox), WAIT) == b"moved"

                next(n for n in cluster.nodes if n.port == target).stop(kill=True)
                with pytest.raises(StopAsyncIteration):  # ends, does not hang or raise
                    await asyncio.wait_for(anext(inbox), 30.0)
                await b.publish([(c, b"lost")])  # best effort: no exception
                await b.refresh()
            with pytest.raises(StoreUnavailable):
                async with a.subscribe(c):
                    pass
        finally:
            await a.close()
            await b.close()


def _move_slot(ports: Sequence[int], slot: int, target: int) -> None:
    """Hand an empty slot to ``target`` the way a resharding tool does."""
    ids = {}
    for port in ports:
        with redis.Redis(port=port, decode_responses=True) as node:
            ids[port] = node.execute_command("CLUSTER MYID")
    for port in ports:
        with redis.Redis(port=port) as node:
            node.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])


# -- two service processes on one cluster ----------------------------------------------------


@pytest.fixture
def replicas(
    model_repository: Path, redis_cluster_url: str, tmp_path: Path
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_STORE_URL": redis_cluster_url,
        "FORECAST_API_KEYS": json.dumps(KEYS),
    }
    with (
        ServiceProcess(env, log=tmp_path / "a.log") as a,
        ServiceProcess(env, log=tmp_path / "b.log") as b,
    ):
        yield a, b


def test_sse_on_one_replica_hears_updates_posted_to_another_on_every_node(
    replicas: tuple[ServiceProcess, ServiceProcess], redis_cluster_url: str
) -> None:
    a, b = replicas
    streams = streams_on_each_node(redis_cluster_url)
    for s in [*streams, "quiet"]:
        r = httpx.put(f"{a.url}/v1/streams/{s}", json={"model": "demo-gru"}, headers=A_WRITE)
        assert r.status_code == 201, r.text
    answers: dict[str, list[dict[str, Any]]] = {s: [] for s in streams}
    with ExitStack() as stack:
        events = {
            s: stack.enter_context(
                subscribed(f"{b.url}/v1/streams/{s}/forecasts", 4, headers=A_READ)
            )
            for s in streams
        }
        time.sleep(1.5)  # other replicas learn of a new subscriber within about a second
        published = spublish_calls(redis_cluster_url)
        for i in range(3):
            for s in [*streams, "quiet"]:
                r = httpx.post(
                    f"{a.url}/v1/streams/{s}/observations",
                    json={"observations": [obs(i)]},
                    headers=A_WRITE,
                )
                assert r.status_code == 200, r.text
                if s in answers:
                    answers[s].append(r.json())
    # Only the subscribed streams were announced: the quiet one cost no SPUBLISH.
    assert spublish_calls(redis_cluster_url) - published == 3 * len(streams)
    for s in streams:
        assert [e["event"] for e in events[s]] == ["snapshot", "forecast", "forecast", "forecast"]
        assert [e["data"]["seq"] for e in events[s]] == [0, 1, 2, 3]
        assert [e["data"]["forecast"] for e in events[s][1:]] == [x["forecast"] for x in answers[s]]


def test_sse_subscriber_hears_only_its_tenants_stream_across_replicas(
    replicas: tuple[ServiceProcess, ServiceProcess],
) -> None:
    """acme listens to its ``pump`` on B; beta writing its own ``pump`` on A is not heard."""
    a, b = replicas
    check_tenant_isolation(a.url, b.url, reading=obs, settle=1.5)

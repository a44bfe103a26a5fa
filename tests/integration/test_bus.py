"""Every forecast bus (in-process, Redis, Redis Cluster) keeps the same subscriber contract."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from service.bus import ForecastBus, LocalBus, open_bus

CHANNEL = "fcst:fc:{acme:pump}"
WAIT = 10.0


@pytest.fixture(params=["local", "redis", "cluster"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ForecastBus, ForecastBus]]:
    """A subscribing and a publishing bus; the same one in process, two over Redis."""
    if request.param == "local":
        local = LocalBus()
        yield local, local
        return
    url = str(
        request.getfixturevalue("redis_url" if request.param == "redis" else "redis_cluster_url")
    )
    buses = [open_bus(url, key_prefix="fcst", timeout_seconds=2.0) for _ in range(2)]
    try:
        yield buses[0], buses[1]
    finally:
        for bus in buses:
            await bus.close()


async def test_subscriber_hears_each_message_in_order(
    pair: tuple[ForecastBus, ForecastBus],
) -> None:
    subscriber, publisher = pair
    async with subscriber.subscribe(CHANNEL) as feed:
        inbox = aiter(feed)
        for i in range(5):
            await publisher.publish([(CHANNEL, b"%d" % i), ("fcst:fc:{beta:pump}", b"no")])
        assert [await asyncio.wait_for(anext(inbox), WAIT) for _ in range(5)] == [
            b"0",
            b"1",
            b"2",
            b"3",
            b"4",
        ]


async def test_a_cancelled_read_loses_nothing(pair: tuple[ForecastBus, ForecastBus]) -> None:
    """The SSE handler gives up a pending read on every keep-alive; the feed must go on."""
    subscriber, publisher = pair
    async with subscriber.subscribe(CHANNEL) as feed:
        inbox = aiter(feed)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(inbox), 0.05)
        await publisher.publish([(CHANNEL, b"after")])
        assert await asyncio.wait_for(anext(inbox), WAIT) == b"after"


async def test_a_subscription_hears_what_is_published_right_after_it_opens(
    pair: tuple[ForecastBus, ForecastBus],
) -> None:
    """``subscribe`` returns once the server has the subscription: SSE reads the snapshot
    next, so a message published then must be heard, not fall between the two."""
    subscriber, publisher = pair
    for i in range(30):
        async with subscriber.subscribe(CHANNEL) as feed:
            await publisher.publish([(CHANNEL, b"%d" % i)])
            assert await asyncio.wait_for(anext(aiter(feed)), WAIT) == b"%d" % i

"""RedisBus shares one pub/sub connection between all the subscribers of a replica."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from service.bus import RedisBus
from tests.support import RedisServer

PATTERN = "fcst:fc:*"
WAIT = 10.0


def _channel(i: int) -> str:
    return f"fcst:fc:{{acme:pump-{i}}}"


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client that inspects the test Redis (CLIENT LIST, PUBSUB NUMSUB, CLIENT KILL)."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def buses(redis_url: str) -> AsyncIterator[tuple[RedisBus, RedisBus]]:
    """A subscribing and a publishing bus, as on two replicas."""
    pair = [RedisBus(redis_url, pattern=PATTERN, timeout_seconds=2.0) for _ in range(2)]
    try:
        yield pair[0], pair[1]
    finally:
        for bus in pair:
            await bus.close()


async def _pubsub_clients(admin: Redis) -> int:
    return len(await admin.client_list(_type="pubsub"))


async def _numsub(admin: Redis, channel: str) -> int:
    [(_, count)] = await admin.pubsub_numsub(channel)
    return int(count)


async def test_many_subscribers_share_one_connection_and_hear_only_their_channel(
    buses: tuple[RedisBus, RedisBus], admin: Redis
) -> None:
    subscriber, publisher = buses
    before = await _pubsub_clients(admin)
    async with contextlib.AsyncExitStack() as stack:
        feeds = [
            (i % 10, aiter(await stack.enter_async_context(subscriber.subscribe(_channel(i % 10)))))
            for i in range(50)
        ]
        assert await _pubsub_clients(admin) == before + 1
        assert [await _numsub(admin, _channel(c)) for c in range(10)] == [1] * 10
        await publisher.publish([(_channel(c), b"first %d" % c) for c in range(10)])
        await publisher.publish([(_channel(c), b"second %d" % c) for c in range(10)])
        for c, feed in feeds:  # a message of another channel would come before "second"
            heard = [await asyncio.wait_for(anext(feed), WAIT) for _ in range(2)]
            assert heard == [b"first %d" % c, b"second %d" % c]


async def test_a_subscriber_leaving_does_not_end_the_others_on_its_channel(
    buses: tuple[RedisBus, RedisBus], admin: Redis
) -> None:
    subscriber, publisher = buses
    channel = _channel(0)
    async with subscriber.subscribe(channel) as staying:
        async with subscriber.subscribe(channel):
            pass
        assert await _numsub(admin, channel) == 1
        assert subscriber.has_subscribers([channel]) == [True]
        await publisher.publish([(channel, b"still here")])
        assert await asyncio.wait_for(anext(aiter(staying)), WAIT) == b"still here"


async def test_the_last_subscriber_leaving_unsubscribes(
    buses: tuple[RedisBus, RedisBus], admin: Redis
) -> None:
    subscriber, _ = buses
    channel = _channel(0)
    async with subscriber.subscribe(channel), subscriber.subscribe(channel):
        assert await _numsub(admin, channel) == 1
    assert subscriber.has_subscribers([channel]) == [False]
    # A confirmed SUBSCRIBE sent after the UNSUBSCRIBE on the same connection: Redis has
    # handled the UNSUBSCRIBE by then.
    async with subscriber.subscribe(_channel(1)):
        assert await _numsub(admin, channel) == 0
        assert await _numsub(admin, _channel(1)) == 1


async def test_a_subscriber_joining_while_the_last_one_leaves_stays_subscribed(
    buses: tuple[RedisBus, RedisBus], admin: Redis
) -> None:
    """UNSUBSCRIBE and SUBSCRIBE of one channel racing must end subscribed."""
    subscriber, publisher = buses
    channel = _channel(0)
    for i in range(20):
        leaving = contextlib.AsyncExitStack()
        await leaving.enter_async_context(subscriber.subscribe(channel))
        async with contextlib.AsyncExitStack() as joining:
            _, feed = await asyncio.gather(
                leaving.aclose(), joining.enter_async_context(subscriber.subscribe(channel))
            )
            await publisher.publish([(channel, b"%d" % i)])
            assert await asyncio.wait_for(anext(aiter(feed)), WAIT) == b"%d" % i
            assert await _numsub(admin, channel) == 1


async def _hear_or_end(
    publisher: RedisBus, channel: str, feed: AsyncIterator[bytes], payload: bytes
) -> str:
    """Publish until ``feed`` hears ``payload`` (its subscription resumed) or ends."""
    for _ in range(100):  # messages published before the re-subscription are lost
        await publisher.publish([(channel, payload)])
        try:
            if await asyncio.wait_for(anext(feed), 0.1) == payload:
                return "resumed"
        except TimeoutError:
            continue
        except StopAsyncIteration:
            return "ended"
    return "neither"


async def test_a_killed_connection_resumes_or_ends_the_feeds_and_subscribing_still_works(
    buses: tuple[RedisBus, RedisBus], admin: Redis
) -> None:
    subscriber, publisher = buses
    async with (
        subscriber.subscribe(_channel(0)) as first,
        subscriber.subscribe(_channel(1)) as second,
    ):
        await admin.client_kill_filter(_type="pubsub")
        outcomes = {
            await _hear_or_end(publisher, _channel(c), aiter(feed), b"after kill")
            for c, feed in enumerate([first, second])
        }
        assert outcomes <= {"resumed", "ended"}
    async with subscriber.subscribe(_channel(2)) as fresh:
        await publisher.publish([(_channel(2), b"fresh")])
        assert await asyncio.wait_for(anext(aiter(fresh)), WAIT) == b"fresh"


async def test_a_lost_server_ends_every_feed_and_a_new_subscribe_reconnects(
    redis_server: RedisServer,  # only so that the test is skipped where Redis is missing
) -> None:
    with RedisServer() as server:
        bus = RedisBus(server.url, pattern=PATTERN, timeout_seconds=1.0)
        try:
            async with bus.subscribe(_channel(0)) as first, bus.subscribe(_channel(0)) as second:
                server.stop(kill=True)  # redis-py's one reconnection fails too
                for feed in (first, second):
                    with pytest.raises(StopAsyncIteration):
                        await asyncio.wait_for(anext(aiter(feed)), WAIT)
            server.start()
            async with bus.subscribe(_channel(0)) as fresh:
                await bus.publish([(_channel(0), b"back")])
                assert await asyncio.wait_for(anext(aiter(fresh)), WAIT) == b"back"
        finally:
            await bus.close()

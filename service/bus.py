"""The forecast bus: every stream update is announced to its subscribers on any replica.

``LocalBus`` serves the embedded store (one process). ``RedisBus`` uses Redis pub/sub so a
subscriber connected to one replica sees updates made by every replica. Publishing costs
nothing for streams nobody subscribes to: the Redis bus keeps the set of channels with a
subscriber anywhere (``PUBSUB CHANNELS``, refreshed at most once a second), so a new
subscriber on another replica is noticed within about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from redis.asyncio import Redis

from service.errors import StoreUnavailable
from service.state.redis import bounded, client_options

log = logging.getLogger(__name__)

#: Messages a slow subscriber may have waiting before the oldest are dropped.
QUEUE_LIMIT = 256


class ForecastBus(Protocol):
    def has_subscribers(self, channels: Sequence[str]) -> list[bool]:
        """Which of ``channels`` some subscriber (here or elsewhere) listens to."""
        ...

    async def refresh(self) -> None:
        """Bring ``has_subscribers`` up to date if it may be stale (cheap when it is not)."""
        ...

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None: ...

    def subscribe(
        self, channel: str
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[bytes]]: ...

    async def close(self) -> None: ...


class _Fanout:
    """Local subscribers per channel, each with a bounded queue."""

    def __init__(self) -> None:
        self.queues: dict[str, set[asyncio.Queue[bytes]]] = {}

    def add(self, channel: str) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self.queues.setdefault(channel, set()).add(queue)
        return queue

    def remove(self, channel: str, queue: asyncio.Queue[bytes]) -> None:
        members = self.queues.get(channel)
        if members is not None:
            members.discard(queue)
            if not members:
                del self.queues[channel]

    def deliver(self, channel: str, payload: bytes) -> None:
        for queue in self.queues.get(channel, ()):
            if queue.full():  # a slow reader loses the oldest, never blocks the writers
                queue.get_nowait()
            queue.put_nowait(payload)


async def _drain(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()


class LocalBus:
    """In-process bus for the embedded store: one replica, exact subscriber knowledge."""

    def __init__(self) -> None:
        self._fanout = _Fanout()

    def has_subscribers(self, channels: Sequence[str]) -> list[bool]:
        return [c in self._fanout.queues for c in channels]

    async def refresh(self) -> None:
        return None

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for channel, payload in messages:
            self._fanout.deliver(channel, payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        queue = self._fanout.add(channel)
        try:
            yield _drain(queue)
        finally:
            self._fanout.remove(channel, queue)

    async def close(self) -> None:
        self._fanout.queues.clear()


class RedisBus:
    """Redis pub/sub: one PUBLISH pipeline per batch, one pub/sub connection per subscriber."""

    def __init__(
        self, url: str, *, pattern: str, timeout_seconds: float, refresh_seconds: float = 1.0
    ) -> None:
        self._client: Redis = Redis.from_url(url, **client_options(timeout_seconds))
        self._url = url
        self._pattern = pattern
        self._timeout = timeout_seconds
        self._refresh_every = refresh_seconds
        self._refreshed = -float("inf")
        self._remote: set[str] = set()
        self._local: dict[str, int] = {}

    def has_subscribers(self, channels: Sequence[str]) -> list[bool]:
        return [c in self._local or c in self._remote for c in channels]

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self._refreshed < self._refresh_every:
            return
        self._refreshed = now
        try:
            names = await bounded(
                self._client.pubsub_channels(self._pattern), self._timeout, "PUBSUB CHANNELS"
            )
        except StoreUnavailable as exc:
            log.debug("cannot list subscribed channels: %s", exc)
            return
        self._remote = {n.decode() if isinstance(n, bytes) else str(n) for n in names}

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pipe = self._client.pipeline(transaction=False)
        for channel, payload in messages:
            pipe.publish(channel, payload)
        try:
            await bounded(pipe.execute(), self._timeout, "PUBLISH")
        except StoreUnavailable as exc:  # the update itself is stored; only its echo is lost
            log.warning("could not publish %d forecast(s): %s", len(messages), exc)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await bounded(pubsub.subscribe(channel), self._timeout, "SUBSCRIBE")
        self._local[channel] = self._local.get(channel, 0) + 1

        async def messages() -> AsyncIterator[bytes]:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message["data"]
                    yield data if isinstance(data, bytes) else str(data).encode()

        try:
            yield messages()
        finally:
            count = self._local.get(channel, 1) - 1
            if count:
                self._local[channel] = count
            else:
                self._local.pop(channel, None)
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe(channel)
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._client.aclose()


def open_bus(store_url: str, *, key_prefix: str, timeout_seconds: float) -> ForecastBus:
    """Redis pub/sub for a ``redis://`` store, the in-process bus otherwise.

    With Redis Cluster the bus is in-process: subscribers see the updates their own replica
    makes (cluster pub/sub is not wired yet).
    """
    scheme = store_url.split("://", 1)[0].lower()
    if scheme in {"redis", "rediss"}:
        return RedisBus(store_url, pattern=f"{key_prefix}:fc:*", timeout_seconds=timeout_seconds)
    if scheme == "redis+cluster":
        log.warning("forecast subscriptions see only this replica's updates on Redis Cluster")
    return LocalBus()

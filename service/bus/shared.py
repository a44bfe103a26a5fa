"""What both Redis buses share: channel names from PUBSUB replies and the subscriber cache.

Publishing costs nothing for streams nobody subscribes to: the Redis buses keep the set of
channels with a subscriber anywhere (``PUBSUB CHANNELS``, or ``PUBSUB SHARDCHANNELS`` asked of
every primary), refreshed at most once a second, so a new subscriber on another replica is
noticed within about a second. Publishing is best effort: the update itself is stored before
it is announced, so a failed announcement is logged, never raised.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio.client import PubSub

from service.errors import StoreUnavailable
from service.state.redis import bounded

log = logging.getLogger("service.bus")


def names(reply: Any) -> set[str]:
    """Channel names from a PUBSUB reply: a list, or per node lists (cluster fan-out)."""
    lists = reply.values() if isinstance(reply, dict) else [reply]
    return {n.decode() if isinstance(n, bytes) else str(n) for names in lists for n in names or ()}


async def close_pubsub(pubsub: PubSub) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()  # type: ignore[no-untyped-call]


class SubscriberCache:
    """The channels some replica listens to: this replica's exactly, the others' as listed.

    ``list_remote`` asks the store; it runs at most once per ``refresh_seconds``, and a failed
    listing keeps the last one (an outage must not fail the request that announces).
    """

    def __init__(
        self, list_remote: Callable[[], Awaitable[set[str]]], refresh_seconds: float
    ) -> None:
        self._list_remote = list_remote
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
            self._remote = await self._list_remote()
        except StoreUnavailable as exc:
            log.debug("cannot list subscribed channels: %s", exc)

    def add(self, channel: str) -> None:
        self._local[channel] = self._local.get(channel, 0) + 1

    def remove(self, channel: str) -> None:
        count = self._local.get(channel, 1) - 1
        if count:
            self._local[channel] = count
        else:
            self._local.pop(channel, None)


class ListedBus:
    """What both Redis buses share: ``has_subscribers`` from a ``SubscriberCache``."""

    _subscribers: SubscriberCache

    def has_subscribers(self, channels: Sequence[str]) -> list[bool]:
        return self._subscribers.has_subscribers(channels)

    async def refresh(self) -> None:
        await self._subscribers.refresh()


def payload(message: dict[str, Any]) -> bytes:
    data = message["data"]
    return data if isinstance(data, bytes) else str(data).encode()


async def send_pipeline(execute: Awaitable[Any], count: int, seconds: float, what: str) -> None:
    """Run a pipeline of ``count`` publications; an outage is logged, never raised (the
    updates themselves are stored; only their echo is lost)."""
    try:
        await bounded(execute, seconds, what)
    except StoreUnavailable as exc:
        log.warning("could not publish %d forecast(s): %s", count, exc)


__all__ = ["ListedBus", "SubscriberCache", "close_pubsub", "names", "payload", "send_pipeline"]

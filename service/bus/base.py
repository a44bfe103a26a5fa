"""The forecast bus's protocol and what every backend shares: bounded inboxes per subscriber.

Every stream update is announced to its subscribers on any replica (``service.bus.announce``
makes the one announcement per committed batch). A subscriber reads from an inbox that a
reader task fills: reading can be cancelled (the SSE handler gives up every keep-alive period)
without touching the store's connection, and a feed whose store is gone ends cleanly (the
client reconnects and gets a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")

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


class Inbox(Generic[T]):
    """One subscriber's pending messages, then an end mark once its feed is gone.

    An async iterator rather than a generator: cancelling a pending read (``wait_for`` on a
    keep-alive) leaves a generator closed for good, while a queue read can simply be retried.
    """

    def __init__(self, on_drop: Callable[[], None] | None = None) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue(QUEUE_LIMIT)
        self._on_drop = on_drop

    def put(self, payload: T | None) -> None:
        if self._queue.full():  # a slow reader loses the oldest, never blocks the writers
            self._queue.get_nowait()
            if self._on_drop is not None:
                self._on_drop()
        self._queue.put_nowait(payload)

    def end(self) -> None:
        self.put(None)

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T:
        payload = await self._queue.get()
        if payload is None:
            self._queue.put_nowait(None)  # stays ended for any later read
            raise StopAsyncIteration
        return payload


class Fanout:
    """Local subscribers per channel, each with a bounded inbox."""

    def __init__(self) -> None:
        self.inboxes: dict[str, set[Inbox[bytes]]] = {}

    def add(self, channel: str) -> Inbox[bytes]:
        inbox: Inbox[bytes] = Inbox()
        self.inboxes.setdefault(channel, set()).add(inbox)
        return inbox

    def remove(self, channel: str, inbox: Inbox[bytes]) -> None:
        members = self.inboxes.get(channel)
        if members is not None:
            members.discard(inbox)
            if not members:
                del self.inboxes[channel]

    def deliver(self, channel: str, payload: bytes) -> None:
        for inbox in self.inboxes.get(channel, ()):
            inbox.put(payload)


__all__ = ["QUEUE_LIMIT", "Fanout", "ForecastBus", "Inbox"]

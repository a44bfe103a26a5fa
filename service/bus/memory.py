"""The in-process bus for the embedded store: one replica, exact subscriber knowledge."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from service.bus.base import Fanout


class LocalBus:
    """In-process bus for the embedded store: one replica, exact subscriber knowledge."""

    def __init__(self) -> None:
        self._fanout = Fanout()

    def has_subscribers(self, channels: Sequence[str]) -> list[bool]:
        return [c in self._fanout.inboxes for c in channels]

    async def refresh(self) -> None:
        return None

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for channel, payload in messages:
            self._fanout.deliver(channel, payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        inbox = self._fanout.add(channel)
        try:
            yield inbox
        finally:
            self._fanout.remove(channel, inbox)

    async def close(self) -> None:
        self._fanout.inboxes.clear()

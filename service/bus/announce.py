"""The one announcement the observe engine makes after each committed batch.

Every applied update goes two ways from here, encoded once and only if someone hears it:

- to the bus (``ForecastBus``), on the stream's channel, when a subscriber anywhere listens
  to it (the server-sent events of ``/v1/streams/{id}/events``, on any replica);
- to this process's listeners of the stream's tenant (the MQTT bridge publishes each one to
  its forecasts topic), whatever interface the update came in by.

A listener reads ``(stream id, encoded answer)`` pairs from a bounded inbox: a slow one loses
the oldest, never holds up the engine. Announcing is best effort; the update itself is stored.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

from service.bus.base import ForecastBus, Inbox
from service.core.answers import AnswerChunk, ObserveResult
from service.state.keys import stream_channel, tenant_streams

#: What the engine announces: (stream key, answer columns, row of this stream).
Update = tuple[str, AnswerChunk, int]
#: What a listener hears: (stream id, encoded answer).
Heard = tuple[str, bytes]


class Announcer:
    """Encodes each update once and hands it to the bus's subscribers and local listeners."""

    def __init__(
        self, bus: ForecastBus, *, key_prefix: str, encode: Callable[[ObserveResult], bytes] | None
    ) -> None:
        self.bus = bus
        self._prefix = key_prefix
        self._encode = encode
        #: Key start of a tenant's streams -> that tenant's listeners.
        self._listeners: dict[str, set[Inbox[Heard]]] = {}

    async def announce(self, updates: Sequence[Update]) -> None:
        """Publish the updates someone subscribes to or listens for (usually none: free)."""
        if self._encode is None or not updates:
            return
        await self.bus.refresh()
        channels = [stream_channel(self._prefix, key) for key, _, _ in updates]
        wanted = self.bus.has_subscribers(channels)
        messages: list[tuple[str, bytes]] = []
        for channel, want, (key, chunk, row) in zip(channels, wanted, updates, strict=True):
            listeners = self._listeners_of(key) if self._listeners else None
            if not want and not listeners:
                continue
            payload = self._encode(chunk.result(row))
            if want:
                messages.append((channel, payload))
            for inbox in listeners or ():
                inbox.put((chunk.stream_ids[row], payload))
        if messages:
            await self.bus.publish(messages)

    @contextlib.asynccontextmanager
    async def listen(
        self, tenant: str, *, on_drop: Callable[[], None] | None = None
    ) -> AsyncIterator[AsyncIterator[Heard]]:
        """Every update of ``tenant``'s streams made in this process, while the block runs;
        ``on_drop`` is called for each one a full inbox loses."""
        start = self._start(tenant)
        inbox: Inbox[Heard] = Inbox(on_drop)
        self._listeners.setdefault(start, set()).add(inbox)
        try:
            yield inbox
        finally:
            members = self._listeners.get(start)
            if members is not None:
                members.discard(inbox)
                if not members:
                    del self._listeners[start]

    def _start(self, tenant: str) -> str:
        """What every stream key of ``tenant`` starts with (the tenant ends at its ``:``)."""
        return tenant_streams(self._prefix, tenant)

    def _listeners_of(self, key: str) -> set[Inbox[Heard]] | None:
        tenant_end = key.index(":", key.index("{"))
        return self._listeners.get(key[: tenant_end + 1])


__all__ = ["Announcer", "Heard", "Update"]

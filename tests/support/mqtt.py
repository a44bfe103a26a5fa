"""Test-side MQTT clients (aiomqtt): a publisher and a subscriber that collects messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

WAIT_SECONDS = 15.0


def client(url: str) -> aiomqtt.Client:
    parts = urlsplit(url)
    return aiomqtt.Client(parts.hostname or "127.0.0.1", parts.port or 1883)


class Collected:
    """Messages received on a subscription, by topic, decoded as JSON."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, Any]] = []
        self._arrived = asyncio.Condition()

    async def add(self, topic: str, payload: Any) -> None:
        async with self._arrived:
            self.messages.append((topic, payload))
            self._arrived.notify_all()

    def on(self, topic: str) -> list[Any]:
        return [payload for t, payload in self.messages if t == topic]

    async def wait_for(self, topic: str, count: int, within: float = WAIT_SECONDS) -> list[Any]:
        """The first ``count`` messages on ``topic``, waiting for them to arrive."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.on(topic)) >= count), within
            )
        return self.on(topic)[:count]


@contextlib.asynccontextmanager
async def collecting(url: str, *topics: str) -> AsyncIterator[Collected]:
    """Subscribe to ``topics`` (QoS 1) and collect what arrives while the block runs."""
    collected = Collected()
    async with client(url) as sub:
        for topic in topics:
            await sub.subscribe(topic, qos=1)

        async def read() -> None:
            async for message in sub.messages:
                raw = message.payload
                text = raw.decode() if isinstance(raw, bytes | bytearray) else str(raw)
                await collected.add(str(message.topic), json.loads(text))

        reader = asyncio.create_task(read())
        try:
            yield collected
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def publish(url: str, messages: list[tuple[str, bytes]], *, qos: int = 1) -> None:
    """Publish each ``(topic, payload)`` in order on one connection, acknowledged (QoS 1)."""
    async with client(url) as pub:
        for topic, payload in messages:
            await pub.publish(topic, payload, qos=qos)

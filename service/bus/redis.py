"""The forecast bus on one Redis server: pub/sub, one shared connection per replica."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from service.bus.base import Fanout, Inbox
from service.bus.shared import (
    ListedBus,
    SubscriberCache,
    close_pubsub,
    names,
    payload,
    send_pipeline,
)
from service.errors import StoreUnavailable
from service.state.redis import bounded, client_options

log = logging.getLogger("service.bus")


class _SharedPubSub:
    """One pub/sub connection that carries every local subscription of a ``RedisBus``.

    The first local subscriber of a channel sends SUBSCRIBE, the last one to leave sends
    UNSUBSCRIBE; the bus serialises both with its lock, so the commands reach Redis in the
    order the membership changed and a subscriber that joins while another leaves is never
    left unsubscribed. One reader task relays every message to its channel's inboxes and
    settles the confirmations: each SUBSCRIBE queues a future that the next ``subscribe``
    reply for its channel resolves (``False`` once the connection is lost instead).
    """

    def __init__(self, pubsub: PubSub, timeout_seconds: float) -> None:
        self._pubsub = pubsub
        self._timeout = timeout_seconds
        self._fanout = Fanout()
        self._confirmations: dict[str, collections.deque[asyncio.Future[bool]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.lost = False

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def join(self, channel: str) -> tuple[Inbox[bytes], asyncio.Future[bool] | None]:
        """A new inbox on ``channel``, and the confirmation it still waits for, if any.

        The caller holds the bus lock.
        """
        first = channel not in self._fanout.inboxes
        inbox = self._fanout.add(channel)
        pending = self._confirmations.setdefault(channel, collections.deque())
        if not first:
            return inbox, pending[-1] if pending and not pending[-1].done() else None
        confirmed = asyncio.get_running_loop().create_future()
        pending.append(confirmed)
        try:
            await bounded(self._pubsub.subscribe(channel), self._timeout, "SUBSCRIBE")
        except BaseException:  # not sent: no reply will come for it
            pending.remove(confirmed)
            self._fanout.remove(channel, inbox)
            raise
        return inbox, confirmed

    async def leave(self, channel: str, inbox: Inbox[bytes]) -> None:
        """Drop ``inbox``; UNSUBSCRIBE when it was the channel's last. The caller holds the
        bus lock."""
        self._fanout.remove(channel, inbox)
        if self.lost or channel in self._fanout.inboxes:
            return
        if not self._confirmations.get(channel):  # replies still due keep their place
            self._confirmations.pop(channel, None)
        try:
            await bounded(self._pubsub.unsubscribe(channel), self._timeout, "UNSUBSCRIBE")
        except StoreUnavailable as exc:  # the reader sees the same outage and ends the feeds
            log.debug("could not unsubscribe from %s: %s", channel, exc)

    async def _read(self) -> None:
        """Relay messages until the connection is lost for good (redis-py has reconnected
        and re-subscribed once by then), then end every feed."""
        try:
            while True:
                message = await self._pubsub.get_message(timeout=None)
                if message is not None:
                    self._dispatch(message)
        except Exception as exc:
            log.warning("forecast subscriptions ended: %s: %s", type(exc).__name__, exc)
        finally:
            self.lost = True
            for inboxes in self._fanout.inboxes.values():
                for inbox in inboxes:
                    inbox.end()
            for pending in self._confirmations.values():
                for confirmed in pending:
                    if not confirmed.done():
                        confirmed.set_result(False)
            await close_pubsub(self._pubsub)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind not in {"message", "subscribe"}:
            return
        channel = names([message["channel"]]).pop()
        if kind == "message":
            self._fanout.deliver(channel, payload(message))
            return
        pending = self._confirmations.get(channel)
        if pending:  # replies come in the order the SUBSCRIBEs were sent
            confirmed = pending.popleft()
            if not confirmed.done():
                confirmed.set_result(True)
        if not pending and channel not in self._fanout.inboxes:
            self._confirmations.pop(channel, None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        else:
            await close_pubsub(self._pubsub)


class RedisBus(ListedBus):
    """Redis pub/sub: one PUBLISH pipeline per batch, one pub/sub connection per bus.

    Every SSE subscriber of this replica shares that connection (1,000 clients hold one Redis
    connection, not 1,000). When it is lost for good every current feed ends, and the next
    subscriber opens a new one.
    """

    def __init__(
        self, url: str, *, pattern: str, timeout_seconds: float, refresh_seconds: float = 1.0
    ) -> None:
        self._client: Redis = Redis.from_url(url, **client_options(timeout_seconds))
        self._pattern = pattern
        self._timeout = timeout_seconds
        self._subscribers = SubscriberCache(self._list_remote, refresh_seconds)
        self._shared: _SharedPubSub | None = None
        self._membership = asyncio.Lock()
        self._leaving: set[asyncio.Task[None]] = set()

    async def _list_remote(self) -> set[str]:
        reply = await bounded(
            self._client.pubsub_channels(self._pattern), self._timeout, "PUBSUB CHANNELS"
        )
        return names(reply)

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pipe = self._client.pipeline(transaction=False)
        for channel, body in messages:
            pipe.publish(channel, body)
        await send_pipeline(pipe.execute(), len(messages), self._timeout, "PUBLISH")

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async with self._membership:
            shared = await self._connection()
            inbox, confirmed = await shared.join(channel)
        try:
            # Wait for the confirmation: the caller reads the stream's snapshot next, and an
            # update made before the subscription took effect would fall between the two.
            # Shielded: other subscribers of the channel may wait for the same reply.
            if confirmed is not None and not await bounded(
                asyncio.shield(confirmed), self._timeout, "SUBSCRIBE"
            ):
                raise StoreUnavailable(
                    "the pub/sub connection was lost before Redis confirmed SUBSCRIBE",
                    retry_after=max(1, math.ceil(self._timeout)),
                )
        except BaseException:
            await self._leave(shared, channel, inbox)
            raise
        self._subscribers.add(channel)
        try:
            yield inbox
        finally:
            self._subscribers.remove(channel)
            await self._leave(shared, channel, inbox)

    async def _connection(self) -> _SharedPubSub:
        """The shared pub/sub connection, opened now if there is none or it was lost."""
        if self._shared is None or self._shared.lost:
            pubsub = self._client.pubsub()
            try:
                await bounded(
                    pubsub.connect(),  # type: ignore[no-untyped-call]
                    self._timeout,
                    "SUBSCRIBE",
                )
            except BaseException:
                await close_pubsub(pubsub)
                raise
            self._shared = _SharedPubSub(pubsub, self._timeout)
            self._shared.start()
        return self._shared

    async def _leave(self, shared: _SharedPubSub, channel: str, inbox: Inbox[bytes]) -> None:
        """Leave ``channel`` in a task of its own: a subscriber cancelled on its way out (a
        client gone during shutdown) must still UNSUBSCRIBE if it was the last."""
        leaving = asyncio.create_task(self._leave_now(shared, channel, inbox))
        self._leaving.add(leaving)
        leaving.add_done_callback(self._leaving.discard)
        await asyncio.shield(leaving)

    async def _leave_now(self, shared: _SharedPubSub, channel: str, inbox: Inbox[bytes]) -> None:
        async with self._membership:
            await shared.leave(channel, inbox)

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.close()
        await asyncio.gather(*self._leaving, return_exceptions=True)
        await self._client.aclose()

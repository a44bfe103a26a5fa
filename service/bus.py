"""The forecast bus: every stream update is announced to its subscribers on any replica.

``LocalBus`` serves the embedded store (one process). ``RedisBus`` uses Redis pub/sub so a
subscriber connected to one replica sees updates made by every replica. ``RedisClusterBus``
does the same on Redis Cluster with sharded pub/sub (Redis >= 7.0): ``SPUBLISH`` goes to the
primary that owns the channel's hash slot and ``SSUBSCRIBE`` listens there, so a message
crosses one node instead of being broadcast over the whole cluster bus. A channel keeps its
stream key's hash tag (``service.state.keys``), so it lives where the stream does.

Publishing costs nothing for streams nobody subscribes to: the Redis buses keep the set of
channels with a subscriber anywhere (``PUBSUB CHANNELS``, or ``PUBSUB SHARDCHANNELS`` asked of
every primary), refreshed at most once a second, so a new subscriber on another replica is
noticed within about a second. Publishing is best effort: the update itself is stored before
it is announced, so a failed announcement is logged, never raised.

A subscriber reads from an inbox that a reader task fills: reading can be cancelled (the SSE
handler gives up every keep-alive period) without touching the Redis connection, and a feed
whose store is gone ends cleanly (the client reconnects and gets a fresh snapshot).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster

from service.errors import StoreUnavailable
from service.state import parse_cluster_url
from service.state.keys import channel_pattern
from service.state.redis import bounded, client_options

log = logging.getLogger(__name__)

#: Messages a slow subscriber may have waiting before the oldest are dropped.
QUEUE_LIMIT = 256

#: Times in a row a cluster subscription is moved or re-opened without a message in between
#: before it gives up and ends its feed (a node that keeps dropping us).
RESUBSCRIBE_LIMIT = 3


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


class _Inbox:
    """One subscriber's pending messages, then an end mark once its feed is gone.

    An async iterator rather than a generator: cancelling a pending read (``wait_for`` on a
    keep-alive) leaves a generator closed for good, while a queue read can simply be retried.
    """

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_LIMIT)

    def put(self, payload: bytes | None) -> None:
        if self._queue.full():  # a slow reader loses the oldest, never blocks the writers
            self._queue.get_nowait()
        self._queue.put_nowait(payload)

    def end(self) -> None:
        self.put(None)

    def __aiter__(self) -> _Inbox:
        return self

    async def __anext__(self) -> bytes:
        payload = await self._queue.get()
        if payload is None:
            self._queue.put_nowait(None)  # stays ended for any later read
            raise StopAsyncIteration
        return payload


class _Fanout:
    """Local subscribers per channel, each with a bounded inbox."""

    def __init__(self) -> None:
        self.inboxes: dict[str, set[_Inbox]] = {}

    def add(self, channel: str) -> _Inbox:
        inbox = _Inbox()
        self.inboxes.setdefault(channel, set()).add(inbox)
        return inbox

    def remove(self, channel: str, inbox: _Inbox) -> None:
        members = self.inboxes.get(channel)
        if members is not None:
            members.discard(inbox)
            if not members:
                del self.inboxes[channel]

    def deliver(self, channel: str, payload: bytes) -> None:
        for inbox in self.inboxes.get(channel, ()):
            inbox.put(payload)


class LocalBus:
    """In-process bus for the embedded store: one replica, exact subscriber knowledge."""

    def __init__(self) -> None:
        self._fanout = _Fanout()

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


def _names(reply: Any) -> set[str]:
    """Channel names from a PUBSUB reply: a list, or per node lists (cluster fan-out)."""
    lists = reply.values() if isinstance(reply, dict) else [reply]
    return {n.decode() if isinstance(n, bytes) else str(n) for names in lists for n in names or ()}


async def _close_pubsub(pubsub: PubSub) -> None:
    with contextlib.suppress(Exception):
        await pubsub.aclose()  # type: ignore[no-untyped-call]


class _SubscriberCache:
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


class _ListedBus:
    """What both Redis buses share: ``has_subscribers`` from a ``_SubscriberCache``."""

    _subscribers: _SubscriberCache

    def has_subscribers(self, channels: Sequence[str]) -> list[bool]:
        return self._subscribers.has_subscribers(channels)

    async def refresh(self) -> None:
        await self._subscribers.refresh()


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
        self._fanout = _Fanout()
        self._confirmations: dict[str, collections.deque[asyncio.Future[bool]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.lost = False

    def start(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def join(self, channel: str) -> tuple[_Inbox, asyncio.Future[bool] | None]:
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

    async def leave(self, channel: str, inbox: _Inbox) -> None:
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
            await _close_pubsub(self._pubsub)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind not in {"message", "subscribe"}:
            return
        channel = _names([message["channel"]]).pop()
        if kind == "message":
            self._fanout.deliver(channel, _payload(message))
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
            await _close_pubsub(self._pubsub)


class RedisBus(_ListedBus):
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
        self._subscribers = _SubscriberCache(self._list_remote, refresh_seconds)
        self._shared: _SharedPubSub | None = None
        self._membership = asyncio.Lock()
        self._leaving: set[asyncio.Task[None]] = set()

    async def _list_remote(self) -> set[str]:
        reply = await bounded(
            self._client.pubsub_channels(self._pattern), self._timeout, "PUBSUB CHANNELS"
        )
        return _names(reply)

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
                await _close_pubsub(pubsub)
                raise
            self._shared = _SharedPubSub(pubsub, self._timeout)
            self._shared.start()
        return self._shared

    async def _leave(self, shared: _SharedPubSub, channel: str, inbox: _Inbox) -> None:
        """Leave ``channel`` in a task of its own: a subscriber cancelled on its way out (a
        client gone during shutdown) must still UNSUBSCRIBE if it was the last."""
        leaving = asyncio.create_task(self._leave_now(shared, channel, inbox))
        self._leaving.add(leaving)
        leaving.add_done_callback(self._leaving.discard)
        await asyncio.shield(leaving)

    async def _leave_now(self, shared: _SharedPubSub, channel: str, inbox: _Inbox) -> None:
        async with self._membership:
            await shared.leave(channel, inbox)

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            await shared.close()
        await asyncio.gather(*self._leaving, return_exceptions=True)
        await self._client.aclose()


async def _confirmed(pubsub: PubSub, kind: str, wait_seconds: float, where: str) -> None:
    """Read replies until the server confirms the subscription (``kind``), or time out."""
    while True:
        reply = await pubsub.get_message(timeout=wait_seconds)
        if reply is None:
            raise redis_errors.TimeoutError(f"no {kind.upper()} confirmation from {where}")
        if reply.get("type") == kind:
            return


def _payload(message: dict[str, Any]) -> bytes:
    data = message["data"]
    return data if isinstance(data, bytes) else str(data).encode()


@dataclass(slots=True)
class _ShardSubscription:
    """One SSUBSCRIBE on the primary that owns the channel's slot, on its own connection."""

    client: Redis
    pubsub: PubSub
    node: str

    async def close(self) -> None:
        await _close_pubsub(self.pubsub)
        with contextlib.suppress(Exception):
            await self.client.aclose()


class _Moved(Exception):
    """The node dropped our shard subscription: the channel's slot now lives elsewhere."""


class RedisClusterBus(_ListedBus):
    """Sharded pub/sub on Redis Cluster: SPUBLISH per owning primary, SSUBSCRIBE there.

    redis-py's ``ClusterPubSub`` would route sharded subscriptions too, but it shares one
    connection per node between all its channels and re-routes them from background tasks;
    one subscriber per connection keeps a lost node or a moved slot this subscriber's affair:
    its reader re-resolves the owner from a fresh slot map and subscribes again there, or ends
    the feed when it cannot.
    """

    def __init__(
        self,
        nodes: Sequence[tuple[str, int]],
        *,
        pattern: str,
        timeout_seconds: float,
        username: str | None = None,
        password: str | None = None,
        refresh_seconds: float = 1.0,
    ) -> None:
        if not nodes:
            raise ValueError("a Redis Cluster needs at least one startup node")
        self._options: dict[str, Any] = {
            **client_options(timeout_seconds),
            "username": username,
            "password": password,
        }
        self._client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes], **self._options
        )
        self._pattern = pattern
        self._timeout = timeout_seconds
        self._subscribers = _SubscriberCache(self._list_remote, refresh_seconds)
        self._readers: set[asyncio.Task[None]] = set()

    async def _list_remote(self) -> set[str]:
        reply = await bounded(
            self._client.execute_command(
                "PUBSUB SHARDCHANNELS", self._pattern, target_nodes=RedisCluster.PRIMARIES
            ),
            self._timeout,
            "PUBSUB SHARDCHANNELS",
        )
        return _names(reply)

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pipe = self._client.pipeline()  # one round trip per owning primary, sent concurrently
        for channel, payload in messages:
            pipe.spublish(channel, payload)
        try:
            await bounded(pipe.execute(), self._timeout, "SPUBLISH")
        except StoreUnavailable as exc:  # the update itself is stored; only its echo is lost
            log.warning("could not publish %d forecast(s): %s", len(messages), exc)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        first = await bounded(self._open(channel, fresh_map=False), self._timeout, "SSUBSCRIBE")
        inbox = _Inbox()
        reader = asyncio.create_task(self._relay(channel, first, inbox))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)
        self._subscribers.add(channel)
        try:
            yield inbox
        finally:
            self._subscribers.remove(channel)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _open(self, channel: str, *, fresh_map: bool) -> _ShardSubscription:
        """SSUBSCRIBE on the channel's primary; a MOVED reply re-reads the slot map once.

        It waits for the confirmation: the caller reads the stream's snapshot next, and an
        update made before the subscription took effect would fall between the two.
        """
        try:
            return await self._open_on_owner(channel, fresh_map=fresh_map)
        except redis_errors.AskError:  # MovedError too: our slot map is stale
            return await self._open_on_owner(channel, fresh_map=True)

    async def _open_on_owner(self, channel: str, *, fresh_map: bool) -> _ShardSubscription:
        if fresh_map:
            await self._client.nodes_manager.initialize()
        else:
            await self._client.initialize()
        node = self._client.get_node_from_key(channel)
        if node is None:
            raise redis_errors.SlotNotCoveredError(f"no node serves channel {channel!r}")
        client = Redis(host=node.host, port=int(node.port), **self._options)
        subscription = _ShardSubscription(client, client.pubsub(), node.name)
        try:
            await subscription.pubsub.ssubscribe(channel)
            # The reply to SSUBSCRIBE (or its MOVED error) comes first.
            await _confirmed(subscription.pubsub, "ssubscribe", self._timeout, node.name)
            return subscription
        except BaseException:
            await subscription.close()
            raise

    async def _relay(self, channel: str, subscription: _ShardSubscription, inbox: _Inbox) -> None:
        """Copy messages to ``inbox``; follow the channel when its slot moves or its node is
        lost, and end the feed when the cluster cannot take the subscription back."""
        retries = RESUBSCRIBE_LIMIT
        try:
            while True:
                try:
                    async for message in subscription.pubsub.listen():
                        kind = message.get("type")
                        if kind == "smessage":
                            inbox.put(_payload(message))
                            retries = RESUBSCRIBE_LIMIT
                        elif kind == "sunsubscribe":  # the server's doing: the slot moved
                            raise _Moved(f"{subscription.node} dropped the subscription")
                    raise _Moved(f"{subscription.node} dropped the subscription")
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                await subscription.close()
                if retries == 0:
                    log.warning("forecast subscription to %s ended: %s", channel, reason)
                    return
                retries -= 1
                log.info("re-subscribing to %s (%s)", channel, reason)
                try:
                    subscription = await bounded(
                        self._open(channel, fresh_map=True), self._timeout, "SSUBSCRIBE"
                    )
                except Exception as exc:  # whatever the cause, the feed ends, never the app
                    log.warning("forecast subscription to %s ended: %s", channel, exc)
                    return
        finally:
            inbox.end()
            await subscription.close()

    async def close(self) -> None:
        for reader in list(self._readers):
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._client.aclose()


def open_bus(store_url: str, *, key_prefix: str, timeout_seconds: float) -> ForecastBus:
    """Redis pub/sub for a ``redis://`` store, sharded pub/sub for ``redis+cluster://``, the
    in-process bus otherwise."""
    scheme = store_url.split("://", 1)[0].lower()
    pattern = channel_pattern(key_prefix)
    if scheme in {"redis", "rediss"}:
        return RedisBus(store_url, pattern=pattern, timeout_seconds=timeout_seconds)
    if scheme == "redis+cluster":
        nodes, username, password = parse_cluster_url(store_url)
        return RedisClusterBus(
            nodes,
            pattern=pattern,
            timeout_seconds=timeout_seconds,
            username=username,
            password=password,
        )
    return LocalBus()

"""The forecast bus on Redis Cluster: sharded pub/sub (Redis >= 7.0).

``SPUBLISH`` goes to the primary that owns the channel's hash slot and ``SSUBSCRIBE`` listens
there, so a message crosses one node instead of being broadcast over the whole cluster bus. A
channel keeps its stream key's hash tag (``service.state.keys``), so it lives where the stream
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis.exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster

from service.bus.base import Inbox
from service.bus.shared import (
    ListedBus,
    SubscriberCache,
    close_pubsub,
    names,
    payload,
    send_pipeline,
)
from service.state.redis import bounded, client_options

log = logging.getLogger("service.bus")

#: Times in a row a cluster subscription is moved or re-opened without a message in between
#: before it gives up and ends its feed (a node that keeps dropping us).
RESUBSCRIBE_LIMIT = 3


async def _confirmed(pubsub: PubSub, kind: str, wait_seconds: float, where: str) -> None:
    """Read replies until the server confirms the subscription (``kind``), or time out."""
    while True:
        reply = await pubsub.get_message(timeout=wait_seconds)
        if reply is None:
            raise redis_errors.TimeoutError(f"no {kind.upper()} confirmation from {where}")
        if reply.get("type") == kind:
            return


@dataclass(slots=True)
class _ShardSubscription:
    """One SSUBSCRIBE on the primary that owns the channel's slot, on its own connection."""

    client: Redis
    pubsub: PubSub
    node: str

    async def close(self) -> None:
        await close_pubsub(self.pubsub)
        with contextlib.suppress(Exception):
            await self.client.aclose()


class _Moved(Exception):
    """The node dropped our shard subscription: the channel's slot now lives elsewhere."""


class RedisClusterBus(ListedBus):
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
        self._subscribers = SubscriberCache(self._list_remote, refresh_seconds)
        self._readers: set[asyncio.Task[None]] = set()

    async def _list_remote(self) -> set[str]:
        reply = await bounded(
            self._client.execute_command(
                "PUBSUB SHARDCHANNELS", self._pattern, target_nodes=RedisCluster.PRIMARIES
            ),
            self._timeout,
            "PUBSUB SHARDCHANNELS",
        )
        return names(reply)

    async def publish(self, messages: Sequence[tuple[str, bytes]]) -> None:
        if not messages:
            return
        pipe = self._client.pipeline()  # one round trip per owning primary, sent concurrently
        for channel, body in messages:
            pipe.spublish(channel, body)
        await send_pipeline(pipe.execute(), len(messages), self._timeout, "SPUBLISH")

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[AsyncIterator[bytes]]:
        first = await bounded(self._open(channel, fresh_map=False), self._timeout, "SSUBSCRIBE")
        inbox: Inbox[bytes] = Inbox()
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

    async def _relay(
        self, channel: str, subscription: _ShardSubscription, inbox: Inbox[bytes]
    ) -> None:
        """Copy messages to ``inbox``; follow the channel when its slot moves or its node is
        lost, and end the feed when the cluster cannot take the subscription back."""
        retries = RESUBSCRIBE_LIMIT
        try:
            while True:
                try:
                    async for message in subscription.pubsub.listen():
                        kind = message.get("type")
                        if kind == "smessage":
                            inbox.put(payload(message))
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

"""The Redis Cluster backend: the same record format and compare-and-set as ``redis.py``.

Each stream key carries its own hash tag (``{tenant:stream}``, see ``keys.stream_key``), so
the streams of a batch sit in as many hash slots as there are streams, and a cluster refuses
a multi-key command (MGET, a script's KEYS) that spans slots. One command per slot would cost
a round trip's worth of client work per stream (measured ~100 us per stream through
redis-py's cluster pipeline, against ~5 us for one MGET on a single Redis). So a batch runs
as one Lua script call per node, the nodes called concurrently: the script is flagged
``allow-cross-slot-keys`` (Redis >= 7.0) and takes its keys in ARGV, which Redis allows as
long as the node serves every key.

Each batch script reads all its keys before it writes any: if the client's slot map is stale
(resharding, failover) and a key lives elsewhere, the node refuses the whole call before
writing, and those items go again one key at a time through redis-py, which follows the
MOVED/ASK redirects and refreshes its map.

A batched compare-and-set is atomic per node, not across nodes: if one node fails mid-batch
the others may have written. The caller sees ``StoreUnavailable`` and, like any writer that
retries, re-reads before writing again, so the tokens tell it which items went through.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster

from service.state.base import SCAN_COUNT, ScanStep
from service.state.cas import CAS_BODY, Item, Outcome, outcomes, pack
from service.state.redis import (
    MAX_CONNECTIONS,
    RedisCommands,
    client_options,
    glob_prefix,
    key_names,
    seconds_left,
    ttl_milliseconds,
)


@dataclass(frozen=True, slots=True)
class NodeScript:
    """A Lua script run on one node at a time, over keys of any slots that node serves."""

    text: str

    @property
    def sha(self) -> str:
        return hashlib.sha1(self.text.encode("utf-8")).hexdigest()


#: Prefix of the error a batch script returns when its node does not serve one of its keys.
_NOT_LOCAL = "NOTLOCAL"

#: ``cas.CAS_BODY`` for the keys one node serves (its keys are in ARGV, in the packed items).
NODE_CAS_SCRIPT = NodeScript("#!lua flags=allow-cross-slot-keys\n" + CAS_BODY)


def node_reads(command: str) -> NodeScript:
    """A read-only single-key ``command`` for each of the keys one node serves, in ARGV."""
    return NodeScript(
        f"""#!lua flags=allow-cross-slot-keys,no-writes
local replies = {{}}
for i = 1, #ARGV do
  local reply = redis.pcall('{command}', ARGV[i])
  if type(reply) == 'table' and reply.err then
    return redis.error_reply('NOTLOCAL ' .. reply.err)
  end
  replies[i] = reply
end
return replies
"""
    )


#: MGET for the keys one node serves.
NODE_GET_SCRIPT = node_reads("GET")
#: PTTL for the keys one node serves (-2: no such key, -1: no expiry).
NODE_PTTL_SCRIPT = node_reads("PTTL")

#: Errors after which the slot map may have changed; a batch is sent again once.
_REROUTE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.ClusterError,
    redis_errors.TryAgainError,
    redis_errors.AskError,  # MovedError too
    redis_errors.RedisClusterException,  # SlotNotCoveredError; a redirect redis-py re-routes
)


class RedisClusterStore(RedisCommands[RedisCluster]):
    """State store on a Redis Cluster (Redis >= 7.0 for the cross-slot batch scripts).

    Takes ``RedisCommands``' arguments with a ``redis.asyncio.cluster.RedisCluster`` client;
    ``from_nodes`` builds one with bounded timeouts and retries. Single-key calls are
    ``RedisCommands``' own: redis-py routes them by the key's slot.
    """

    #: Routed one key at a time by redis-py (the items of a node that refused a batch) and
    #: run on each node for its keys alike.
    cas_script = NODE_CAS_SCRIPT.text

    @classmethod
    def from_nodes(
        cls,
        nodes: Sequence[tuple[str, int]],
        *,
        timeout_seconds: float = 2.0,
        username: str | None = None,
        password: str | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> RedisClusterStore:
        """A store with its own client, discovering the cluster from ``nodes``; closes it.

        Each node's pool and the store's gate hold ``max_connections``: a call uses at most
        one connection per node at a time, so no node's pool can run dry.
        """
        if not nodes:
            raise ValueError("a Redis Cluster needs at least one startup node")
        options = client_options(timeout_seconds)
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=username,
            password=password,
            socket_timeout=options["socket_timeout"],
            socket_connect_timeout=options["socket_connect_timeout"],
            retry=options["retry"],
            max_connections=max_connections,
        )
        return cls(
            client,
            timeout_seconds=timeout_seconds,
            close_client=True,
            max_connections=max_connections,
        )

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self._read_each(NODE_GET_SCRIPT, keys, self._client.get, "MGET")
        return cast(list[bytes | None], values)

    async def commit_many(self, items: Sequence[Item], ttl_seconds: float) -> list[Outcome]:
        if not items:
            return []
        ttl = ttl_milliseconds(ttl_seconds)
        packed = [pack([item]) for item in items]  # refuses bad items before sending

        def argv(indexes: list[int]) -> list[str | bytes | int]:
            return [ttl, b"".join(packed[i] for i in indexes)]

        async def one(index: int) -> Any:
            # The key declared, so redis-py routes the call and follows redirects.
            results = await self._cas(keys=[items[index][0]], args=[ttl, packed[index]])
            return results[0]

        keys = [key for key, _, _ in items]
        reply = await self._call(
            self._per_node(NODE_CAS_SCRIPT, keys, argv, one), "compare-and-set"
        )
        return outcomes(reply)

    async def time_left(self, keys: Sequence[str]) -> list[float | None]:
        pttls = await self._read_each(NODE_PTTL_SCRIPT, keys, self._client.pttl, "PTTL")
        return [seconds_left(int(pttl)) for pttl in pttls]

    async def ping(self) -> None:
        """Every primary must answer: a missing one means some streams cannot be served."""
        await self._call(self._client.ping(target_nodes=RedisCluster.PRIMARIES), "PING")

    async def scan(self, start: str, *, shard: int, cursor: int) -> ScanStep:
        """SCAN on one primary: shard ``i`` is the ``i``-th by name (``host:port``)."""
        await self._call(self._client.initialize(), "SCAN")
        primaries = sorted(self._client.get_primaries(), key=lambda node: node.name)
        if not 0 <= shard < len(primaries) or cursor < 0:
            raise ValueError(f"the cluster has {len(primaries)} primaries, not shard {shard}")
        command = ("SCAN", cursor, "MATCH", glob_prefix(start), "COUNT", SCAN_COUNT)
        reply = await self._call(
            self._client.execute_command(*command, target_nodes=primaries[shard]), "SCAN"
        )
        cursors, keys = reply  # redis-py answers each node's cursor by its name
        following = cursors.get(primaries[shard].name, 0) if isinstance(cursors, dict) else cursors
        return ScanStep(key_names(keys), int(following), len(primaries))

    async def _read_each(
        self,
        script: NodeScript,
        keys: Sequence[str],
        command: Callable[[str], Awaitable[Any]],
        what: str,
    ) -> list[Any]:
        """One reply per key from a read-only ``script`` whose ARGV is the keys of one node;
        ``command`` reads one key through redis-py's routing where a node refused the batch.
        """
        if not keys:
            return []

        def argv(indexes: list[int]) -> list[str | bytes | int]:
            return [keys[i] for i in indexes]

        def one(index: int) -> Awaitable[Any]:
            return command(keys[index])

        return await self._call(self._per_node(script, keys, argv, one), what)

    async def _per_node(
        self,
        script: NodeScript,
        keys: Sequence[str],
        argv: Callable[[list[int]], list[str | bytes | int]],
        one: Callable[[int], Awaitable[Any]],
    ) -> list[Any]:
        """Run ``script`` once per node over the items whose keys it serves.

        ``argv`` gives the script's ARGV for the items at the given indexes; ``one`` does
        the same work for one item through redis-py's routing, for the items of a node that
        refused the batch. Returns one result per item, in order.
        """
        for attempt in range(2):
            try:
                return await self._per_node_once(script, keys, argv, one)
            except _REROUTE_ERRORS:
                # redis-py has marked its slot map stale; initialize() reloads it next time.
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _per_node_once(
        self,
        script: NodeScript,
        keys: Sequence[str],
        argv: Callable[[list[int]], list[str | bytes | int]],
        one: Callable[[int], Awaitable[Any]],
    ) -> list[Any]:
        await self._client.initialize()  # returns at once while the slot map is current
        groups: dict[str, tuple[ClusterNode, list[int]]] = {}
        for index, key in enumerate(keys):
            node = self._client.get_node_from_key(key)
            if node is None:  # only with replica=True; kept for the type checker
                raise redis_errors.SlotNotCoveredError(f"no node serves {key!r}")
            groups.setdefault(node.name, (node, []))[1].append(index)
        calls = [self._node_batch(node, script, argv(indexes)) for node, indexes in groups.values()]
        # Every call ends (or is cancelled with the caller) before a failure is raised.
        per_node = await asyncio.gather(*calls, return_exceptions=True)
        for result in per_node:
            if isinstance(result, BaseException):
                raise result
        out: list[Any] = [None] * len(keys)
        for (_, indexes), results in zip(groups.values(), per_node, strict=True):
            if results is None:
                # Refused, nothing written: item by item, in order, through redis-py's
                # redirects; after the batches, since redis-py may send an ASK redirect's
                # ASKING and its command on two connections when a node is busy.
                for index in indexes:
                    out[index] = await one(index)
            else:
                for index, result in zip(indexes, cast(list[Any], results), strict=True):
                    out[index] = result
        return out

    async def _node_batch(
        self, node: ClusterNode, script: NodeScript, args: list[str | bytes | int]
    ) -> list[Any] | None:
        """One script call on ``node``; None if the node does not serve all its keys."""
        command = ("EVALSHA", script.sha, 0, *args)
        try:
            try:
                reply = await self._client.execute_command(*command, target_nodes=node)
            except redis_errors.NoScriptError:
                # Refused before running anything, so sending it again is safe.
                await self._client.execute_command("SCRIPT LOAD", script.text, target_nodes=node)
                reply = await self._client.execute_command(*command, target_nodes=node)
        except redis_errors.ResponseError as exc:
            if str(exc).startswith(_NOT_LOCAL):
                return None  # the script reads every key before its first write
            raise
        return cast(list[Any], reply)

"""The Redis Cluster backend: the same record format and compare-and-set script as ``redis.py``.

A cluster refuses a multi-key command whose keys live in different hash slots, and each
stream key carries its own hash tag (``{tenant:stream}``, see ``record.stream_key``), so a
batch is split by slot: one MGET or one script call per slot. The calls go out as one
redis-py cluster pipeline, which sends each node its share in one round trip and all nodes
concurrently; a task per slot would instead open up to one connection per stream.

A batched compare-and-set is atomic per slot, not across slots: if one node fails mid-batch
the others may have written. The caller sees ``StoreUnavailable`` and, like any writer that
retries, re-reads before writing again, so the tokens tell it which items went through.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import cast

import redis.exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from service.state.redis import CAS_SCRIPT, bounded, cas_arguments, client_options, ttl_milliseconds


def group_by_slot(keys: Sequence[str]) -> list[list[int]]:
    """Indexes of ``keys`` grouped by hash slot, each group in the order given."""
    groups: defaultdict[int, list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        groups[key_slot(key.encode("utf-8"))].append(index)
    return list(groups.values())


class RedisClusterStore:
    """State store on a Redis Cluster.

    Args:
        client: A ``redis.asyncio.cluster.RedisCluster`` client; ``from_nodes`` builds one
            with bounded timeouts and retries.
        timeout_seconds: Upper bound on every call, every slot of a batch included.
        close_client: Close ``client`` in ``close()``. True only when the store owns it.
    """

    def __init__(
        self, client: RedisCluster, *, timeout_seconds: float = 2.0, close_client: bool = False
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self._client = client
        self._timeout = timeout_seconds
        self._close_client = close_client
        # EVALSHA routed by its keys' slot; loaded on every primary again if one lost it.
        self._cas = client.register_script(CAS_SCRIPT)

    @classmethod
    def from_nodes(
        cls,
        nodes: Sequence[tuple[str, int]],
        *,
        timeout_seconds: float = 2.0,
        username: str | None = None,
        password: str | None = None,
    ) -> RedisClusterStore:
        """A store with its own client, discovering the cluster from ``nodes``; closes it."""
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
        )
        return cls(client, timeout_seconds=timeout_seconds, close_client=True)

    async def get(self, key: str) -> bytes | None:
        value = await bounded(self._client.get(key), self._timeout, "GET")
        return cast(bytes | None, value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        groups = group_by_slot(keys)
        pipe = self._client.pipeline()
        for indexes in groups:
            # redis-py blocks pipe.mget in a cluster (it cannot know the keys share a slot).
            pipe.execute_command("MGET", *(keys[i] for i in indexes))
        per_slot = await bounded(pipe.execute(), self._timeout, "MGET")
        out: list[bytes | None] = [None] * len(keys)
        for indexes, values in zip(groups, per_slot, strict=True):
            for index, value in zip(indexes, values, strict=True):
                out[index] = value
        return out

    async def compare_and_set(
        self, key: str, expected_token: bytes | None, value: bytes, ttl_seconds: float
    ) -> bool:
        keys, args = cas_arguments([(key, expected_token, value)], ttl_seconds)
        results = await bounded(self._cas(keys=keys, args=args), self._timeout, "compare-and-set")
        return bool(results[0])

    async def compare_and_set_many(
        self, items: Sequence[tuple[str, bytes | None, bytes]], ttl_seconds: float
    ) -> list[bool]:
        if not items:
            return []
        groups = group_by_slot([key for key, _, _ in items])
        # Every argument is checked before anything is sent.
        calls = [cas_arguments([items[i] for i in indexes], ttl_seconds) for indexes in groups]
        per_slot = await bounded(self._cas_per_slot(calls), self._timeout, "compare-and-set")
        out = [False] * len(items)
        for indexes, results in zip(groups, per_slot, strict=True):
            for index, result in zip(indexes, results, strict=True):
                out[index] = bool(result)
        return out

    async def _cas_per_slot(
        self, calls: Sequence[tuple[list[str], list[bytes | int]]]
    ) -> list[list[int]]:
        """One EVALSHA per slot, pipelined per node; loads the script where it is missing.

        A node without the script (restarted, flushed, failed over) refuses the call without
        running anything, so loading the script and sending the batch again is safe; items
        of the first try that did land count as written on the second (see ``CAS_SCRIPT``).
        """
        for attempt in range(2):
            pipe = self._client.pipeline()
            for keys, args in calls:
                pipe.execute_command("EVALSHA", self._cas.sha, len(keys), *keys, *args)
            try:
                return cast(list[list[int]], await pipe.execute())
            except redis_errors.NoScriptError:
                if attempt:
                    raise
                await self._client.script_load(CAS_SCRIPT)  # on every primary
        raise AssertionError("unreachable")

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        px = ttl_milliseconds(ttl_seconds)
        await bounded(self._client.set(key, value, px=px), self._timeout, "SET")

    async def delete(self, key: str) -> bool:
        removed = await bounded(self._client.delete(key), self._timeout, "DEL")
        return bool(removed)

    async def ping(self) -> None:
        """Every primary must answer: a missing one means some streams cannot be served."""
        await bounded(self._client.ping(target_nodes=RedisCluster.PRIMARIES), self._timeout, "PING")

    async def close(self) -> None:
        if self._close_client:
            await self._client.aclose()

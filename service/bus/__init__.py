"""The forecast bus: every stream update is announced to its subscribers on any replica.

- ``base``: the ``ForecastBus`` protocol and the bounded inboxes every backend fills;
- ``memory``: ``LocalBus`` for the embedded store (one process);
- ``redis``: ``RedisBus``, Redis pub/sub, so a subscriber on one replica hears every replica;
- ``cluster``: ``RedisClusterBus``, sharded pub/sub on Redis Cluster;
- ``announce``: the ``Announcer``, the one call the observe engine makes per committed batch,
  which feeds the bus and this process's listeners (the MQTT bridge).

The Redis backends are imported by ``open_bus`` (or on first use of their names here), so
the embedded store never needs the Redis client loaded.
"""

from __future__ import annotations

from typing import Any

from service.bus.announce import Announcer
from service.bus.base import ForecastBus
from service.bus.memory import LocalBus
from service.state.keys import channel_pattern

__all__ = ["Announcer", "ForecastBus", "LocalBus", "RedisBus", "RedisClusterBus", "open_bus"]


def open_bus(store_url: str, *, key_prefix: str, timeout_seconds: float) -> ForecastBus:
    """Redis pub/sub for a ``redis://`` store, sharded pub/sub for ``redis+cluster://``, the
    in-process bus otherwise."""
    scheme = store_url.split("://", 1)[0].lower()
    pattern = channel_pattern(key_prefix)
    if scheme in {"redis", "rediss"}:
        from service.bus.redis import RedisBus

        return RedisBus(store_url, pattern=pattern, timeout_seconds=timeout_seconds)
    if scheme == "redis+cluster":
        from service.bus.cluster import RedisClusterBus
        from service.state import parse_cluster_url

        nodes, username, password = parse_cluster_url(store_url)
        return RedisClusterBus(
            nodes,
            pattern=pattern,
            timeout_seconds=timeout_seconds,
            username=username,
            password=password,
        )
    return LocalBus()


def __getattr__(name: str) -> Any:
    """``RedisBus`` and ``RedisClusterBus`` by name, imported when first asked for."""
    if name == "RedisBus":
        from service.bus.redis import RedisBus

        return RedisBus
    if name == "RedisClusterBus":
        from service.bus.cluster import RedisClusterBus

        return RedisClusterBus
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

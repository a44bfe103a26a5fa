"""State stores: the protocol, the record codec and the backends."""

from __future__ import annotations

from urllib.parse import unquote

from service.state.base import StateStore

__all__ = ["StateStore", "open_store", "parse_cluster_url"]


def open_store(url: str, *, timeout_seconds: float, max_connections: int = 100) -> StateStore:
    """The backend named by ``url``'s scheme, owning (and closing) its own client.

    - ``memory://``: the embedded in-process store.
    - ``redis://`` / ``rediss://``: one Redis server (redis-py URL syntax, db, password).
    - ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis Cluster,
      discovered from these startup nodes.

    Backends are imported here, not at module import, so the embedded store never needs
    the Redis client loaded. ``max_connections`` bounds a Redis backend's connections (per
    node of a cluster); calls beyond it wait for one within ``timeout_seconds``.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "memory":
        from service.state.memory import MemoryStore

        return MemoryStore()
    if scheme in {"redis", "rediss"}:
        from service.state.redis import RedisStore

        return RedisStore.from_url(
            url, timeout_seconds=timeout_seconds, max_connections=max_connections
        )
    if scheme == "redis+cluster":
        from service.state.cluster import RedisClusterStore

        nodes, username, password = parse_cluster_url(url)
        return RedisClusterStore.from_nodes(
            nodes,
            timeout_seconds=timeout_seconds,
            username=username,
            password=password,
            max_connections=max_connections,
        )
    raise ValueError(
        f"unknown state store URL {url!r}: use memory://, redis://, rediss:// or redis+cluster://"
    )


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """Startup nodes, user name and password of a ``redis+cluster://`` URL."""
    rest = url.split("://", 1)[1]
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    username: str | None = None
    password: str | None = None
    if "@" in rest:
        credentials, rest = rest.rsplit("@", 1)
        user, sep, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    nodes: list[tuple[str, int]] = []
    for node in rest.split(","):
        host, sep, port = node.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"cluster node {node!r} in {url!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, username, password

"""``open_store`` picks the backend from the URL and does no I/O until the first call."""

from __future__ import annotations

import pytest

from service.errors import StoreUnavailable
from service.state import open_store, parse_cluster_url
from service.state.base import StateStore
from service.state.cluster import RedisClusterStore
from service.state.memory import MemoryStore
from service.state.redis import RedisStore
from tests.support.redis_server import free_port


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("memory://", MemoryStore),
        ("redis://127.0.0.1:6390/0", RedisStore),
        ("rediss://user:secret@redis.example:6380/2", RedisStore),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001", RedisClusterStore),
    ],
)
async def test_the_scheme_picks_the_backend(url: str, backend: type) -> None:
    store = open_store(url, timeout_seconds=1.0)
    try:
        assert isinstance(store, backend)
        assert isinstance(store, StateStore)
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["postgres://db/1", "127.0.0.1:6379", "redis+sentinel://h:1"])
def test_an_unknown_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="unknown state store URL"):
        open_store(url, timeout_seconds=1.0)


def test_cluster_urls_name_startup_nodes_and_credentials() -> None:
    assert parse_cluster_url("redis+cluster://a:7000,b:7001/") == (
        [("a", 7000), ("b", 7001)],
        None,
        None,
    )
    assert parse_cluster_url("redis+cluster://svc:p%40ss@h:1") == ([("h", 1)], "svc", "p@ss")
    assert parse_cluster_url("redis+cluster://:pw@[::1]:7000") == ([("::1", 7000)], None, "pw")


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+cluster://h", "redis+cluster://h:x"])
def test_cluster_urls_without_host_and_port_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_cluster_url(url)


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_nothing_listening_is_unavailable_not_a_crash(scheme: str) -> None:
    store = open_store(f"{scheme}://127.0.0.1:{free_port()}", timeout_seconds=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await store.ping()
        with pytest.raises(StoreUnavailable):
            await store.get_many(["a", "b"])
    finally:
        await store.close()

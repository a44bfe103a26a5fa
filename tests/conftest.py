"""Fixtures shared by the whole suite.

Redis fixtures start private ``redis-server`` processes on free ports (never the system
Redis on 6379), once per session, and empty them before each test that asks for a URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from service.state import open_store
from service.state.base import StateStore
from tests.support import RedisClusterServer, RedisServer, redis_available
from tests.support.demo_repository import build_demo_repository
from tests.support.mosquitto import Mosquitto, mosquitto_binary

#: Store timeout in tests: short, so an outage shows quickly, long enough for a loaded CI box.
STORE_TIMEOUT_SECONDS = 1.0


def _require_redis() -> None:
    if not redis_available():
        pytest.skip("redis-server / redis-cli are not installed")


# --- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private Redis server for the whole session."""
    _require_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's private Redis, emptied for this test."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServer]:
    """A private 3-master Redis Cluster for the whole session."""
    _require_redis()
    with RedisClusterServer() as cluster:
        yield cluster


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisClusterServer) -> str:
    """``redis+cluster://`` URL of the session's cluster, every master emptied for this test."""
    redis_cluster.flushall()
    return redis_cluster.url


# --- MQTT ----------------------------------------------------------------------------------


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A private mosquitto broker for this test (Debian's package, installed if missing)."""
    binary, reason = mosquitto_binary()
    if binary is None:
        pytest.skip(reason)
    with Mosquitto(binary) as broker:
        yield broker


# --- State stores --------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis", "cluster"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A URL for each store backend; Redis servers start only for the tests that need them."""
    if request.param == "memory":
        return "memory://"
    fixture = "redis_url" if request.param == "redis" else "redis_cluster_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[StateStore]:
    """An opened store of each backend (one test run per backend), closed afterwards."""
    opened = open_store(store_url, timeout_seconds=STORE_TIMEOUT_SECONDS)
    try:
        yield opened
    finally:
        await opened.close()


# --- Models --------------------------------------------------------------------------------


@pytest.fixture
def model_repository(tmp_path: Path) -> Path:
    """A fresh model repository with untrained ``demo-lstm`` and ``demo-gru``, version 1.

    Two features ``["load", "temp"]``, target ``load``, hourly. Built per test (tens of
    milliseconds) so a test may add, break or remove models without affecting another.
    """
    return build_demo_repository(tmp_path / "models")

"""Helpers shared by the test suite: real servers started on free ports."""

from tests.support.redis_server import RedisClusterServer, RedisServer, redis_available

__all__ = ["RedisClusterServer", "RedisServer", "redis_available"]

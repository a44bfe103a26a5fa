"""The Redis backend: one key per stream, compare-and-set as one Lua script.

Every call is bounded twice: socket timeouts stop redis-py from waiting on a dead socket, and
``asyncio.timeout`` bounds the whole call including reconnects. redis-py's default retry
policy (10 retries with backoff up to a second) would turn a stopped Redis into many seconds
of waiting per request, so the client gets one immediate retry instead: enough to replace a
pooled connection that Redis closed while restarting, few enough that an outage is reported
at once as ``StoreUnavailable``. Connections are re-established on the next call, so the store
recovers by itself when Redis comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import redis.exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from service.errors import StoreBusy, StoreUnavailable
from service.state.base import SCAN_COUNT, ScanStep, check_count, quota_ttl_ms, settle_left_ms
from service.state.cas import CAS_BODY, CompareAndSet, Item, Outcome, outcomes, pack

if TYPE_CHECKING:
    from redis.asyncio.cluster import RedisCluster

T = TypeVar("T")
#: The client a backend talks through: one server, or a cluster.
ClientT = TypeVar("ClientT", bound="Redis | RedisCluster")

#: The store's clock for quota scores, in whole milliseconds (the Redis server's TIME, so
#: replicas with skewed clocks agree on every deadline). Effects replication (Redis >= 5)
#: lets a script write after reading the time.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: ``StateStore.quota_admit`` on KEYS[1]. ARGV: member, lifetime in ms, limit.
QUOTA_ADMIT_SCRIPT = (
    _NOW_MS
    + """
local score = now + tonumber(ARGV[2])
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if current then
  current = tonumber(current)
  if score <= current then score = current + 1 end
elseif redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], score, ARGV[1])
return 1
"""
)

#: ``StateStore.quota_lapsed`` on KEYS[1]: members and scores, flat. ARGV: count.
QUOTA_LAPSED_SCRIPT = (
    _NOW_MS
    + """
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, ARGV[1])
"""
)

#: ``StateStore.quota_settle`` on KEYS[1]. ARGV: per item its member, the score it was seen
#: with and the milliseconds it has left ('' to remove it). Returns how many were removed.
QUOTA_SETTLE_SCRIPT = (
    _NOW_MS
    + """
local removed = 0
for i = 1, #ARGV, 3 do
  local member = ARGV[i]
  local current = redis.call('ZSCORE', KEYS[1], member)
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    if ARGV[i + 2] == '' then
      redis.call('ZREM', KEYS[1], member)
      removed = removed + 1
    else
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i + 2]), member)
    end
  end
end
return removed
"""
)

#: PTTL of every key in KEYS, in order (-2: no such key, -1: no expiry).
PTTL_SCRIPT = """
local left = {}
for i, key in ipairs(KEYS) do
  left[i] = redis.call('PTTL', key)
end
return left
"""

#: Error replies that mean "Redis cannot serve this now" rather than "this call is wrong";
#: redis-py raises a plain ``ResponseError`` for those it has no class for.
_TRANSIENT_REPLIES = ("BUSY ", "MISCONF", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN")

#: Connections a store opens to one server at most, unless told otherwise (redis-py's
#: default pool size).
MAX_CONNECTIONS = 100

#: Exceptions that mean the backend is unreachable, overloaded or failing over.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    redis_errors.ConnectionError,  # also BusyLoadingError, MaxConnectionsError
    redis_errors.TimeoutError,
    redis_errors.ClusterError,  # ClusterDownError, MasterDownError
    redis_errors.TryAgainError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.RedisClusterException,  # no reachable node, slot not covered
    OSError,
)


def client_options(timeout_seconds: float) -> dict[str, Any]:
    """Client keyword arguments that bound every call (shared with the cluster backend)."""
    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), retries=1),
    }


class ConnectionGate:
    """At most ``size`` calls of one store in flight, so its client never needs more
    connections than its pool holds; the calls beyond wait for a turn.

    redis-py's own pool refuses a call at once when every connection is in use
    (``MaxConnectionsError``), and that read as an outage: 500 subscribers arriving together
    got 503s from a healthy Redis. Waiting here, within the call's time budget, turns a burst
    into a short queue, and a queue that does not move in time into ``StoreBusy``.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a connection gate needs at least one slot, got {size}")
        self.size = size
        self._slots = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        async with self._slots:
            yield


async def bounded(
    awaitable: Awaitable[T], timeout_seconds: float, what: str, gate: ConnectionGate | None = None
) -> T:
    """Await a Redis call for at most ``timeout_seconds``; any outage becomes StoreUnavailable.

    With a ``gate`` the call first waits for its turn, within the same time budget; a call
    that never got one fails with ``StoreBusy`` (the pool is exhausted, the store is fine).
    Only an error reply to a command this code got wrong (or a value the client refuses to
    send) passes through: that is a bug to see, not an outage. Anything else the client raises
    is an outage, including the odd ``AttributeError`` redis-py's cluster client lets out when
    a node reset closes a connection another call is using.
    """
    retry_after = max(1, math.ceil(timeout_seconds))
    started = False
    try:
        async with asyncio.timeout(timeout_seconds):
            async with gate.turn() if gate is not None else contextlib.nullcontext():
                started = True
                return await awaitable
    except TimeoutError as exc:
        if not started and gate is not None:
            raise StoreBusy(
                f"all {gate.size} connections to the state store stayed in use for "
                f"{timeout_seconds:g} s (store_max_connections); retry",
                retry_after=retry_after,
            ) from exc
        raise StoreUnavailable(
            f"state store did not answer {what} within {timeout_seconds:g} s",
            retry_after=retry_after,
        ) from exc
    except redis_errors.MaxConnectionsError as exc:  # the client's own pool: full, not down
        raise StoreBusy(
            f"every connection to the state store was in use during {what}; retry",
            retry_after=retry_after,
        ) from exc
    except OUTAGE_ERRORS as exc:
        raise StoreUnavailable(
            f"state store unavailable during {what}: {type(exc).__name__}: {exc}",
            retry_after=retry_after,
        ) from exc
    except (redis_errors.ResponseError, redis_errors.DataError) as exc:
        if str(exc).startswith(_TRANSIENT_REPLIES):
            raise StoreUnavailable(
                f"state store cannot serve {what} now: {exc}", retry_after=retry_after
            ) from exc
        raise
    except Exception as exc:
        raise StoreUnavailable(
            f"state store client failed during {what}: {type(exc).__name__}: {exc}",
            retry_after=retry_after,
        ) from exc
    finally:
        if not started and inspect.iscoroutine(awaitable):
            awaitable.close()  # never sent: no "coroutine was never awaited" later


def ttl_milliseconds(ttl_seconds: float) -> int:
    """Redis wants whole milliseconds; round up so a tiny TTL never becomes "no expiry"."""
    if not ttl_seconds > 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")
    return max(1, math.ceil(ttl_seconds * 1000))


def seconds_left(pttl: int) -> float | None:
    """``StateStore.time_left``'s answer for one PTTL reply."""
    if pttl == -2:
        return None
    if pttl < 0:
        return math.inf
    return pttl / 1000


class RedisCommands(CompareAndSet, Generic[ClientT]):
    """The calls both Redis backends make the same way, on one key routed by redis-py.

    ``RedisStore`` and ``RedisClusterStore`` differ only in how they reach many keys at once
    (and in what ``ping`` must reach); everything that touches a single key is written here
    once, so the two cannot drift apart.

    Args:
        client: A ``redis.asyncio`` client (``Redis`` or ``RedisCluster``). Its socket
            timeouts and retry policy are the caller's; the backends' factories build ones
            with bounded ones.
        timeout_seconds: Upper bound on every call, reconnects and waiting for a connection
            included.
        close_client: Close ``client`` in ``close()``. True only when the store owns it.
        max_connections: Calls in flight at most (a ``ConnectionGate``); the others wait.
            None: no gate (the client's pool is the caller's business).
    """

    #: The compare-and-set script as this backend runs it (``cas.CAS_BODY``, or a variant).
    cas_script: ClassVar[str] = CAS_BODY

    def __init__(
        self,
        client: ClientT,
        *,
        timeout_seconds: float = 2.0,
        close_client: bool = False,
        max_connections: int | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be positive, got {timeout_seconds}")
        self._client: ClientT = client
        self._timeout = timeout_seconds
        self._close_client = close_client
        self._gate = None if max_connections is None else ConnectionGate(max_connections)
        # EVALSHA, loading the script again by itself if Redis lost its script cache.
        self._cas = client.register_script(self.cas_script)
        self._pttl = client.register_script(PTTL_SCRIPT)  # one server's PTTL of many keys
        # A quota is one key: these run on the node serving it, like any single-key call.
        self._quota_admit = client.register_script(QUOTA_ADMIT_SCRIPT)
        self._quota_lapsed = client.register_script(QUOTA_LAPSED_SCRIPT)
        self._quota_settle = client.register_script(QUOTA_SETTLE_SCRIPT)

    def _call(self, awaitable: Awaitable[T], what: str) -> Awaitable[T]:
        """``bounded`` with this store's time budget and connection gate."""
        return bounded(awaitable, self._timeout, what, self._gate)

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._client.get(key), "GET")
        return cast(bytes | None, value)

    async def put(self, key: str, value: bytes, ttl_seconds: float) -> None:
        px = ttl_milliseconds(ttl_seconds)
        await self._call(self._client.set(key, value, px=px), "SET")

    async def delete(self, key: str) -> bool:
        removed = await self._call(self._client.delete(key), "DEL")
        return bool(removed)

    async def quota_admit(self, quota: str, member: str, ttl_seconds: float, limit: int) -> bool:
        args: list[str | int] = [member, quota_ttl_ms(ttl_seconds, limit), limit]
        admitted = await self._call(self._quota_admit(keys=[quota], args=args), "quota admit")
        return bool(admitted)

    async def quota_lapsed(self, quota: str, count: int) -> list[tuple[str, float]]:
        check_count(count)
        flat = await self._call(self._quota_lapsed(keys=[quota], args=[count]), "quota lapsed")
        return [
            (member.decode("utf-8"), float(score))
            for member, score in zip(flat[::2], flat[1::2], strict=True)
        ]

    async def quota_score(self, quota: str, member: str) -> float | None:
        score = await self._call(self._client.zscore(quota, member), "ZSCORE")
        return None if score is None else float(score)

    async def quota_settle(
        self, quota: str, items: Sequence[tuple[str, float, float | None]]
    ) -> int:
        args: list[str | float | int] = []
        for member, seen, left in items:
            left_ms = settle_left_ms(left)
            args += [member, seen, "" if left_ms is None else left_ms]
        if not args:
            return 0
        removed = await self._call(self._quota_settle(keys=[quota], args=args), "quota settle")
        return int(removed)

    async def close(self) -> None:
        if self._close_client:
            await self._client.aclose()


class RedisStore(RedisCommands[Redis]):
    """State store on one Redis server (or a proxy that speaks its protocol).

    Takes ``RedisCommands``' arguments; ``from_url`` builds a client with bounded timeouts.
    """

    @classmethod
    def from_url(
        cls, url: str, *, timeout_seconds: float = 2.0, max_connections: int = MAX_CONNECTIONS
    ) -> RedisStore:
        """A store with its own client for ``redis://`` or ``rediss://`` ``url``; closes it.

        The client's pool and the store's gate both hold ``max_connections``.
        """
        client = Redis.from_url(
            url, max_connections=max_connections, **client_options(timeout_seconds)
        )
        return cls(
            client,
            timeout_seconds=timeout_seconds,
            close_client=True,
            max_connections=max_connections,
        )

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self._call(self._client.mget(list(keys)), "MGET")
        return cast(list[bytes | None], values)

    async def commit_many(self, items: Sequence[Item], ttl_seconds: float) -> list[Outcome]:
        if not items:
            return []
        args: list[bytes | int] = [ttl_milliseconds(ttl_seconds), pack(items)]
        reply = await self._call(self._cas(keys=[], args=args), "compare-and-set")
        return outcomes(reply)

    async def time_left(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        pttls = await self._call(self._pttl(keys=list(keys)), "PTTL")
        return [seconds_left(int(pttl)) for pttl in pttls]

    async def scan(self, start: str, *, shard: int, cursor: int) -> ScanStep:
        if shard != 0 or cursor < 0:
            raise ValueError(f"a Redis server has one shard (0), not {shard}")
        match = glob_prefix(start)
        reply = await self._call(self._client.scan(cursor, match=match, count=SCAN_COUNT), "SCAN")
        following, keys = reply
        return ScanStep(key_names(keys), int(following), 1)

    async def ping(self) -> None:
        await self._call(self._client.ping(), "PING")


def key_names(keys: Sequence[bytes | str]) -> list[str]:
    """Key names of a SCAN reply as text."""
    return [k.decode("utf-8") if isinstance(k, bytes) else k for k in keys]


def glob_prefix(start: str) -> str:
    """A Redis MATCH pattern for the keys beginning with ``start``."""
    return "".join(f"\\{c}" if c in "\\*?[]" else c for c in start) + "*"

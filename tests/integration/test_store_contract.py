"""One contract, every backend: the embedded store, Redis and Redis Cluster.

The ``store`` fixture runs each test once per backend against real servers. The tests at the
end (Redis only) stop, freeze and restart a private server under a live store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Iterator

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from service.errors import StoreUnavailable
from service.state import open_store
from service.state.base import StateStore
from service.state.keys import quota_key, stream_key
from service.state.record import (
    StreamRecord,
    new_incarnation,
    token_of,
)
from service.state.redis import RedisStore
from tests.support import RedisClusterServer, RedisServer, redis_available

TTL = 60.0
FINGERPRINT = "ab" * 32


def record(
    seq: int,
    *,
    incarnation: int = 7,
    state: list[float] | None = None,
    forecast: np.ndarray | None = None,
    model: str = "demo-lstm",
) -> StreamRecord:
    return StreamRecord(
        model=model,
        version=3,
        fingerprint=FINGERPRINT,
        incarnation=incarnation,
        seq=seq,
        last_ts=1_700_000_000.0 + seq,
        state=np.asarray(state if state is not None else [0.5, -1.25, float(seq)], np.float32),
        forecast=forecast,
    )


def key(name: str, tenant: str = "acme") -> str:
    return stream_key("test", tenant, name)


# --- The contract ---------------------------------------------------------------------------


async def test_missing_key_reads_as_none(store: StateStore) -> None:
    assert await store.get(key("nothing")) is None
    assert await store.get_many([key("a"), key("b")]) == [None, None]


async def test_create_with_no_token_succeeds_only_once(store: StateStore) -> None:
    first, second = record(0).encode(), record(0, incarnation=8).encode()

    assert await store.compare_and_set(key("s"), None, first, TTL) is True
    assert await store.compare_and_set(key("s"), None, second, TTL) is False
    assert await store.get(key("s")) == first


async def test_right_token_wins_and_stale_token_changes_nothing(store: StateStore) -> None:
    v0, v1, v2 = (record(seq).encode() for seq in range(3))
    await store.put(key("s"), v0, TTL)

    assert await store.compare_and_set(key("s"), token_of(v0), v1, TTL) is True
    assert await store.get(key("s")) == v1
    # A writer that read v0 lost the race: its write must not land.
    assert await store.compare_and_set(key("s"), token_of(v0), v2, TTL) is False
    assert await store.get(key("s")) == v1


async def test_token_with_another_incarnation_and_same_seq_fails(store: StateStore) -> None:
    """A stream deleted and re-created is a different stream, even at the same seq."""
    old = record(5, incarnation=new_incarnation())
    new = record(5, incarnation=old.incarnation ^ 1)
    assert old.token != new.token
    await store.put(key("s"), new.encode(), TTL)

    assert await store.compare_and_set(key("s"), old.token, record(6).encode(), TTL) is False
    assert await store.get(key("s")) == new.encode()


async def test_a_write_already_stored_counts_as_done(store: StateStore) -> None:
    """A call retried after its reply was lost must report the write that landed."""
    v0, v1 = record(0).encode(), record(1).encode()
    await store.put(key("s"), v0, TTL)
    assert await store.compare_and_set(key("s"), token_of(v0), v1, TTL) is True

    assert await store.compare_and_set(key("s"), token_of(v0), v1, TTL) is True  # replayed
    assert await store.compare_and_set_many([(key("s"), token_of(v0), v1)], TTL) == [True]
    assert await store.compare_and_set(key("s"), None, v1, TTL) is True
    # Anything else under the stale token still fails.
    assert await store.compare_and_set(key("s"), token_of(v0), record(2).encode(), TTL) is False
    assert await store.get(key("s")) == v1


async def test_cas_on_a_missing_key_with_a_token_fails(store: StateStore) -> None:
    assert await store.compare_and_set(key("s"), record(1).token, record(2).encode(), TTL) is False
    assert await store.get(key("s")) is None


async def test_get_many_keeps_order_and_reports_missing_keys(store: StateStore) -> None:
    names = [f"stream-{i}" for i in range(40)]
    keys = [key(name) for name in names]
    # Many hash tags: on the cluster these keys span several slots (and masters).
    assert len({key_slot(k.encode()) for k in keys}) > 1
    present = {i: record(i).encode() for i in range(0, 40, 3)}
    for i, value in present.items():
        await store.put(keys[i], value, TTL)

    assert await store.get_many(keys) == [present.get(i) for i in range(40)]
    backwards = list(reversed(range(40)))
    assert await store.get_many([keys[i] for i in backwards]) == [present.get(i) for i in backwards]
    assert await store.get_many([]) == []


async def test_compare_and_set_many_decides_each_item_alone(store: StateStore) -> None:
    v0, v1 = record(0).encode(), record(1).encode()
    stale = record(0, incarnation=99).token
    await store.put(key("a"), v0, TTL)
    await store.put(key("b"), v0, TTL)
    await store.put(key("exists"), v0, TTL)

    results = await store.compare_and_set_many(
        [
            (key("a"), token_of(v0), v1),  # right token
            (key("b"), stale, v1),  # stale token
            (key("new"), None, v1),  # create
            (key("exists"), None, v1),  # create over an existing stream
            (key("ghost"), token_of(v0), v1),  # token for a stream that is gone
        ],
        TTL,
    )

    assert results == [True, False, True, False, False]
    names = ["a", "b", "new", "exists", "ghost"]
    assert await store.get_many([key(n) for n in names]) == [v1, v0, v1, v0, None]
    assert await store.compare_and_set_many([], TTL) == []


async def test_compare_and_set_many_applies_a_repeated_key_in_order(store: StateStore) -> None:
    v0, v1, v2 = (record(seq).encode() for seq in range(3))
    results = await store.compare_and_set_many(
        [(key("s"), None, v0), (key("s"), token_of(v0), v1), (key("s"), token_of(v0), v2)], TTL
    )
    assert results == [True, True, False]
    assert await store.get(key("s")) == v1


async def test_records_expire_after_their_ttl(store: StateStore) -> None:
    value = record(0).encode()
    await store.put(key("put"), value, 0.2)
    assert await store.compare_and_set(key("cas"), None, value, 0.2)
    assert await store.compare_and_set_many([(key("many"), None, value)], 0.2) == [True]
    assert await store.get_many([key("put"), key("cas"), key("many")]) == [value] * 3

    await asyncio.sleep(0.35)

    assert await store.get_many([key("put"), key("cas"), key("many")]) == [None] * 3
    assert await store.get(key("put")) is None
    # An expired stream is gone for compare-and-set too: it can be created again.
    assert await store.compare_and_set(key("put"), None, value, TTL) is True


async def test_a_write_refreshes_the_ttl(store: StateStore) -> None:
    v0, v1 = record(0).encode(), record(1).encode()
    await store.put(key("s"), v0, 0.3)
    await asyncio.sleep(0.15)
    assert await store.compare_and_set(key("s"), token_of(v0), v1, 0.6) is True

    await asyncio.sleep(0.3)  # past the first deadline, before the second
    assert await store.get(key("s")) == v1

    await asyncio.sleep(0.5)  # past the second
    assert await store.get(key("s")) is None


async def test_delete_reports_whether_the_key_existed(store: StateStore) -> None:
    await store.put(key("s"), record(0).encode(), TTL)

    assert await store.delete(key("s")) is True
    assert await store.get(key("s")) is None
    assert await store.delete(key("s")) is False
    # A deleted stream can be created again.
    assert await store.compare_and_set(key("s"), None, record(0).encode(), TTL) is True


async def test_concurrent_writers_lose_no_update(store: StateStore) -> None:
    """Writers racing on one stream with read / compare-and-set / retry loops."""
    writers, increments = 12, 8
    await store.put(key("hot"), record(0).encode(), TTL)
    conflicts = 0

    async def writer(me: int) -> None:
        nonlocal conflicts
        for _ in range(increments):
            for _attempt in range(writers * increments):  # bounded: a broken CAS fails, not hangs
                current = await store.get(key("hot"))
                assert current is not None
                old = StreamRecord.decode(current)
                await asyncio.sleep(0)  # let the others read the same version
                # Each writer's record differs, like different observations would: identical
                # bytes would be the same write, which the contract counts once.
                new = record(old.seq + 1, state=[float(me), float(old.seq + 1)])
                if await store.compare_and_set(key("hot"), old.token, new.encode(), TTL):
                    break
                conflicts += 1
            else:
                pytest.fail("a writer never won the compare-and-set")

    await asyncio.gather(*(writer(me) for me in range(writers)))

    final = await store.get(key("hot"))
    assert final is not None
    assert StreamRecord.decode(final).seq == writers * increments
    assert conflicts > 0, "the writers never raced, so this test proved nothing"


async def test_concurrent_batched_writers_lose_no_update(store: StateStore) -> None:
    """The same race through compare_and_set_many over streams on several slots."""
    keys = [key(f"batch-{i}") for i in range(6)]
    writers, rounds = 6, 5
    created = await store.compare_and_set_many([(k, None, record(0).encode()) for k in keys], TTL)
    assert created == [True] * len(keys)

    def mine(seq: int, me: int) -> bytes:
        return record(seq, state=[float(me)]).encode()

    async def writer(me: int) -> None:
        pending = set(range(len(keys)))
        done = 0
        for _attempt in range(writers * rounds * len(keys)):  # bounded, as above
            if done == rounds:
                break
            values = await store.get_many(keys)
            olds = [StreamRecord.decode(v) for v in values if v is not None]
            await asyncio.sleep(0)
            order = sorted(pending)
            results = await store.compare_and_set_many(
                [(keys[i], olds[i].token, mine(olds[i].seq + 1, me)) for i in order], TTL
            )
            pending -= {i for i, ok in zip(order, results, strict=True) if ok}
            if not pending:
                done += 1
                pending = set(range(len(keys)))

    await asyncio.gather(*(writer(me) for me in range(writers)))

    finals = await store.get_many(keys)
    assert [StreamRecord.decode(v).seq for v in finals if v is not None] == [writers * rounds] * 6


async def test_records_round_trip_byte_for_byte(store: StateStore) -> None:
    rng = np.random.default_rng(0)
    records = [
        record(0, state=[]),
        record(1, state=[0.0, -0.0, math.inf, -math.inf, 1e-38, 3.4e38]),
        record(2, state=rng.standard_normal(2048).tolist(), model="modèle-ü"),
        record(3, forecast=rng.standard_normal((24, 3)).astype(np.float32)),
    ]
    values = [r.encode() for r in records]
    values.append(bytes(range(256)) * 4)  # the store treats records as opaque bytes
    keys = [key(f"rt-{i}") for i in range(len(values))]
    for k, v in zip(keys, values, strict=True):
        await store.put(k, v, TTL)

    assert await store.get_many(keys) == values
    for k, v, r in zip(keys, values, records, strict=False):
        stored = await store.get(k)
        assert stored == v
        back = StreamRecord.decode(stored)
        assert back.encode() == v
        assert back.token == r.token


async def test_ping_answers(store: StateStore) -> None:
    await store.ping()


async def test_arguments_no_backend_can_honour_are_refused(store: StateStore) -> None:
    value = record(0).encode()
    with pytest.raises(ValueError, match="16 bytes"):
        await store.compare_and_set(key("s"), b"short", value, TTL)
    with pytest.raises(ValueError, match="16 bytes"):
        await store.compare_and_set_many([(key("s"), b"", value)], TTL)
    with pytest.raises(ValueError, match="ttl"):
        await store.put(key("s"), value, 0)
    with pytest.raises(ValueError, match="ttl"):
        await store.compare_and_set(key("s"), None, value, -1.0)
    assert await store.get(key("s")) is None


# --- Redis outages (a private server per test, so the shared one keeps running) -------------

OUTAGE_TIMEOUT = 0.5
#: Slack on top of the store timeout for a loaded 2-core test machine.
SLACK = 1.0


@pytest.fixture
def aof_server() -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisServer(appendonly=True) as server:
        yield server


QUOTA = quota_key("test", "acme")


def operations(store: StateStore, value: bytes) -> dict[str, Callable[[], Awaitable[object]]]:
    k = key("s")
    return {
        "get": lambda: store.get(k),
        "get_many": lambda: store.get_many([k, key("t")]),
        "compare_and_set": lambda: store.compare_and_set(k, token_of(value), value, TTL),
        "compare_and_set_many": lambda: store.compare_and_set_many([(k, None, value)], TTL),
        "put": lambda: store.put(k, value, TTL),
        "delete": lambda: store.delete(key("other")),
        "time_left": lambda: store.time_left([k, key("t")]),
        "quota_admit": lambda: store.quota_admit(QUOTA, "s", TTL, 10),
        "quota_lapsed": lambda: store.quota_lapsed(QUOTA, 10),
        "quota_score": lambda: store.quota_score(QUOTA, "s"),
        "quota_settle": lambda: store.quota_settle(QUOTA, [("s", 1.0, None), ("t", 2.0, TTL)]),
        "ping": lambda: store.ping(),
    }


async def assert_every_operation_unavailable(store: StateStore, value: bytes) -> None:
    for name, call in operations(store, value).items():
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await call()
        elapsed = time.monotonic() - start
        assert elapsed < OUTAGE_TIMEOUT + SLACK, f"{name} took {elapsed:.2f} s"
        assert caught.value.retry_after >= 1


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
async def test_stopped_redis_is_reported_and_survived(aof_server: RedisServer, kill: bool) -> None:
    store = open_store(aof_server.url, timeout_seconds=OUTAGE_TIMEOUT)
    try:
        value = record(4).encode()
        await store.put(key("s"), value, TTL)

        aof_server.stop(kill=kill)
        await assert_every_operation_unavailable(store, value)

        aof_server.start()  # same port, same directory: the AOF is replayed
        assert await store.get(key("s")) == value
        newer = record(5).encode()
        assert await store.compare_and_set(key("s"), token_of(value), newer, TTL)
        assert await store.get(key("s")) == newer
    finally:
        await store.close()


async def test_redis_restarted_while_idle_is_not_an_error(aof_server: RedisServer) -> None:
    """Pooled connections die with the server; the next call reconnects instead of failing."""
    store = open_store(aof_server.url, timeout_seconds=OUTAGE_TIMEOUT)
    try:
        value = record(2).encode()
        await store.put(key("s"), value, TTL)
        assert await store.get_many([key("s")]) == [value]

        aof_server.restart()

        assert await store.get(key("s")) == value
        assert await store.compare_and_set(key("s"), token_of(value), record(3).encode(), TTL)
    finally:
        await store.close()


async def test_frozen_redis_times_out_and_recovers(aof_server: RedisServer) -> None:
    """A server that accepts nothing and answers nothing (SIGSTOP) must not hang a caller."""
    store = open_store(aof_server.url, timeout_seconds=OUTAGE_TIMEOUT)
    try:
        value = record(1).encode()
        await store.put(key("s"), value, TTL)

        aof_server.pause()
        try:
            await assert_every_operation_unavailable(store, value)
        finally:
            aof_server.resume()

        assert await store.get(key("s")) == value
        assert await store.get_many([key("s")]) == [value]
    finally:
        await store.close()


async def test_store_started_while_redis_is_down_connects_later() -> None:
    if not redis_available():
        pytest.skip("redis-server is not installed")
    server = RedisServer()  # a free port with nothing listening yet
    store = RedisStore.from_url(server.url, timeout_seconds=OUTAGE_TIMEOUT)
    try:
        await assert_every_operation_unavailable(store, record(0).encode())
        server.start()
        await store.ping()
        assert await store.compare_and_set(key("s"), None, record(0).encode(), TTL)
    finally:
        await store.close()
        server.close()


async def test_store_closes_only_a_client_it_created(redis_url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        borrowed = RedisStore(client, timeout_seconds=OUTAGE_TIMEOUT)
        value = record(0).encode()
        await borrowed.put(key("s"), value, TTL)
        await borrowed.close()
        assert await client.get(key("s")) == value  # still open
    finally:
        await client.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("calls_during_outage", [True, False], ids=["busy", "idle"])
async def test_stopped_cluster_is_reported_and_survived(calls_during_outage: bool) -> None:
    """The cluster client must also fail fast and find the cluster again by itself."""
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisClusterServer(appendonly=True) as cluster:
        store = open_store(cluster.url, timeout_seconds=OUTAGE_TIMEOUT)
        try:
            values = {key(f"c{i}"): record(i).encode() for i in range(12)}
            for k, v in values.items():
                await store.put(k, v, TTL)

            cluster.stop()
            if calls_during_outage:
                await assert_every_operation_unavailable(store, record(0).encode())

            cluster.restart()
            first, value = next(iter(values.items()))
            assert await store.get(first) == value
            assert await store.get_many(list(values)) == list(values.values())
            moved = [(k, token_of(v), v[:-4] + b"\x00\x00\x80?") for k, v in values.items()]
            assert await store.compare_and_set_many(moved, TTL) == [True] * len(moved)
            await store.ping()
        finally:
            await store.close()


def _node_ids(cluster: RedisClusterServer) -> dict[int, str]:
    ids = {}
    for port in cluster.ports:
        with redis.Redis(port=port) as client:
            ids[port] = client.execute_command("CLUSTER MYID").decode()
    return ids


def _owner(cluster: RedisClusterServer, slot: int) -> int:
    for port in cluster.ports:
        with redis.Redis(port=port) as client:
            if client.execute_command("CLUSTER COUNTKEYSINSLOT", slot) > 0:
                return port
    raise AssertionError(f"no node holds keys of slot {slot}")


def _move_keys(cluster: RedisClusterServer, slot: int, source: int, target: int) -> None:
    """Start moving ``slot`` and move its keys, leaving the slot half-migrated."""
    ids = _node_ids(cluster)
    with redis.Redis(port=target) as client:
        client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[source])
    with redis.Redis(port=source) as client:
        client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[target])
        keys = client.execute_command("CLUSTER GETKEYSINSLOT", slot, 100)
        client.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)


def _finish_move(cluster: RedisClusterServer, slot: int, target: int) -> None:
    ids = _node_ids(cluster)
    for port in cluster.ports:
        with redis.Redis(port=port) as client:
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", ids[target])


@pytest.mark.slow
async def test_cluster_batches_follow_slots_that_moved() -> None:
    """A batch sent on a stale slot map is refused whole and redone key by key."""
    if not redis_available():
        pytest.skip("redis-server is not installed")
    with RedisClusterServer() as cluster:
        store = open_store(cluster.url, timeout_seconds=2.0)
        try:
            keys = [key(f"m{i}") for i in range(12)]
            values = [record(i).encode() for i in range(12)]
            for k, v in zip(keys, values, strict=True):
                await store.put(k, v, TTL)
            assert await store.get_many(keys) == values  # the store now knows the slot map

            half, done = key_slot(keys[0].encode()), key_slot(keys[1].encode())
            for slot in (half, done):
                source = _owner(cluster, slot)
                target = next(port for port in cluster.ports if port != source)
                _move_keys(cluster, slot, source, target)
                if slot == done:
                    _finish_move(cluster, slot, target)

            # keys[0] is mid-migration (ASK), keys[1] moved for good (MOVED).
            assert await store.get_many(keys) == values
            new = [record(i + 100).encode() for i in range(12)]
            items = [(k, token_of(v), n) for k, v, n in zip(keys, values, new, strict=True)]
            assert await store.compare_and_set_many(items, TTL) == [True] * 12
            assert await store.get_many(keys) == new
            stale = [(k, token_of(v), v) for k, v in zip(keys, values, strict=True)]
            assert await store.compare_and_set_many(stale, TTL) == [False] * 12
        finally:
            await store.close()


async def test_the_same_update_from_two_writers_is_applied_once(store: StateStore) -> None:
    """Two replicas that compute the same update race like any two writers: one loses.

    Records carry a random write nonce, so the "already stored" rule (which lets a writer's
    own retried call succeed) never makes another writer's identical update succeed too.
    """
    base = record(0).encode()
    await store.put(key("s"), base, TTL)
    first = record(1, state=[1.0, 2.0])
    second = dataclasses.replace(first, nonce=first.nonce ^ 1)
    assert await store.compare_and_set(key("s"), token_of(base), first.encode(), TTL)
    assert not await store.compare_and_set(key("s"), token_of(base), second.encode(), TTL)
    assert await store.compare_and_set(key("s"), token_of(base), first.encode(), TTL)

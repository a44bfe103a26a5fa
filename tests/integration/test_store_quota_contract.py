"""The quota and remaining-time calls of the store contract, on every backend.

The ``store`` fixture runs each test against the embedded store, a real Redis and a real
Redis Cluster. Outages of these calls are covered with the others in
``test_store_contract.py``.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from redis.crc import key_slot

from service.state.base import StateStore
from service.state.keys import quota_key, stream_key

TTL = 60.0
VALUE = b"a stream record, opaque to the store"


def key(name: str) -> str:
    return stream_key("test", "acme", name)


QUOTA = quota_key("test", "acme")


async def counted(store: StateStore, quota: str, members: list[str]) -> list[str]:
    return [m for m in members if await store.quota_score(quota, m) is not None]


# --- time_left ------------------------------------------------------------------------------


async def test_time_left_reports_each_key_in_order(store: StateStore) -> None:
    keys = [key(f"t{i}") for i in range(30)]
    assert len({key_slot(k.encode()) for k in keys}) > 1  # several nodes on the cluster
    for i in range(0, 30, 2):
        await store.put(keys[i], VALUE, TTL + i)

    left = await store.time_left(keys)

    for i, seconds in enumerate(left):
        if i % 2:
            assert seconds is None
        else:
            assert seconds is not None
            assert TTL + i - 5 < seconds <= TTL + i
    assert await store.time_left([]) == []


async def test_time_left_follows_writes_deletes_and_expiry(store: StateStore) -> None:
    await store.put(key("short"), VALUE, 0.2)
    await store.put(key("gone"), VALUE, TTL)
    assert await store.delete(key("gone"))
    (short,) = await store.time_left([key("short")])
    assert short is not None
    assert 0 < short <= 0.2

    await asyncio.sleep(0.35)

    assert await store.time_left([key("short"), key("gone")]) == [None, None]
    assert await store.compare_and_set(key("short"), None, VALUE, TTL)
    (refreshed,) = await store.time_left([key("short")])
    assert refreshed is not None
    assert refreshed > TTL - 5


# --- admission ------------------------------------------------------------------------------


async def test_admission_stops_at_the_limit_but_counts_a_member_again(store: StateStore) -> None:
    names = ["a", "b", "c"]
    assert [await store.quota_admit(QUOTA, n, TTL, 3) for n in names] == [True] * 3

    assert await store.quota_admit(QUOTA, "d", TTL, 3) is False
    assert await store.quota_score(QUOTA, "d") is None  # refused: nothing written
    assert await store.quota_admit(QUOTA, "b", TTL, 3) is True  # already counted
    assert await counted(store, QUOTA, [*names, "d"]) == names
    # A higher limit (a setting changed) has room again; another quota is independent.
    assert await store.quota_admit(QUOTA, "d", TTL, 4) is True
    other = quota_key("test", "globex")
    assert await store.quota_admit(other, "a", TTL, 1) is True
    assert await store.quota_admit(other, "b", TTL, 1) is False
    assert await counted(store, other, names) == ["a"]


async def test_every_admission_raises_the_score(store: StateStore) -> None:
    assert await store.quota_admit(QUOTA, "s", TTL, 1)
    first = await store.quota_score(QUOTA, "s")
    assert await store.quota_admit(QUOTA, "s", TTL, 1)  # at once: within the same millisecond
    second = await store.quota_score(QUOTA, "s")
    assert first is not None
    assert second is not None
    assert second > first
    assert await store.quota_admit(QUOTA, "s", 1.0, 1)  # a shorter lifetime never lowers it
    third = await store.quota_score(QUOTA, "s")
    assert third is not None
    assert third > second


async def test_concurrent_admissions_never_pass_the_limit(store: StateStore) -> None:
    members = [f"m{i}" for i in range(40)]
    # redis-py's cluster client, still cold, drops some of many calls made while it first
    # connects (a slot-map refresh closes connections in use): a client matter, not this one.
    await store.ping()
    results = await asyncio.gather(*(store.quota_admit(QUOTA, m, TTL, 7) for m in members))

    assert sum(results) == 7
    admitted = [m for m, ok in zip(members, results, strict=True) if ok]
    assert await counted(store, QUOTA, members) == admitted


# --- lapsed members and settling ------------------------------------------------------------


async def test_lapsed_lists_past_scores_lowest_first(store: StateStore) -> None:
    assert await store.quota_lapsed(QUOTA, 10) == []
    for name in ("x", "y", "z"):
        assert await store.quota_admit(QUOTA, name, 0.1, 10)
        await asyncio.sleep(0.01)
    assert await store.quota_admit(QUOTA, "alive", TTL, 10)
    assert await store.quota_lapsed(QUOTA, 10) == []

    await asyncio.sleep(0.25)

    lapsed = await store.quota_lapsed(QUOTA, 10)
    assert [m for m, _ in lapsed] == ["x", "y", "z"]
    assert [s for _, s in lapsed] == sorted(s for _, s in lapsed)
    assert lapsed[0] == ("x", await store.quota_score(QUOTA, "x"))
    assert await store.quota_lapsed(QUOTA, 2) == lapsed[:2]


async def test_settle_removes_or_rescores_only_unchanged_members(store: StateStore) -> None:
    for name in ("gone", "alive", "recreated", "deleted"):
        assert await store.quota_admit(QUOTA, name, 0.1, 10)
    await asyncio.sleep(0.2)
    seen = dict(await store.quota_lapsed(QUOTA, 10))
    assert set(seen) == {"gone", "alive", "recreated", "deleted"}
    # Meanwhile another replica creates one stream again and uncounts another.
    assert await store.quota_admit(QUOTA, "recreated", TTL, 10)
    assert await store.quota_settle(QUOTA, [("deleted", seen["deleted"], None)]) == 1

    removed = await store.quota_settle(
        QUOTA,
        [
            ("gone", seen["gone"], None),
            ("alive", seen["alive"], TTL),
            ("recreated", seen["recreated"], None),  # admitted since: left counted
            ("deleted", seen["deleted"], TTL),  # uncounted since: not counted again
            ("never", 1.0, None),
        ],
    )

    assert removed == 1
    assert await counted(store, QUOTA, list(seen)) == ["alive", "recreated"]
    assert await store.quota_lapsed(QUOTA, 10) == []  # "alive" is scored into the future
    assert await store.quota_settle(QUOTA, []) == 0


async def test_a_member_rescored_with_no_time_left_lapses_again(store: StateStore) -> None:
    assert await store.quota_admit(QUOTA, "s", 0.05, 1)
    await asyncio.sleep(0.1)
    [(member, score)] = await store.quota_lapsed(QUOTA, 1)
    assert await store.quota_settle(QUOTA, [(member, score, 0.0)]) == 0
    await asyncio.sleep(0.01)
    assert [m for m, _ in await store.quota_lapsed(QUOTA, 1)] == ["s"]


async def test_quota_arguments_no_backend_can_honour_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.quota_admit(QUOTA, "s", 0, 1)
    with pytest.raises(ValueError, match="limit"):
        await store.quota_admit(QUOTA, "s", TTL, 0)
    with pytest.raises(ValueError, match="count"):
        await store.quota_lapsed(QUOTA, 0)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="seconds_left"):
            await store.quota_settle(QUOTA, [("s", 1.0, bad)])
    assert await store.quota_score(QUOTA, "s") is None

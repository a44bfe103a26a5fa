"""What only the embedded store has: memory that follows the live streams.

Its behaviour as a store is covered by the contract suite (tests/integration).
"""

from __future__ import annotations

import asyncio

from service.state.memory import MemoryStore

SHORT, LONG = 0.05, 60.0


async def test_expired_streams_nobody_touches_again_are_swept() -> None:
    store = MemoryStore()
    for i in range(1000):
        await store.put(f"old-{i}", b"x", SHORT)
    await store.put("live", b"y", LONG)
    await asyncio.sleep(SHORT * 2)

    for _ in range(600):  # traffic on other streams only
        assert await store.get("live") == b"y"

    assert len(store) == 1


async def test_long_lived_streams_at_the_front_do_not_block_the_sweep() -> None:
    store = MemoryStore()
    for i in range(100):
        await store.put(f"long-{i}", b"l", LONG)
    for i in range(1000):
        await store.put(f"short-{i}", b"s", SHORT)
    await asyncio.sleep(SHORT * 2)

    for _ in range(700):
        await store.get("nothing")

    assert len(store) == 100
    assert await store.get_many([f"long-{i}" for i in range(100)]) == [b"l"] * 100


async def test_one_sweep_visits_a_bounded_number_of_entries() -> None:
    store = MemoryStore()
    for i in range(500):
        await store.put(f"k{i}", b"v", SHORT)
    await asyncio.sleep(SHORT * 2)

    assert store.sweep(10) == 10
    assert len(store) <= 490


async def test_an_expired_entry_is_dropped_when_touched() -> None:
    store = MemoryStore()
    await store.put("k", b"v", SHORT)
    await asyncio.sleep(SHORT * 2)
    assert len(store) == 1
    assert await store.get("k") is None
    assert len(store) == 0

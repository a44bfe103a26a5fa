"""Listing a tenant's streams (``StateStore.scan``, ``service.listing``) on every backend.

The ``store`` fixture runs each test once on the embedded store, Redis and Redis Cluster
(real servers). A listing pages through exactly the tenant's streams: each once, never
another tenant's, whatever the ids hold, with a prefix filter and cursors that survive
pages cut inside one scan step.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.listing import InvalidCursor, Position, StreamSummary, list_streams
from service.state.base import StateStore
from service.state.keys import quota_key, stream_key, tenant_streams
from service.state.record import StreamRecord

PREFIX = "test"
TTL = 600.0
#: Ids that escape, glob or confuse: braces, %, Redis glob characters, '/', text.
ODD_IDS = ["a{b}", "a%7Bb", "100%", "*", "a*", "a?", "[x]", "back\\slash", "a/b", "ümlaut", "a:b"]


def record(seq: int, model: str = "demo-lstm") -> bytes:
    return StreamRecord(
        model=model,
        version=2,
        fingerprint="ab" * 32,
        incarnation=1,
        seq=seq,
        last_ts=1_700_000_000.0 + seq,
        state=np.asarray([0.5, float(seq)], np.float32),
        forecast=None,
    ).encode()


async def put_streams(store: StateStore, tenant: str, ids: list[str]) -> None:
    for i, stream_id in enumerate(ids):
        await store.put(stream_key(PREFIX, tenant, stream_id), record(i + 1), TTL)


async def every_page(
    store: StateStore, tenant: str, *, prefix: str = "", limit: int = 7
) -> tuple[list[StreamSummary], int]:
    listed: list[StreamSummary] = []
    cursor: str | None = None
    for pages in range(1, 10_000):
        page, cursor = await list_streams(
            store, PREFIX, tenant, prefix=prefix, limit=limit, cursor=cursor
        )
        assert len(page) <= limit
        listed += page
        if cursor is None:
            return listed, pages
    raise AssertionError("the listing never ended")


async def test_a_listing_holds_each_stream_of_the_tenant_once_and_no_other(
    store: StateStore,
) -> None:
    mine = [f"pump-{i:04d}" for i in range(1200)] + ODD_IDS
    await put_streams(store, "acme", mine)
    await put_streams(store, "acme2", ["pump-0001", "other"])  # a tenant whose name extends
    await put_streams(store, "acm", ["pump-0002"])  # and one it extends
    await store.put(f"{PREFIX}x:s:{{acme:pump-0003}}", record(1), TTL)  # another key prefix
    await store.quota_admit(quota_key(PREFIX, "acme"), "pump-0000", TTL, 10)
    listed, pages = await every_page(store, "acme", limit=97)
    ids = [s.stream_id for s in listed]
    assert sorted(ids) == sorted(mine)
    assert pages >= len(mine) // 97
    first = next(s for s in listed if s.stream_id == "pump-0000")
    assert (first.model, first.version, first.seq, first.last_ts) == (
        "demo-lstm",
        2,
        1,
        1_700_000_001.0,
    )


@pytest.mark.parametrize("limit", [1, 3, 1000])
async def test_the_prefix_filter_takes_ids_literally(store: StateStore, limit: int) -> None:
    await put_streams(store, "acme", [*ODD_IDS, "b", "ab"])
    for prefix, expected in [
        ("a", {"a{b}", "a%7Bb", "a*", "a?", "a/b", "a:b", "ab"}),
        ("a{", {"a{b}"}),
        ("a%", {"a%7Bb"}),
        ("*", {"*"}),
        ("[", {"[x]"}),
        ("back\\", {"back\\slash"}),
        ("ü", {"ümlaut"}),
        ("zzz", set()),
    ]:
        listed, _ = await every_page(store, "acme", prefix=prefix, limit=limit)
        assert sorted(s.stream_id for s in listed) == sorted(expected), prefix


async def test_streams_gone_between_scan_and_read_are_left_out(store: StateStore) -> None:
    await put_streams(store, "acme", ["kept", "gone"])
    await store.delete(stream_key(PREFIX, "acme", "gone"))
    listed, _ = await every_page(store, "acme")
    assert [s.stream_id for s in listed] == ["kept"]


async def test_an_empty_tenant_lists_nothing_in_one_page(store: StateStore) -> None:
    assert await list_streams(store, PREFIX, "nobody") == ([], None)


async def test_cursors_it_did_not_hand_out_are_refused(store: StateStore) -> None:
    await put_streams(store, "acme", [f"s{i}" for i in range(5)])
    _, cursor = await list_streams(store, PREFIX, "acme", limit=2)
    assert cursor is not None
    huge = [Position(0, 2**64).encode(""), Position(2**16, 0).encode(""), Position(99).encode("")]
    for bad in ["", "not-base64!", "bm9wZQ", cursor[:-3], "WzEsIDk5LCAwLCAiIiwgIiJd", *huge]:
        with pytest.raises(InvalidCursor):
            await list_streams(store, PREFIX, "acme", limit=2, cursor=bad)
    with pytest.raises(InvalidCursor, match="another prefix"):
        await list_streams(store, PREFIX, "acme", prefix="s", limit=2, cursor=cursor)


async def test_scan_steps_cover_the_keys_beginning_so(store: StateStore) -> None:
    await put_streams(store, "acme", ["x1", "x2", "y1"])
    start = tenant_streams(PREFIX, "acme", "x")
    found: set[str] = set()
    shard, cursor = 0, 0
    while True:
        step = await store.scan(start, shard=shard, cursor=cursor)
        found.update(step.keys)
        if step.cursor:
            cursor = step.cursor
        elif shard + 1 < step.shards:
            shard, cursor = shard + 1, 0
        else:
            break
    assert found == {stream_key(PREFIX, "acme", i) for i in ("x1", "x2")}
    with pytest.raises(ValueError, match="shard"):
        await store.scan(start, shard=99, cursor=0)

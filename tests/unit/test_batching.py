"""The batcher's pure merge/split functions and its queue, without models or stores."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.batching import MicroBatcher, Pending, fresh_start, group_rows, rounds
from service.errors import ModelNotReady


def test_rounds_keep_each_keys_order_and_one_key_per_round() -> None:
    keys = ["a", "b", "a", "c", "a", "b"]
    out = rounds(keys)
    assert out == [[0, 1, 3], [2, 5], [4]]
    for level in out:
        assert len({keys[i] for i in level}) == len(level)


def test_rounds_of_nothing() -> None:
    assert rounds([]) == []


def test_group_rows_by_model_and_length() -> None:
    groups = group_rows([("m", 1), ("n", 1), ("m", 3), ("m", 1)])
    assert groups == {("m", 1): [0, 3], ("n", 1): [1], ("m", 3): [2]}


@pytest.mark.parametrize(
    ("last", "expected"), [(-np.inf, 0), (0.5, 0), (1.0, 1), (2.5, 2), (3.0, 3), (9.0, 3)]
)
def test_fresh_start(last: float, expected: int) -> None:
    assert fresh_start(np.array([1.0, 2.0, 3.0]), last) == expected


async def test_items_waiting_together_form_one_batch_in_order() -> None:
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def process(batch: list[Pending[int, int]]) -> None:
        batches.append([p.item for p in batch])
        await gate.wait()
        for p in batch:
            p.future.set_result(p.item * 10)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=3)
    futures = [batcher.submit(i) for i in range(5)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*futures) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2], [3, 4]]
    await batcher.aclose()


async def test_retried_items_go_first_and_count_attempts() -> None:
    seen: list[tuple[int, int]] = []

    async def process(batch: list[Pending[int, int]]) -> None:
        for p in batch:
            seen.append((p.item, p.attempts))
        again = [p for p in batch if p.item == 1 and p.attempts == 0]
        for p in batch:
            if p not in again:
                p.future.set_result(p.item)
        batcher.retry_first(again)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=10)
    one = batcher.submit(1)
    two = batcher.submit(2)
    assert await asyncio.gather(one, two) == [1, 2]
    assert seen == [(1, 0), (2, 0), (1, 1)]
    await batcher.aclose()


async def test_a_failing_batch_fails_its_items_not_the_worker() -> None:
    async def process(batch: list[Pending[int, int]]) -> None:
        if batch[0].item == 0:
            raise ValueError("boom")
        for p in batch:
            p.future.set_result(p.item)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=1)
    first = batcher.submit(0)
    second = batcher.submit(1)
    with pytest.raises(ValueError, match="boom"):
        await first
    assert await second == 1
    await batcher.aclose()


async def test_an_item_a_batch_forgets_fails_instead_of_waiting_forever() -> None:
    """A process function that answers some items, retries one and forgets one."""
    retried: list[Pending[int, int]] = []

    async def process(batch: list[Pending[int, int]]) -> None:
        for p in batch:
            if p.item == 1 and not p.attempts:
                retried.append(p)
                batcher.retry_first([p])
            elif p.item != 2:  # item 2 is forgotten
                p.future.set_result(p.item)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=8)
    futures = [batcher.submit(i) for i in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5.0)
    assert results[:2] == [0, 1]  # the retried item was answered by the next batch
    assert isinstance(results[2], RuntimeError)
    assert "unanswered" in str(results[2])
    assert len(retried) == 1
    await batcher.aclose()


async def test_max_delay_lets_a_batch_fill() -> None:
    sizes: list[int] = []

    async def process(batch: list[Pending[int, int]]) -> None:
        sizes.append(len(batch))
        for p in batch:
            p.future.set_result(p.item)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=100, max_delay=0.05)
    first = batcher.submit(0)
    await asyncio.sleep(0.01)
    rest = [batcher.submit(i) for i in range(1, 4)]
    await asyncio.gather(first, *rest)
    assert sizes == [4]
    await batcher.aclose()


async def test_close_fails_what_is_still_queued() -> None:
    async def process(batch: list[Pending[int, int]]) -> None:
        await asyncio.sleep(10)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=1)
    first = batcher.submit(0)
    second = batcher.submit(1)
    await asyncio.sleep(0.01)
    await batcher.aclose()
    for future in (first, second):
        with pytest.raises(ModelNotReady, match="shutting down"):
            await future


async def test_close_does_not_wait_on_a_worker_that_swallowed_its_cancellation() -> None:
    """A batch whose library code eats the CancelledError must not hang shutdown."""
    started = asyncio.Event()

    async def process(batch: list[Pending[int, int]]) -> None:
        started.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # swallowed, as a misbehaving client library might
        for p in batch:
            p.future.set_result(p.item)

    batcher: MicroBatcher[int, int] = MicroBatcher(process, max_items=1)
    first = batcher.submit(0)
    await started.wait()
    await asyncio.wait_for(batcher.aclose(), timeout=2.0)
    assert await first == 0
    with pytest.raises(ModelNotReady):
        batcher.submit(1)

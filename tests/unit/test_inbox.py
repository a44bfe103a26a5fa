"""A subscriber's inbox: bounded, the oldest dropped first, each drop reported."""

from __future__ import annotations

from service.bus.base import QUEUE_LIMIT, Inbox


async def test_a_full_inbox_drops_the_oldest_and_says_so() -> None:
    drops: list[None] = []
    inbox: Inbox[int] = Inbox(lambda: drops.append(None))
    for i in range(QUEUE_LIMIT + 3):
        inbox.put(i)
    assert len(drops) == 3
    inbox.end()  # full again: the end mark takes the place of one more
    assert len(drops) == 4
    assert [i async for i in inbox] == list(range(4, QUEUE_LIMIT + 3))

"""The WebSocket rate limit's token bucket, on a clock the test moves by hand."""

from __future__ import annotations

import pytest

from service.api.streaming import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_lets_a_burst_through_then_refuses() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, capacity=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)  # one token comes back every 1/rate s


def test_tokens_come_back_at_the_rate_and_never_beyond_capacity() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2.0, capacity=3, clock=clock)
    for _ in range(3):
        bucket.take()
    clock.now += 0.5
    assert bucket.take() == 0.0
    assert bucket.take() > 0.0
    clock.now += 3600.0  # an hour idle saves up no more than the capacity
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() > 0.0


def test_refusals_spend_nothing() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=1.0, capacity=1, clock=clock)
    assert bucket.take() == 0.0
    for _ in range(5):
        assert bucket.take() == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.take() == 0.0


@pytest.mark.parametrize(("rate", "capacity"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_nonsense_limits_are_refused(rate: float, capacity: int) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        TokenBucket(rate=rate, capacity=capacity)

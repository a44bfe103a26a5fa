"""forecast_client.retry: how long the client waits, and when it gives up."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from forecast_client.retry import NO_RETRY, Retry, retry_after_seconds


def test_pauses_grow_with_jitter_up_to_the_cap_and_stop_at_the_attempts() -> None:
    policy = Retry(attempts=6, backoff=0.5, max_backoff=2.0)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 2.0), (5, 2.0)]:
        for _ in range(200):
            pause = policy.pause(retry)
            assert pause is not None
            assert ceiling / 2 <= pause <= ceiling
    assert policy.pause(6) is None
    assert NO_RETRY.pause(1) is None


def test_retry_after_is_waited_at_least_and_too_long_a_one_ends_the_retries() -> None:
    policy = Retry(attempts=3, backoff=0.1, max_retry_after=5.0)
    assert policy.pause(1, retry_after=2.0) == 2.0
    pause = policy.pause(1, retry_after=0.0)
    assert pause is not None
    assert pause <= 0.1
    assert policy.pause(1, retry_after=6.0) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"attempts": 0}, "attempts"), ({"backoff": -1.0}, "negative")],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Retry(**kwargs)  # type: ignore[arg-type]


def test_retry_after_headers_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 12, 1, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 1.5 ") == 1.5
    assert retry_after_seconds("Tue, 01 Dec 2026 08:00:07 GMT", now) == 7.0
    assert retry_after_seconds("Tue, 01 Dec 2026 07:00:00 GMT", now) == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-4") == 0.0

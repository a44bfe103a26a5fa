"""When and how long to wait before trying a request again.

Retrying is safe with this service: a reading at or before a stream's last timestamp is
skipped as a duplicate, never applied twice, so a request whose answer was lost can be sent
again. The client retries what cannot be a final answer: a connection refused or lost, a
timeout, and a 502/503/504 (a store outage or a restarting replica behind a proxy), waiting
the ``Retry-After`` the service asked for, else a growing pause with jitter, a bounded
number of times.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Retry:
    """How many times to try a request and how long to pause in between.

    Attributes:
        attempts: Tries in all, the first included (1: never retry).
        backoff: The first pause in seconds; each later one doubles, up to ``max_backoff``.
        max_backoff: The longest pause of the growing series.
        max_retry_after: The longest ``Retry-After`` honoured; a longer one ends the retries.
        statuses: The answers that are retried (with the service's ``Retry-After``).
    """

    attempts: int = 4
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 30.0
    statuses: frozenset[int] = frozenset({502, 503, 504})

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ValueError("pauses cannot be negative")

    def pause(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1 = the first), or None to give up.

        The growing pause is drawn from its upper half (so clients that failed together do
        not come back together); the service's ``Retry-After`` is waited at least.
        """
        if retry >= self.attempts:
            return None
        grown = min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))
        pause = grown * (0.5 + random.random() / 2)  # jitter, not a secret
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            pause = max(pause, retry_after)
        return pause


NO_RETRY = Retry(attempts=1)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header's seconds: delta-seconds or an HTTP date; None if absent or
    unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


__all__ = ["NO_RETRY", "Retry", "retry_after_seconds"]

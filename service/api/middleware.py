"""Counting and timing HTTP requests by route template, with the labelled children cached."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.metrics import Metrics

#: (route template, method, status, seconds) -> None
RequestRecorder = Callable[[str, str, int, float], None]
#: The route label of a request that matched no route (404) or no method of its route's.
UNMATCHED = "unmatched"


def request_recorder(metrics: Metrics) -> RequestRecorder:
    """What records one finished HTTP request in ``metrics`` (one app's instruments)."""
    # prometheus-client's ``labels()`` checks and joins its arguments on every call; the
    # labelled children are few (routes x methods x statuses), so they are looked up once.
    counted: dict[tuple[str, str, int], Any] = {}
    timed: dict[tuple[str, str], Any] = {}

    def record(route: str, method: str, status: int, seconds: float) -> None:
        counter = counted.get((route, method, status))
        if counter is None:
            counter = counted[route, method, status] = metrics.requests.labels(
                route, method, str(status)
            )
        histogram = timed.get((route, method))
        if histogram is None:
            histogram = timed[route, method] = metrics.request_latency.labels(route, method)
        counter.inc()
        histogram.observe(seconds)

    return record


__all__ = ["UNMATCHED", "RequestRecorder", "request_recorder"]

"""ASGI middleware that counts and times every HTTP request by its route template."""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import Metrics


def metrics_middleware(metrics: Metrics) -> type:
    """A middleware class bound to one app's instruments (no global registry)."""
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

    class RequestMetrics:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await self.app(scope, receive, send)
                return
            start = time.perf_counter()
            status = 500

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                route = str(scope.get("path_template") or "unmatched")
                record(route, scope.get("method", ""), status, time.perf_counter() - start)

    return RequestMetrics

"""A server-sent events subscriber for tests that write on one connection and listen on another."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx


def read_events(
    url: str,
    headers: Mapping[str, str],
    count: int,
    out: list[dict[str, Any]],
    ready: threading.Event,
) -> None:
    """Append the first ``count`` events of ``url`` to ``out`` as ``{"event", "data"}``.

    ``ready`` is set once the ``snapshot`` event has arrived: from then on the subscription
    is registered and every update is heard.
    """
    with httpx.stream("GET", url, headers=dict(headers), timeout=20.0) as response:
        if response.status_code != 200:
            raise AssertionError(f"GET {url} answered {response.status_code}")
        event = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                out.append({"event": event, "data": json.loads(line.split(":", 1)[1])})
                if event == "snapshot":
                    ready.set()
                if len(out) == count:
                    return


@contextmanager
def subscribed(
    url: str, count: int, *, headers: Mapping[str, str] | None = None, timeout: float = 20.0
) -> Iterator[list[dict[str, Any]]]:
    """Listen to ``url`` in a thread; the events heard, once the snapshot has come.

    Leaving the block waits for ``count`` events in all (up to ``timeout``) and fails if they
    did not come; a reader that failed (not a 200, a broken stream) fails the test with its
    own error rather than with a timeout.
    """
    events: list[dict[str, Any]] = []
    ready = threading.Event()
    failures: list[BaseException] = []

    def listen() -> None:
        try:
            read_events(url, headers or {}, count, events, ready)
        except BaseException as error:  # handed to the test's thread below
            failures.append(error)
            ready.set()

    # A daemon: if the test fails inside the block, the reader ends with the server's stream.
    reader = threading.Thread(target=listen, daemon=True)
    reader.start()
    assert ready.wait(timeout), f"no snapshot from {url} within {timeout:g} s"
    if failures:
        raise failures[0]
    yield events
    reader.join(timeout)
    if failures:
        raise failures[0]
    assert not reader.is_alive(), f"{len(events)} of {count} events from {url}"


#: Two tenants' keys for the isolation scenario: acme writes and reads, beta writes.
TENANT_KEYS = [
    {"key": "stream-acme-writer-0123", "tenant": "acme", "role": "write"},
    {"key": "stream-acme-reader-0123", "tenant": "acme", "role": "read"},
    {"key": "stream-beta-writer-0123", "tenant": "beta", "role": "write"},
]
A_WRITE, A_READ, B_WRITE = ({"X-API-Key": str(k["key"])} for k in TENANT_KEYS)


def check_tenant_isolation(
    write_url: str, read_url: str, *, reading: Callable[[int], dict[str, Any]], settle: float
) -> None:
    """acme subscribes to its ``pump`` on ``read_url``; beta's own ``pump``, written on
    ``write_url`` (the same service or another replica), must never be heard there.

    The services run with ``TENANT_KEYS``; ``settle`` is how long a new subscriber may take
    to be known to the writing service.
    """
    history = {"model": "demo-lstm", "history": [reading(i) for i in range(5)]}
    assert httpx.put(f"{write_url}/v1/streams/pump", json=history, headers=B_WRITE).is_success
    r = httpx.put(f"{write_url}/v1/streams/pump", json={"model": "demo-lstm"}, headers=A_WRITE)
    assert r.status_code == 201
    with subscribed(f"{read_url}/v1/streams/pump/forecasts", 2, headers=A_READ) as events:
        time.sleep(settle)
        for i in range(5, 7):  # beta's updates: seq 6 and 7 of beta's stream
            r = httpx.post(
                f"{write_url}/v1/streams/pump/observations",
                json={"observations": [reading(i)]},
                headers=B_WRITE,
            )
            assert r.status_code == 200
        mine = httpx.post(
            f"{write_url}/v1/streams/pump/observations",
            json={"observations": [reading(0)]},
            headers=A_WRITE,
        ).json()
    assert [e["event"] for e in events] == ["snapshot", "forecast"]
    assert [e["data"]["seq"] for e in events] == [0, 1]
    assert events[1]["data"]["forecast"] == mine["forecast"]

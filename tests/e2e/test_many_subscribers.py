"""1,000 server-sent events subscribers at once on one replica and a healthy real Redis.

Before the store's connection pool waited for a free connection, 500 subscribers arriving
together got 79 spurious 503s (redis-py's full pool read as an outage), and 17 streams sent
their 200 and then broke off with no event (the snapshot read after the headers failed).
Here every subscriber must get a 200, its snapshot, and then the first update of its stream.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

SUBSCRIBERS = 1000
STREAMS = 200
T0 = 1_800_000_000.0
WAIT = 120.0


class Subscriber:
    """One raw HTTP/1.1 connection reading a stream's events (no client library per socket:
    a thousand of them must stay light for the machine the service runs on)."""

    def __init__(self, port: int, stream: str) -> None:
        self.port = port
        self.stream = stream
        self.status = 0
        self.seen = b""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(
            f"GET /v1/streams/{self.stream}/forecasts HTTP/1.1\r\nHost: test\r\n\r\n".encode()
        )
        await self.writer.drain()
        line = await self.reader.readline()
        self.status = int(line.split()[1])
        if self.status == 200:
            await self.until(b"event: snapshot")

    async def until(self, marker: bytes) -> None:
        assert self.reader is not None
        while marker not in self.seen:
            chunk = await self.reader.read(65536)
            if not chunk:
                raise AssertionError(f"{self.stream}: the stream ended before {marker!r}")
            self.seen += chunk

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def subscribe_all(port: int) -> list[Subscriber]:
    subscribers = [Subscriber(port, f"s{i % STREAMS}") for i in range(SUBSCRIBERS)]
    async with asyncio.timeout(WAIT):
        await asyncio.gather(*(s.open() for s in subscribers))
    return subscribers


def test_a_thousand_subscribers_all_get_their_snapshot_and_first_update(
    redis_url: str, model_repository: Path, tmp_path: Path
) -> None:
    env = {
        "FORECAST_STORE_URL": redis_url,
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
    }
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        with httpx.Client(base_url=service.url, timeout=30.0) as http:
            for i in range(STREAMS):
                assert http.put(f"/v1/streams/s{i}", json={"model": "demo-lstm"}).is_success

            async def scenario() -> None:
                subscribers = await subscribe_all(service.port)
                try:
                    statuses = sorted({s.status for s in subscribers})
                    assert statuses == [200], [s.status for s in subscribers].count(503)
                    body = {
                        "streams": [
                            {
                                "stream_id": f"s{i}",
                                "observations": [{"timestamp": T0, "values": [1.0, 2.0]}],
                            }
                            for i in range(STREAMS)
                        ],
                        "detail": "summary",
                    }
                    async with httpx.AsyncClient(base_url=service.url, timeout=30.0) as client:
                        r = await client.post("/v1/observations", json=body)
                    assert r.status_code == 200, r.text
                    assert {a["status"] for a in r.json()["results"]} == {200}
                    async with asyncio.timeout(WAIT):
                        await asyncio.gather(*(s.until(b"event: forecast") for s in subscribers))
                    for s in subscribers:  # each heard its own stream's update
                        update = s.seen.split(b"event: forecast", 1)[1]
                        assert b'"stream_id":"%s"' % s.stream.encode() in update
                finally:
                    for s in subscribers:
                        s.close()

            start = time.monotonic()
            asyncio.run(scenario())
            took = time.monotonic() - start
        print(f"{SUBSCRIBERS} subscribers served in {took:.1f} s")
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log[-3000:]

"""Faults against real processes: Redis killed under load, and one of two replicas killed.

Several writers send readings to real ``python -m service`` processes over loopback, each
writer owning its streams and sending each reading until it is acknowledged with a 2xx (a
retry is safe: a reading at or before the stream's last timestamp is skipped). Mid-load a
process is killed with SIGKILL and restarted. The tests check that

- while Redis is down every answer is 503 with Retry-After, within a bounded time, and
  readiness is red; no other status appears, and no connection fails (the service is up);
- while a replica is down the only failures are connection errors to that replica;
- everything recovers by itself, and every stream's final state (read from Redis) equals the
  sequential reference: all its acknowledged readings, applied once each, in order.

Bounded: a few writers, a few seconds of load, loopback only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from service.runtime import load_runtime
from service.state.keys import stream_key
from service.state.record import StreamRecord
from tests.support.redis_server import RedisServer, redis_available
from tests.support.service_process import ServiceProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not redis_available(), reason="redis-server is not installed"),
]

T0 = 1_800_000_000.0
STORE_TIMEOUT = 0.5
#: Longest a request may take while Redis is down: the store timeout, its one retry, slack.
OUTAGE_ANSWER_SECONDS = 4 * STORE_TIMEOUT + 1.5
WRITERS = 4
STREAMS_PER_WRITER = 2


def reading(stream: int, i: int) -> dict[str, Any]:
    rng = np.random.default_rng(1000 * stream + i)
    load, temp = rng.normal(0.0, 1.0, size=2)
    return {"timestamp": T0 + 3600.0 * i, "values": [float(load), float(temp)]}


@dataclass
class Tally:
    """What the writers saw, by phase."""

    acked: dict[str, int] = field(default_factory=dict)  # stream -> readings acknowledged
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)  # phase -> status -> n
    unexpected: list[str] = field(default_factory=list)
    connection_errors: dict[str, int] = field(default_factory=dict)  # replica url -> n
    slowest_503: float = 0.0
    acks_after_recovery: int = 0

    def count(self, phase: str, status: int) -> None:
        by_status = self.statuses.setdefault(phase, {})
        by_status[status] = by_status.get(status, 0) + 1


class Phase:
    """The test's clock: ``load`` -> ``outage`` -> ``recovered``."""

    def __init__(self) -> None:
        self.name = "load"


async def writer(
    index: int,
    urls: list[str],
    phase: Phase,
    stop: asyncio.Event,
    tally: Tally,
    allowed_dead: set[str],
) -> None:
    """Send each reading of this writer's streams until acknowledged, round robin over replicas."""
    streams = [f"w{index}-s{k}" for k in range(STREAMS_PER_WRITER)]
    progress = dict.fromkeys(streams, 0)
    turn = index
    async with httpx.AsyncClient(timeout=30.0) as client:
        while not stop.is_set():
            for number, stream in enumerate(streams):
                i = progress[stream]
                while True:
                    url = urls[turn % len(urls)]
                    turn += 1
                    seen_in = phase.name
                    started = time.monotonic()
                    try:
                        r = await client.post(
                            f"{url}/v1/streams/{stream}/observations",
                            json={"observations": [reading(index * 10 + number, i)]},
                        )
                    except httpx.TransportError as exc:
                        tally.connection_errors[url] = tally.connection_errors.get(url, 0) + 1
                        if url not in allowed_dead:
                            tally.unexpected.append(f"{seen_in}: {url}: {exc!r}")
                        await asyncio.sleep(0.02)
                        continue
                    elapsed = time.monotonic() - started
                    tally.count(seen_in, r.status_code)
                    if r.status_code == 200:
                        progress[stream] = i + 1
                        if phase.name == "recovered":
                            tally.acks_after_recovery += 1
                        break
                    if r.status_code == 503 and "retry-after" in r.headers:
                        tally.slowest_503 = max(tally.slowest_503, elapsed)
                        await asyncio.sleep(0.05)
                        continue
                    tally.unexpected.append(f"{seen_in}: {r.status_code} {r.text[:200]}")
                    await asyncio.sleep(0.05)
    tally.acked.update(progress)


def expected_state(repository: Path, stream_number: int, n: int) -> tuple[Any, Any]:
    """The sequential reference: the stream's first ``n`` readings in one call from scratch."""
    runtime = load_runtime(repository / "demo-lstm" / "1", providers="cpu")
    x = np.array([[reading(stream_number, i)["values"] for i in range(n)]], dtype=np.float32)
    forecast, state = runtime.run(x, runtime.initial_state[None])
    runtime.close()
    return forecast[0], state[0]


def check_final_states(server: RedisServer, repository: Path, tally: Tally) -> None:
    assert len(tally.acked) == WRITERS * STREAMS_PER_WRITER
    with redis.Redis(port=server.port, socket_timeout=5.0) as client:
        for stream, n in tally.acked.items():
            raw = client.get(stream_key("fcst", "default", stream))
            assert raw is not None, f"{stream} was lost"
            record = StreamRecord.decode(bytes(raw))
            writer_index, k = (int(part[1:]) for part in stream.split("-"))
            forecast, state = expected_state(repository, writer_index * 10 + k, n)
            assert record.seq == n, (stream, record.seq, n)
            assert record.last_ts == reading(0, n - 1)["timestamp"]
            np.testing.assert_allclose(record.state, state, rtol=1e-4, atol=1e-5)
            assert record.forecast is not None
            np.testing.assert_allclose(record.forecast, forecast, rtol=1e-4, atol=1e-5)


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    """A Redis of this test alone (it gets killed), every write in the AOF before the reply."""
    with RedisServer(appendonly=True) as server:
        yield server


def service_env(repository: Path, redis_url: str) -> dict[str, str]:
    return {
        "FORECAST_MODEL_REPOSITORY": str(repository),
        "FORECAST_STORE_URL": redis_url,
        "FORECAST_STORE_TIMEOUT_SECONDS": str(STORE_TIMEOUT),
        "FORECAST_INFERENCE_THREADS": "1",
    }


def create_streams(url: str) -> None:
    for index in range(WRITERS):
        for k in range(STREAMS_PER_WRITER):
            r = httpx.put(f"{url}/v1/streams/w{index}-s{k}", json={"model": "demo-lstm"})
            assert r.status_code == 201, r.text


async def wait_ready(url: str, *, ready: bool, within: float) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5.0) as client:
        while True:
            status = (await client.get(f"{url}/health/ready")).status_code
            if (status == 200) == ready:
                return
            assert time.monotonic() < deadline, f"readiness did not turn {ready} in {within} s"
            await asyncio.sleep(0.05)


async def test_redis_killed_under_load(
    model_repository: Path, durable_redis: RedisServer, tmp_path: Path
) -> None:
    env = service_env(model_repository, durable_redis.url)
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        create_streams(service.url)
        phase, stop, tally = Phase(), asyncio.Event(), Tally()
        writers = [
            asyncio.create_task(writer(i, [service.url], phase, stop, tally, set()))
            for i in range(WRITERS)
        ]
        await asyncio.sleep(1.0)
        phase.name = "outage"
        await asyncio.to_thread(durable_redis.stop, kill=True)
        await wait_ready(service.url, ready=False, within=5.0)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(durable_redis.start)
        await wait_ready(service.url, ready=True, within=10.0)
        phase.name = "recovered"
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), timeout=60)

    assert tally.unexpected == []
    assert tally.connection_errors == {}
    assert set(tally.statuses["outage"]) <= {200, 503}
    assert tally.statuses["outage"].get(503, 0) > 0, "the outage was never seen"
    assert set(tally.statuses.get("recovered", {})) <= {200, 503}
    assert tally.acks_after_recovery > 0
    assert tally.slowest_503 < OUTAGE_ANSWER_SECONDS
    check_final_states(durable_redis, model_repository, tally)


async def test_one_of_two_replicas_killed_under_load(
    model_repository: Path, durable_redis: RedisServer, tmp_path: Path
) -> None:
    env = service_env(model_repository, durable_redis.url)
    with (
        ServiceProcess(env, log=tmp_path / "a.log") as a,
        ServiceProcess(env, log=tmp_path / "b.log") as b,
    ):
        create_streams(a.url)
        phase, stop, tally = Phase(), asyncio.Event(), Tally()
        writers = [
            asyncio.create_task(writer(i, [a.url, b.url], phase, stop, tally, {b.url}))
            for i in range(WRITERS)
        ]
        await asyncio.sleep(1.0)
        phase.name = "outage"
        await asyncio.to_thread(b.stop, kill=True)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(b.start)
        phase.name = "recovered"
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*writers), timeout=60)

    assert tally.unexpected == []
    assert tally.connection_errors.get(b.url, 0) > 0, "the dead replica was never tried"
    assert a.url not in tally.connection_errors
    for phase_name, by_status in tally.statuses.items():
        assert set(by_status) == {200}, (phase_name, by_status)
    assert tally.acks_after_recovery > 0
    check_final_states(durable_redis, model_repository, tally)


async def test_frozen_redis_gives_503_in_bounded_time_and_a_retry_applies_once(
    model_repository: Path, durable_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis that accepts connections but answers nothing (SIGSTOP): the slow case."""
    env = service_env(model_repository, durable_redis.url)
    with ServiceProcess(env, log=tmp_path / "service.log") as service:
        create_streams(service.url)
        body = {"observations": [reading(0, 0)]}
        async with httpx.AsyncClient(base_url=service.url, timeout=30.0) as client:
            durable_redis.pause()
            try:
                started = time.monotonic()
                r = await client.post("/v1/streams/w0-s0/observations", json=body)
                elapsed = time.monotonic() - started
                assert r.status_code == 503, r.text
                assert int(r.headers["retry-after"]) >= 1
                assert r.headers["content-type"].startswith("application/problem+json")
                assert elapsed < OUTAGE_ANSWER_SECONDS
                ready = await client.get("/health/ready")
                assert ready.status_code == 503
                assert "retry-after" in ready.headers
            finally:
                durable_redis.resume()
            await wait_ready(service.url, ready=True, within=10.0)
            # The timed-out write may or may not have landed; the retry makes it exactly once.
            r = await client.post("/v1/streams/w0-s0/observations", json=body)
            assert r.status_code == 200, r.text
            r = await client.post("/v1/streams/w0-s0/observations", json=body)
            assert r.json()["applied"] == 0  # a plain duplicate now
            assert (await client.get("/v1/streams/w0-s0")).json()["seq"] == 1

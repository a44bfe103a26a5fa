"""What ``docker-compose.yml`` describes, started natively, streamed through and disturbed.

Redis runs with the compose file's own command-line settings (AOF on), two ``python -m service``
replicas run with the compose file's environment, and nginx runs the repository's site config.
Only what cannot be the same outside Docker is swapped: host names and ports, and the model
directory (the image's ``/models`` is a copy of ``models/repository``). Streams are then sent
through nginx while Redis restarts and one replica is killed and started again, and every
stream must end exactly where one sequential pass over its series ends.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import tritonclient.grpc

from service.runtime import load_runtime
from service.state.keys import stream_key
from service.state.record import StreamRecord
from tests.support.compose import NGINX_SITE, baked_model, redis_args, replica_env
from tests.support.nginx import NginxBalancer
from tests.support.redis_server import RedisServer, redis_available
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

STREAMS = 6
LENGTH = 48
START = 1_800_000_000.0
#: How long a client keeps retrying one request through restarts before the test fails.
RETRY_DEADLINE_SECONDS = 60.0


def series(stream: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(stream)
    t = np.arange(LENGTH)
    daily = np.sin(2 * np.pi * t / 48 + stream)  # half-hourly readings, like the demo models'
    values = 30_000.0 + 4_000.0 * daily + rng.normal(0.0, 300.0, LENGTH)
    return [{"timestamp": START + 1800.0 * i, "value": float(v)} for i, v in enumerate(values)]


@dataclass
class Client:
    """An at-least-once client: retries a request until the service has taken it.

    502/504 and dropped connections mean a replica died under the request, 503 means the state
    store is unavailable (the service says when to retry). Retrying observations is safe:
    the service skips any timestamp at or before the stream's last one.
    """

    http: httpx.AsyncClient
    base: str
    retried: dict[int, int] = field(default_factory=dict)
    store_unavailable: threading.Event = field(default_factory=threading.Event)

    async def send(self, method: str, path: str, body: Any | None = None) -> httpx.Response:
        deadline = time.monotonic() + RETRY_DEADLINE_SECONDS
        while True:
            try:
                response = await self.http.request(method, self.base + path, json=body)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code not in {502, 503, 504}:
                return response
            status = 0 if response is None else response.status_code
            self.retried[status] = self.retried.get(status, 0) + 1
            delay = 0.05
            if response is not None and response.status_code == 503:
                assert response.headers.get("Retry-After"), "a 503 must say when to retry"
                assert response.json()["title"], "a 503 must have a problem body"
                self.store_unavailable.set()
                delay = min(float(response.headers["Retry-After"]), 0.25)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} kept failing: last status {status}")
            await asyncio.sleep(delay)


def restart_redis_when_seen(server: RedisServer, client: Client) -> None:
    """Kill Redis (SIGKILL), keep it down until a request met the outage (a 503), start it
    again on the same AOF. With ``appendonly yes`` every acknowledged write is in the file
    even when the process dies without a clean shutdown (the host crashing is another story).
    """
    server.stop(kill=True)
    seen = client.store_unavailable.wait(timeout=30.0)
    server.start()
    assert seen, "no request met the Redis outage"


def crash_and_restart(replica: ServiceProcess) -> None:
    """SIGKILL (requests in flight die with it), then start again and wait until ready."""
    replica.stop(kill=True)
    replica.start()


def applied(metrics_text: str) -> float:
    return sum(
        float(v)
        for v in re.findall(
            r"^forecast_observations_applied_total\{[^}]*\} (\S+)$", metrics_text, re.MULTILINE
        )
    )


@pytest.fixture
def deployment(
    nginx_binary: str, tmp_path: Path
) -> Iterator[tuple[RedisServer, list[ServiceProcess], NginxBalancer]]:
    if not redis_available():
        pytest.skip("redis-server / redis-cli are not installed")
    redis_server = RedisServer(appendonly=True, extra_args=redis_args())
    replicas: list[ServiceProcess] = []
    balancer: NginxBalancer | None = None
    try:
        redis_server.start()
        env = replica_env(redis_server.url)
        for name in ("a", "b"):
            replicas.append(ServiceProcess(env, log=tmp_path / f"replica-{name}.log").start())
        balancer = NginxBalancer(
            nginx_binary, NGINX_SITE, [f"127.0.0.1:{r.port}" for r in replicas]
        ).start()
        yield redis_server, replicas, balancer
    finally:
        if balancer is not None:
            balancer.close()
        for replica in replicas:
            replica.stop(kill=True)
        redis_server.close()


async def test_streams_survive_redis_and_replica_restarts_behind_nginx(
    deployment: tuple[RedisServer, list[ServiceProcess], NginxBalancer],
) -> None:
    redis_server, (replica_a, replica_b), balancer = deployment
    model, model_dir = baked_model()
    data = {f"sensor-{i}": series(i) for i in range(STREAMS)}
    for replica in (replica_a, replica_b):  # the compose file turns v2 over gRPC on
        assert replica.grpc_port is not None
        grpc = tritonclient.grpc.InferenceServerClient(f"127.0.0.1:{replica.grpc_port}")
        try:
            assert grpc.is_server_ready()
            assert grpc.is_model_ready(model)
        finally:
            grpc.close()
    thirds = (LENGTH // 3, 2 * LENGTH // 3, 5 * LENGTH // 6, LENGTH)

    async with httpx.AsyncClient(timeout=10.0) as http:
        client = Client(http, balancer.url)
        for stream in data:
            r = await client.send("PUT", f"/v1/streams/{stream}", {"model": model})
            assert r.status_code == 201, r.text

        async def feed(stream: str, start: int, stop: int) -> None:
            for reading in data[stream][start:stop]:
                r = await client.send(
                    "POST", f"/v1/streams/{stream}/observations", {"observations": [reading]}
                )
                assert r.status_code == 200, r.text
                await asyncio.sleep(0.005)

        async def phase(start: int, stop: int) -> None:
            await asyncio.gather(*(feed(s, start, stop) for s in data))

        # Steady traffic through both replicas.
        await phase(0, thirds[0])
        # Redis goes away and comes back while every stream is being fed.
        await asyncio.gather(
            asyncio.to_thread(restart_redis_when_seen, redis_server, client),
            phase(thirds[0], thirds[1]),
        )
        # One replica dies mid-request (SIGKILL) and starts again while traffic goes on.
        await asyncio.gather(
            asyncio.to_thread(crash_and_restart, replica_a),
            phase(thirds[1], thirds[2]),
        )
        # nginx takes a failed replica back after fail_timeout (2 s in the site config).
        await asyncio.sleep(2.5)
        await phase(thirds[2], thirds[3])

        finals = {s: (await client.send("GET", f"/v1/streams/{s}")).json() for s in data}
        # Metrics are scraped per replica; the balancer does not serve a random one's.
        assert (await http.get(f"{balancer.url}/metrics")).status_code == 404
        metrics_a = (await http.get(f"{replica_a.url}/metrics")).text
        metrics_b = (await http.get(f"{replica_b.url}/metrics")).text

    print(f"retried by status (0: connection failed): {client.retried}")
    assert 503 in client.retried, "the Redis restart was never seen as a 503"
    assert applied(metrics_a) > 0, "the restarted replica got no traffic back from nginx"
    assert applied(metrics_b) > 0

    runtime = load_runtime(model_dir, providers="cpu")
    env = replica_env(redis_server.url)
    store = redis.Redis.from_url(redis_server.url)
    try:
        for stream, readings in data.items():
            x = np.array([[[r["value"]] for r in readings]], dtype=np.float32)
            times = np.array([[r["timestamp"] for r in readings]], dtype=np.float64)
            forecast, state = runtime.run(x, runtime.initial_states(1), times)
            body = finals[stream]
            assert body["seq"] == LENGTH, f"{stream}: {body['seq']} observations applied"
            got = np.array([list(step["quantiles"].values()) for step in body["forecast"]["steps"]])
            np.testing.assert_allclose(got, forecast[0], rtol=1e-4, atol=1e-5)
            raw = store.get(stream_key(env["FORECAST_KEY_PREFIX"], "default", stream))
            assert isinstance(raw, bytes)
            record = StreamRecord.decode(raw)
            assert record.seq == LENGTH
            assert record.last_ts == readings[-1]["timestamp"]
            np.testing.assert_allclose(record.state, state[0], rtol=1e-4, atol=1e-5)
    finally:
        store.close()
        runtime.close()

"""The real service as separate processes: the README quick start, restarts, two replicas."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from service.runtime import load_runtime
from service.state.keys import stream_key
from service.state.record import StreamRecord
from tests.support.redis_server import RedisServer
from tests.support.service_process import ROOT, ServiceProcess

START = 1_800_000_000.0


def readings(n: int, seed: int, *, start: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, size=(start + n, 2))
    return [
        {"timestamp": START + 3600.0 * i, "values": [float(v) for v in values[i]]}
        for i in range(start, start + n)
    ]


def reference(repository: Path, model: str, series: list[dict[str, Any]]) -> tuple[Any, Any]:
    """Forecast and state of the whole series in one call: the sequential reference."""
    runtime = load_runtime(repository / model / "1", providers="cpu")
    x = np.array([[r["values"] for r in series]], dtype=np.float32)
    forecast, state = runtime.run(x, runtime.initial_state[None])
    runtime.close()
    return forecast[0], state[0]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text)[:2]


def test_readme_commands_and_ci_agree() -> None:
    run, test = quick_start_commands()
    assert run.endswith("python -m service")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == test


def test_quick_start_serves_forecasts_without_redis() -> None:
    """The README's run command (after its install step) on default settings: no Redis."""
    run = quick_start_commands()[0]
    assert run.split("&&")[-1].strip() == "python -m service"
    with ServiceProcess({"FORECAST_PROVIDERS": "auto"}) as service:
        models = httpx.get(f"{service.url}/v1/models").json()["models"]
        name = models[0]["name"]
        n_features = len(models[0]["latest"]["features"])
        r = httpx.put(f"{service.url}/v1/streams/sensor-1", json={"model": name})
        assert r.status_code == 201
        r = httpx.post(
            f"{service.url}/v1/streams/sensor-1/observations",
            json={
                "observations": [
                    {"timestamp": "2026-11-23T08:00:00Z", "values": [1.0] * n_features}
                ]
            },
        )
        assert r.status_code == 200
        assert len(r.json()["forecast"]["steps"]) == models[0]["latest"]["horizon"]
        ready = httpx.get(f"{service.url}/health/ready").json()
        assert ready["store"] == "ok"


def test_stream_continues_exactly_after_restart(
    model_repository: Path, redis_url: str, tmp_path: Path
) -> None:
    series = readings(20, seed=1)
    env = {"FORECAST_MODEL_REPOSITORY": str(model_repository), "FORECAST_STORE_URL": redis_url}
    service = ServiceProcess(env, log=tmp_path / "service.log").start()
    try:
        assert (
            httpx.put(f"{service.url}/v1/streams/s", json={"model": "demo-lstm"}).status_code == 201
        )
        for reading in series[:10]:
            httpx.post(f"{service.url}/v1/streams/s/observations", json={"observations": [reading]})
        service.restart()
        for reading in series[10:]:
            r = httpx.post(
                f"{service.url}/v1/streams/s/observations", json={"observations": [reading]}
            )
        body = r.json()
    finally:
        service.stop()
    assert body["seq"] == 20
    forecast, _ = reference(model_repository, "demo-lstm", series)
    got = np.array([list(step["quantiles"].values()) for step in body["forecast"]["steps"]])
    np.testing.assert_allclose(got, forecast, rtol=1e-4, atol=1e-5)


async def test_two_replicas_32_writers_each_observation_sent_four_times(
    model_repository: Path, redis_server: RedisServer, redis_url: str, tmp_path: Path
) -> None:
    """No lost update and no double application across two processes sharing one Redis."""
    env = {"FORECAST_MODEL_REPOSITORY": str(model_repository), "FORECAST_STORE_URL": redis_url}
    streams = [f"st-{i}" for i in range(8)]
    series = {s: readings(12, seed=i) for i, s in enumerate(streams)}
    with (
        ServiceProcess(env, log=tmp_path / "a.log") as a,
        ServiceProcess(env, log=tmp_path / "b.log") as b,
    ):
        async with httpx.AsyncClient(timeout=30.0) as http:
            for i, s in enumerate(streams):
                model = "demo-lstm" if i % 2 == 0 else "demo-gru"
                r = await http.put(f"{a.url}/v1/streams/{s}", json={"model": model})
                assert r.status_code == 201

            async def writer(base: str, stream: str) -> None:
                for reading in series[stream]:
                    r = await http.post(
                        f"{base}/v1/streams/{stream}/observations",
                        json={"observations": [reading]},
                    )
                    assert r.status_code == 200, r.text

            writers = [writer(base, s) for s in streams for base in (a.url, b.url, a.url, b.url)]
            assert len(writers) == 32
            await asyncio.gather(*writers)
            finals = {s: (await http.get(f"{b.url}/v1/streams/{s}")).json() for s in streams}
            metrics = (await http.get(f"{a.url}/metrics")).text + (
                await http.get(f"{b.url}/metrics")
            ).text

    client = redis.Redis.from_url(redis_url)
    try:
        for i, s in enumerate(streams):
            model = "demo-lstm" if i % 2 == 0 else "demo-gru"
            forecast, state = reference(model_repository, model, series[s])
            assert finals[s]["seq"] == 12
            record = StreamRecord.decode(client.get(stream_key("fcst", "default", s)))  # type: ignore[arg-type]
            assert record.seq == 12
            np.testing.assert_allclose(record.state, state, rtol=1e-4, atol=1e-5)
            got = np.array([list(x["quantiles"].values()) for x in finals[s]["forecast"]["steps"]])
            np.testing.assert_allclose(got, forecast, rtol=1e-4, atol=1e-5)
    finally:
        client.close()
    applied = sum(
        float(m)
        for m in re.findall(
            r'forecast_observations_applied_total\{model="demo-\w+"\} (\S+)', metrics
        )
    )
    assert applied == 8 * 12, metrics

"""Model management over HTTP: admin endpoints, repository polling, and a hot reload under load.

The load test is the acceptance one: while versions are added, replaced in place, unloaded
and loaded again, every request of several concurrent clients succeeds, and the streams end
where a sequential run of their observations puts them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from models.onnx_builder import build_recurrent_model
from service.app import create_app
from service.manifest import ONNX_FILE
from service.settings import ApiKeyEntry, Settings
from tests.support.service_process import ServiceProcess

T0 = 1_790_000_000.0
ADMIN = {"X-API-Key": "lifecycle-admin-0123456789"}
WRITER = {"X-API-Key": "lifecycle-writer-0123456789"}


def add_version(repository: Path, version: int, *, seed: int) -> str:
    return build_recurrent_model(
        repository / "demo-lstm" / str(version),
        kind="lstm",
        name="demo-lstm",
        version=version,
        features=["load", "temp"],
        target="load",
        frequency=3600.0,
        seed=seed,
    ).sha256


def settings_for(repository: Path, **overrides: Any) -> Settings:
    keys = [
        ApiKeyEntry.model_validate({"key": ADMIN["X-API-Key"], "tenant": "ops", "role": "admin"}),
        ApiKeyEntry.model_validate({"key": WRITER["X-API-Key"], "tenant": "t", "role": "write"}),
    ]
    return Settings(model_repository=repository, providers="cpu", api_keys=keys, **overrides)


@pytest.fixture
async def client(model_repository: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(settings_for(model_repository))) as c:
        yield c


async def versions(client: AsyncTestClient[Any]) -> list[int]:
    r = await client.get("/v1/models/demo-lstm", headers=WRITER)
    if r.status_code == 404:
        return []
    return [v["version"] for v in r.json()["versions"]]


async def test_unload_load_and_reload_endpoints(
    client: AsyncTestClient[Any], model_repository: Path
) -> None:
    sha2 = add_version(model_repository, 2, seed=3)
    r = await client.post("/v1/admin/models/reload", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["loaded"] == ["demo-lstm/2"]
    assert await versions(client) == [1, 2]

    r = await client.post("/v1/admin/models/demo-lstm/versions/2/unload", headers=ADMIN)
    assert r.status_code == 200
    assert r.json() == {"name": "demo-lstm", "version": 2, "fingerprint": sha2, "state": "unloaded"}
    assert await versions(client) == [1]
    r = await client.post("/v1/admin/models/reload", headers=ADMIN)
    assert "demo-lstm/2" not in r.json()["loaded"]  # held out until loaded explicitly
    assert await versions(client) == [1]
    r = await client.post("/v1/admin/models/demo-lstm/versions/2/unload", headers=ADMIN)
    assert r.status_code == 404

    r = await client.post("/v1/admin/models/demo-lstm/versions/2/load", headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["state"] == "loaded"
    assert await versions(client) == [1, 2]

    r = await client.post("/v1/admin/models/demo-lstm/versions/9/load", headers=ADMIN)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    add_version(model_repository, 3, seed=4)
    (model_repository / "demo-lstm" / "3" / ONNX_FILE).write_bytes(b"broken")
    r = await client.post("/v1/admin/models/demo-lstm/versions/3/load", headers=ADMIN)
    assert r.status_code == 409
    assert "sha256" in r.json()["detail"]
    assert await versions(client) == [1, 2]
    r = await client.post("/v1/admin/models/demo-lstm/versions/0/load", headers=ADMIN)
    assert r.status_code in (400, 422)


async def test_polling_picks_up_new_versions_and_stops_at_shutdown(model_repository: Path) -> None:
    app = create_app(settings_for(model_repository, model_poll_seconds=0.05))
    async with AsyncTestClient(app=app) as c:
        add_version(model_repository, 2, seed=11)
        deadline = time.monotonic() + 10
        while await versions(c) != [1, 2]:
            assert time.monotonic() < deadline, "polling did not load version 2"
            await asyncio.sleep(0.05)
        task = app.state.model_poll_task
        assert not task.done()
        metrics = (await c.get("/metrics")).text
        assert 'forecast_model_info{kind="lstm",model="demo-lstm",providers=' in metrics
        assert 'version="2"' in metrics
    assert task.cancelled()


def observation(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [1.0 + 0.01 * i, 20.0]}


async def test_hot_reload_under_load_fails_no_request(model_repository: Path) -> None:
    """Streams pinned to version 1 and stateless forecasts on version 2 (replaced in place over
    and over) run against a real server process while an admin re-scans, adds, unloads and
    re-loads versions. (Litestar's test client runs one request at a time, so a real server.)"""
    add_version(model_repository, 2, seed=20)
    keys = [
        {"key": ADMIN["X-API-Key"], "tenant": "ops", "role": "admin"},
        {"key": WRITER["X-API-Key"], "tenant": "t", "role": "write"},
    ]
    env = {
        "FORECAST_MODEL_REPOSITORY": str(model_repository),
        "FORECAST_API_KEYS": json.dumps(keys),
    }
    with ServiceProcess(env) as service:
        async with httpx.AsyncClient(base_url=service.url, timeout=30.0) as client:
            await _hot_reload_under_load(client, model_repository)


async def _hot_reload_under_load(client: httpx.AsyncClient, model_repository: Path) -> None:
    streams = [f"hot-{i}" for i in range(3)]
    for stream in streams:
        r = await client.put(
            f"/v1/streams/{stream}", json={"model": "demo-lstm", "version": 1}, headers=WRITER
        )
        assert r.status_code == 201, r.text
    failures: list[tuple[str, int, str]] = []
    done = asyncio.Event()
    counts = {"observe": 0, "forecast": 0, "reloads": 0}

    async def writer(stream: str) -> int:
        i = 0
        while not done.is_set():
            r = await client.post(
                f"/v1/streams/{stream}/observations",
                json={"observations": [observation(i)]},
                headers=WRITER,
            )
            if r.status_code != 200:
                failures.append((stream, r.status_code, r.text))
            else:
                i += 1
                counts["observe"] += 1
        return i

    async def forecaster(version: int | None) -> None:
        body: dict[str, Any] = {"series": [{"observations": [observation(0), observation(1)]}]}
        if version is not None:
            body["version"] = version
        while not done.is_set():
            r = await client.post("/v1/models/demo-lstm/forecast", json=body, headers=WRITER)
            if r.status_code != 200:
                failures.append((f"forecast v{version}", r.status_code, r.text))
            counts["forecast"] += 1

    async def admin() -> None:
        try:
            await asyncio.sleep(0.2)
            for round_ in range(6):
                await asyncio.to_thread(add_version, model_repository, 2, seed=100 + round_)
                await asyncio.to_thread(
                    add_version, model_repository, 3 + round_, seed=200 + round_
                )
                r = await client.post("/v1/admin/models/reload", headers=ADMIN)
                assert r.status_code == 200, r.text
                assert r.json()["replaced"] == ["demo-lstm/2"]
                assert r.json()["loaded"] == [f"demo-lstm/{3 + round_}"]
                r = await client.post(
                    f"/v1/admin/models/demo-lstm/versions/{3 + round_}/unload", headers=ADMIN
                )
                assert r.status_code == 200, r.text
                r = await client.post(
                    f"/v1/admin/models/demo-lstm/versions/{3 + round_}/load", headers=ADMIN
                )
                assert r.status_code == 200, r.text
                counts["reloads"] += 1
                await asyncio.sleep(0.05)
        finally:
            done.set()

    results = await asyncio.gather(
        *(writer(s) for s in streams), forecaster(2), forecaster(None), admin()
    )
    assert failures == []
    assert counts["reloads"] == 6
    assert counts["observe"] > 0
    assert counts["forecast"] > 0
    # Every stream holds exactly the observations acknowledged, on version 1 throughout.
    for stream, acknowledged in zip(streams, results, strict=False):
        r = await client.get(f"/v1/streams/{stream}", headers=WRITER)
        body = r.json()
        assert body["seq"] == acknowledged
        assert body["model"] == {"name": "demo-lstm", "version": 1}
    r = await client.get("/v1/models/demo-lstm", headers=WRITER)
    assert [v["version"] for v in r.json()["versions"]] == list(range(1, 9))

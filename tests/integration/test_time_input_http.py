"""A model with the contract's ``time`` input served through the whole service.

Every way a reading reaches the model (one per request, several per request, bulk, PUT with
a history, a stateless forecast, a replay, a gap filled from the median) must hand the graph
the readings' own timestamps: the clock model's forecast depends on each of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings
from tests.support.clock_model import build_clock_model, clock_reference

START = 1_800_000_000.0
PERIOD = 1800.0
N = 10


def readings(n: int = N, *, start: float = START) -> list[dict[str, Any]]:
    return [
        {"timestamp": start + i * PERIOD, "value": float(np.sin(i / 2.0) + 3.0)} for i in range(n)
    ]


def bands(forecast: dict[str, Any]) -> np.ndarray:
    return np.array([list(step["quantiles"].values()) for step in forecast["steps"]])


def expected(rows: list[dict[str, Any]]) -> np.ndarray:
    times = np.array([r["timestamp"] for r in rows])
    values = np.array([r["value"] for r in rows])
    return clock_reference(times, values)


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncTestClient[Any]]:
    build_clock_model(tmp_path / "models" / "clock" / "1")
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings = Settings(
        model_repository=tmp_path / "models", providers="cpu", store_url=url, gap_policy="median"
    )
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


async def test_one_reading_per_request_gets_each_readings_time(
    client: AsyncTestClient[Any],
) -> None:
    rows = readings()
    assert (await client.put("/v1/streams/c1", json={"model": "clock"})).status_code == 201
    for i, row in enumerate(rows, start=1):
        r = await client.post("/v1/streams/c1/observations", json={"observations": [row]})
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(bands(r.json()["forecast"]), expected(rows[:i]), atol=1e-3)
    r = await client.post("/v1/models/clock/forecast", json={"series": [{"observations": rows}]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(bands(r.json()["forecasts"][0]), expected(rows), atol=1e-3)


async def test_history_several_readings_and_bulk_get_their_times(
    client: AsyncTestClient[Any],
) -> None:
    rows = readings()
    r = await client.put("/v1/streams/c2", json={"model": "clock", "history": rows[:4]})
    assert r.status_code == 201, r.text
    np.testing.assert_allclose(bands(r.json()["forecast"]), expected(rows[:4]), atol=1e-3)
    r = await client.post("/v1/streams/c2/observations", json={"observations": rows[4:7]})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(bands(r.json()["forecast"]), expected(rows[:7]), atol=1e-3)
    r = await client.post(
        "/v1/observations",
        json={"streams": [{"stream_id": "c2", "observations": rows[7:]}]},
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(
        bands(r.json()["results"][0]["result"]["forecast"]), expected(rows), atol=1e-3
    )


async def test_a_gap_filled_from_the_median_is_fed_its_own_times(
    client: AsyncTestClient[Any],
) -> None:
    rows = readings(3)
    r = await client.put("/v1/streams/c3", json={"model": "clock", "history": rows})
    assert r.status_code == 201, r.text
    late = {"timestamp": START + 5 * PERIOD, "value": 2.5}  # two readings missing before it
    r = await client.post("/v1/streams/c3/observations", json={"observations": [late]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["filled"] == 2
    # The filled readings take the median forecast after the third reading.
    fill = float(expected(rows)[0, 1])
    filled = [{"timestamp": START + k * PERIOD, "value": fill} for k in (3, 4)]
    np.testing.assert_allclose(bands(body["forecast"]), expected([*rows, *filled, late]), atol=1e-3)

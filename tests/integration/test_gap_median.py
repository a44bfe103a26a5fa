"""gap_policy median: missing readings filled with the model's own median forecast.

Every stream is compared with ``tests.support.gap_reference``, which feeds the real readings
and the filled ones one row at a time through the model runtime; the service must end in the
same state and forecast, over every store backend (the embedded one, Redis, Redis Cluster).
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.forecaster import Forecaster, Observations
from service.settings import Settings
from service.state.base import StateStore
from service.state.keys import stream_key
from service.state.memory import MemoryStore
from service.state.record import StreamRecord
from tests.support.gap_reference import Reference, median_fill_reference

T0 = 1_800_000_000.0
HOUR = 3600.0
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "repository"
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def values_at(hour: int) -> list[float]:
    """Two features, load and temp: temp moves every hour, so carrying it over is visible."""
    return [float(np.sin(hour)), 10.0 + hour]


def obs(hour: int) -> dict[str, Any]:
    return {"timestamp": T0 + HOUR * hour, "values": values_at(hour)}


@dataclasses.dataclass(frozen=True)
class Backend:
    """Where the app keeps state, and a client of it on the test's own event loop."""

    url: str
    store: StateStore


@pytest.fixture
def backend(store_url: str, store: StateStore) -> Backend:
    return Backend(store_url, store)


def median_app(repository: Path, backend: Backend, **overrides: Any) -> Litestar:
    """The app under test. A Redis client is bound to the loop it first ran on, and the test
    client serves the app on a loop of its own, so the app opens its own Redis client (from
    the URL) while the test inspects through ``backend.store``; the embedded store is shared.
    """
    settings = Settings(
        model_repository=repository,
        providers="cpu",
        gap_policy="median",
        store_url=backend.url,
        **overrides,
    )
    return create_app(settings, store=backend.store if backend.url == "memory://" else None)


def quantiles(forecast: dict[str, Any]) -> np.ndarray:
    return np.array([list(step["quantiles"].values()) for step in forecast["steps"]])


async def stored(store: StateStore, stream: str) -> StreamRecord:
    raw = await store.get(stream_key("fcst", "default", stream))
    assert raw is not None
    return StreamRecord.decode(raw)


def reference_of(app: Litestar, model: str, hours: list[int], period: float = HOUR) -> Reference:
    runtime = app.state.registry.get(model)
    return median_fill_reference(
        runtime, [T0 + period * h for h in hours], [values_at(h) for h in hours]
    )


def assert_matches(record: StreamRecord, reference: Reference) -> None:
    """State, forecast and the kept raw rows (real and filled) equal the reference's."""
    assert record.seq == len(reference.timestamps)
    np.testing.assert_allclose(record.state, reference.state, **TOLERANCE)
    assert record.forecast is not None
    np.testing.assert_allclose(record.forecast, reference.forecast, **TOLERANCE)
    assert record.history_ts is not None
    assert record.history_values is not None
    keep = len(record.history_ts)
    np.testing.assert_array_equal(record.history_ts, reference.timestamps[-keep:])
    np.testing.assert_allclose(record.history_values, reference.values[-keep:], **TOLERANCE)


@pytest.mark.parametrize("model", ["demo-lstm", "demo-gru"])
async def test_gaps_before_and_inside_a_request_equal_the_reference(
    model_repository: Path, backend: Backend, model: str
) -> None:
    app = median_app(model_repository, backend)
    async with AsyncTestClient(app=app) as c:
        r = await c.put(
            "/v1/streams/m", json={"model": model, "history": [obs(h) for h in (0, 1, 2)]}
        )
        assert r.status_code in (200, 201), r.text
        before = quantiles(r.json()["forecast"])
        # 2 missing before the first row (3, 4), 6 inside (7..12): more than the horizon (4).
        r = await c.post(
            "/v1/streams/m/observations", json={"observations": [obs(5), obs(6), obs(13)]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["applied"], body["filled"], body["seq"]) == (3, 8, 14)

        reference = reference_of(app, model, [0, 1, 2, 5, 6, 13])
        assert reference.filled == 8
        record = await stored(backend.store, "m")
        assert_matches(record, reference)
        np.testing.assert_allclose(quantiles(body["forecast"]), reference.forecast, **TOLERANCE)
        assert record.history_values is not None
        # Independent of the reference: load (the target) of the first gap is the median the
        # stream showed before it; temp is carried over from the last known reading.
        median = app.state.registry.get(model).manifest.median_index
        np.testing.assert_array_equal(
            record.history_values[3:5, 0], before[:2, median].astype(np.float32)
        )
        assert record.history_values[3:5, 1].tolist() == [values_at(2)[1]] * 2
        assert record.history_values[7:13, 1].tolist() == [values_at(6)[1]] * 6

        # The stream goes on from there, gap or no gap.
        r = await c.post("/v1/streams/m/observations", json={"observations": [obs(14), obs(16)]})
        assert (r.json()["applied"], r.json()["filled"], r.json()["seq"]) == (2, 1, 17)
        assert_matches(
            await stored(backend.store, "m"), reference_of(app, model, [0, 1, 2, 5, 6, 13, 14, 16])
        )


@pytest.mark.parametrize("model", ["taylor-lstm", "taylor-gru"])
async def test_a_shipped_model_rolls_out_a_gap_longer_than_its_horizon(model: str) -> None:
    """Single-feature, half-hourly, H = 24: a gap of 30 needs the forecast rolled out once."""
    period = 1800.0
    backend = Backend("memory://", MemoryStore())
    app = median_app(SHIPPED, backend)

    def reading(step: int) -> dict[str, Any]:
        return {"timestamp": T0 + period * step, "values": [30_000.0 + 5_000.0 * np.sin(step / 8)]}

    history = list(range(48))
    sent = [78, 79, 83]  # 30 missing (48..77), then 3 (80..82)
    async with AsyncTestClient(app=app) as c:
        r = await c.put(
            "/v1/streams/t", json={"model": model, "history": [reading(s) for s in history]}
        )
        assert r.status_code in (200, 201), r.text
        r = await c.post(
            "/v1/streams/t/observations", json={"observations": [reading(s) for s in sent]}
        )
        assert r.status_code == 200, r.text
        assert (r.json()["applied"], r.json()["filled"]) == (3, 33)
        steps = history + sent
        reference = median_fill_reference(
            app.state.registry.get(model),
            [T0 + period * s for s in steps],
            [reading(s)["values"] for s in steps],
        )
    assert_matches(await stored(backend.store, "t"), reference)


async def test_a_gap_beyond_the_bound_is_refused_and_changes_nothing(
    model_repository: Path, backend: Backend
) -> None:
    async with AsyncTestClient(app=median_app(model_repository, backend, max_gap_steps=5)) as c:
        await c.put("/v1/streams/b", json={"model": "demo-lstm", "history": [obs(0), obs(1)]})
        key = stream_key("fcst", "default", "b")
        before = await backend.store.get(key)
        for rows in ([obs(2), obs(3), obs(10)], [obs(8)]):
            r = await c.post("/v1/streams/b/observations", json={"observations": rows})
            assert r.status_code == 409, r.text
            assert "re-warm" in r.json()["detail"]
            assert r.json()["field"] == f"observations[{len(rows) - 1}].timestamp"
            assert await backend.store.get(key) == before
        # Five missing is within the bound.
        r = await c.post("/v1/streams/b/observations", json={"observations": [obs(7)]})
        assert (r.json()["applied"], r.json()["filled"]) == (1, 5)


async def test_a_stream_without_a_stored_forecast_must_be_rewarmed(
    model_repository: Path, backend: Backend
) -> None:
    """An old record with a position but no forecast: a gap cannot be filled from it."""
    async with AsyncTestClient(app=median_app(model_repository, backend)) as c:
        await c.put("/v1/streams/n", json={"model": "demo-gru", "history": [obs(0), obs(1)]})
        key = stream_key("fcst", "default", "n")
        old = dataclasses.replace(await stored(backend.store, "n"), forecast=None)
        await backend.store.put(key, old.encode(), 60.0)
        before = await backend.store.get(key)
        r = await c.post("/v1/streams/n/observations", json={"observations": [obs(4)]})
        assert r.status_code == 409, r.text
        assert "re-warm" in r.json()["detail"]
        assert r.json()["field"] == "observations[0].timestamp"
        assert await backend.store.get(key) == before
        # Without a gap the stream still moves on, and has a forecast again.
        r = await c.post("/v1/streams/n/observations", json={"observations": [obs(2)]})
        assert r.status_code == 200, r.text
        r = await c.post("/v1/streams/n/observations", json={"observations": [obs(4)]})
        assert (r.json()["applied"], r.json()["filled"]) == (1, 1)


async def test_without_history_only_a_single_feature_gap_can_be_filled(
    model_repository: Path, backend: Backend
) -> None:
    """With history_length=0 nothing is known to carry over the other features."""
    app = median_app(model_repository, backend, history_length=0)
    async with AsyncTestClient(app=app) as c:
        await c.put("/v1/streams/k", json={"model": "demo-lstm", "history": [obs(0)]})
        r = await c.post("/v1/streams/k/observations", json={"observations": [obs(3)]})
        assert r.status_code == 409, r.text
        # Inside a request the reading before the gap is known.
        r = await c.post("/v1/streams/k/observations", json={"observations": [obs(1), obs(3)]})
        assert (r.json()["applied"], r.json()["filled"]) == (2, 1)
        assert_state(await stored(backend.store, "k"), reference_of(app, "demo-lstm", [0, 1, 3]))


def assert_state(record: StreamRecord, reference: Reference) -> None:
    assert record.seq == len(reference.timestamps)
    np.testing.assert_allclose(record.state, reference.state, **TOLERANCE)
    assert record.forecast is not None
    np.testing.assert_allclose(record.forecast, reference.forecast, **TOLERANCE)


async def test_requests_without_a_gap_stay_on_the_batched_path(
    model_repository: Path, backend: Backend
) -> None:
    """Six streams without a gap share one model call; the one with a gap runs on its own."""
    app = median_app(model_repository, backend)
    async with app.lifespan():  # the forecaster runs on this test's loop
        f: Forecaster = app.state.forecaster
        for s in range(7):
            await f.create_stream("default", f"s{s}", "demo-lstm", history=rows([0, 1]))
        calls = call_counter(app)
        before = calls()
        results = await asyncio.gather(
            *(f.observe("default", f"s{s}", rows([2])) for s in range(6)),
            f.observe("default", "s6", rows([4, 5])),
        )
        assert [r.filled for r in results] == [0] * 6 + [2]
        count, total = calls()
        assert (count - before[0], total - before[1]) == (2, 7)  # one call of 6 rows, one of 1
        assert_state(await stored(backend.store, "s0"), reference_of(app, "demo-lstm", [0, 1, 2]))
        assert_state(
            await stored(backend.store, "s6"), reference_of(app, "demo-lstm", [0, 1, 4, 5])
        )


def rows(hours: list[int]) -> Observations:
    return Observations.build([T0 + HOUR * h for h in hours], [values_at(h) for h in hours])


def call_counter(app: Litestar) -> Any:
    """Model calls of demo-lstm so far and the batch rows they held, from the metrics."""
    registry = app.state.metrics.registry
    labels = {"model": "demo-lstm", "version": "1"}

    def calls() -> tuple[float, float]:
        count = registry.get_sample_value("forecast_inference_batch_rows_count", labels)
        total = registry.get_sample_value("forecast_inference_batch_rows_sum", labels)
        return count or 0.0, total or 0.0

    return calls

"""The REST API in-process, against the embedded store and a real Redis.

Every rejected request is checked to leave the stream's stored record byte-for-byte as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings
from service.state import open_store
from service.state.base import StateStore
from service.state.keys import stream_key

T0 = 1_790_000_000.0  # an arbitrary epoch second


def obs(i: int, load: float = 1.0, temp: float = 20.0) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [load + i * 0.1, temp - i * 0.05]}


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    """The store the app under test uses, as seen from the test.

    The test client runs the app on its own event loop, so a Redis-backed app opens its own
    client from the URL while the test reads the same server through this one.
    """
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    store = open_store(url, timeout_seconds=1.0)
    store.url = url  # type: ignore[attr-defined]
    yield store
    await store.close()


def app_for(repository: Path, backend: StateStore, **overrides: Any) -> Any:
    url: str = backend.url  # type: ignore[attr-defined]
    settings = Settings(model_repository=repository, providers="cpu", store_url=url, **overrides)
    return create_app(settings, store=backend if url == "memory://" else None)


@pytest.fixture
async def client(
    model_repository: Path, backend: StateStore
) -> AsyncIterator[AsyncTestClient[Any]]:
    app = app_for(
        model_repository, backend, max_observations=50, max_series=4, max_body_bytes=64 * 1024
    )
    async with AsyncTestClient(app=app) as c:
        yield c


async def raw(backend: StateStore, stream_id: str) -> bytes | None:
    return await backend.get(stream_key("fcst", "default", stream_id))


async def make_stream(client: AsyncTestClient[Any], stream_id: str = "s1", n: int = 3) -> None:
    r = await client.put(
        f"/v1/streams/{stream_id}",
        json={"model": "demo-lstm", "history": [obs(i) for i in range(n)]},
    )
    assert r.status_code == 201, r.text


async def test_stream_lifecycle(client: AsyncTestClient[Any]) -> None:
    r = await client.put("/v1/streams/s1", json={"model": "demo-gru"})
    assert r.status_code == 201
    body = r.json()
    assert body["seq"] == 0
    assert body["forecast"] is None
    assert body["model"] == {"name": "demo-gru", "version": 1}

    r = await client.post("/v1/streams/s1/observations", json={"observations": [obs(0), obs(1)]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seq"] == 2
    assert body["applied"] == 2
    assert body["skipped"] == []
    steps = body["forecast"]["steps"]
    assert len(steps) == 4
    assert body["forecast"]["target"] == "load"
    assert steps[0]["timestamp"] == "2026-09-21T16:13:20Z"  # obs(1) is T0 + 1 h; then + 1 h
    for step in steps:
        q = step["quantiles"]
        assert set(q) == {"0.1", "0.5", "0.9"}
        assert q["0.1"] <= q["0.5"] <= q["0.9"]
        assert step["median"] == q["0.5"]

    # The same two observations again plus one new: the old ones are skipped, not re-applied.
    r = await client.post(
        "/v1/streams/s1/observations", json={"observations": [obs(0), obs(1), obs(2)]}
    )
    body = r.json()
    assert body["seq"] == 3
    assert body["applied"] == 1
    assert len(body["skipped"]) == 2

    r = await client.get("/v1/streams/s1")
    assert r.status_code == 200
    assert r.json()["forecast"] == body["forecast"]
    assert r.json()["seq"] == 3

    # Re-PUT resets the stream (200: it existed).
    r = await client.put("/v1/streams/s1", json={"model": "demo-gru"})
    assert r.status_code == 200
    assert r.json()["seq"] == 0

    assert (await client.delete("/v1/streams/s1")).status_code == 204
    assert (await client.get("/v1/streams/s1")).status_code == 404
    assert (await client.delete("/v1/streams/s1")).status_code == 404


async def test_single_value_shorthand_needs_one_feature(client: AsyncTestClient[Any]) -> None:
    await make_stream(client)
    r = await client.post(
        "/v1/streams/s1/observations",
        json={"observations": [{"timestamp": T0 + 99 * 3600, "value": 1.0}]},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "observations[0].values"


async def test_warm_up_equals_observing(client: AsyncTestClient[Any]) -> None:
    await make_stream(client, "warm", n=5)
    await client.put("/v1/streams/cold", json={"model": "demo-lstm"})
    for i in range(5):
        r = await client.post("/v1/streams/cold/observations", json={"observations": [obs(i)]})
    warm = (await client.get("/v1/streams/warm")).json()
    assert r.json()["forecast"] == warm["forecast"]
    assert warm["seq"] == 5


async def test_stateless_forecast_many_series(client: AsyncTestClient[Any]) -> None:
    series = [
        {"id": "a", "observations": [obs(i) for i in range(4)]},
        {"id": "b", "observations": [obs(i, load=5.0) for i in range(7)]},
        {"observations": [obs(i) for i in range(4)]},
    ]
    r = await client.post("/v1/models/demo-lstm/forecast", json={"series": series})
    assert r.status_code == 200, r.text
    out = r.json()["forecasts"]
    assert [f["id"] for f in out] == ["a", "b", None]
    assert out[0]["steps"] == out[2]["steps"]  # same data, same answer
    assert out[0]["steps"] != out[1]["steps"]
    one = await client.post("/v1/models/demo-lstm/forecast", json={"series": series[1:2]})
    assert one.json()["forecasts"][0]["steps"] == out[1]["steps"]  # batching changes nothing
    r = await client.post(
        "/v1/models/demo-lstm/forecast", json={"version": 1, "series": series[:1]}
    )
    assert r.status_code == 200


async def test_models_metadata(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/v1/models")
    assert r.status_code == 200
    names = {m["name"] for m in r.json()["models"]}
    assert names == {"demo-lstm", "demo-gru"}
    r = await client.get("/v1/models/demo-lstm")
    assert r.status_code == 200
    version = r.json()["versions"][0]
    assert version["kind"] == "lstm"
    assert version["features"] == ["load", "temp"]
    assert version["providers"] == ["CPUExecutionProvider"]
    assert len(version["fingerprint"]) == 64
    assert (await client.get("/v1/models/nope")).status_code == 404


BAD_OBSERVATIONS: list[tuple[str, Any, int, str | None]] = [
    (
        "wrong feature count",
        {"observations": [{"timestamp": T0 * 2, "values": [1.0]}]},
        422,
        "observations[0].values",
    ),
    (
        "NaN as string",
        {"observations": [{"timestamp": T0 * 2, "values": ["NaN", 1.0]}]},
        422,
        "observations[0].values[0]",
    ),
    (
        "infinity as string",
        {"observations": [{"timestamp": T0 * 2, "values": [1.0, "-Infinity"]}]},
        422,
        "observations[0].values[1]",
    ),
    (
        "unordered timestamps",
        {"observations": [obs(50), obs(49)]},
        422,
        "observations[1].timestamp",
    ),
    ("equal timestamps", {"observations": [obs(50), obs(50)]}, 422, "observations[1].timestamp"),
    ("missing values", {"observations": [{"timestamp": T0 * 2}]}, 422, "observations[0]"),
    ("empty list", {"observations": []}, 422, "observations"),
    ("unknown field", {"observations": [obs(50)], "extra": 1}, 422, None),
    (
        "too many observations",
        {"observations": [obs(100 + i) for i in range(51)]},
        413,
        "observations",
    ),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "field"), BAD_OBSERVATIONS, ids=[c[0] for c in BAD_OBSERVATIONS]
)
async def test_bad_observations_change_nothing(
    client: AsyncTestClient[Any],
    backend: StateStore,
    case: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    await make_stream(client)
    before = await raw(backend, "s1")
    r = await client.post("/v1/streams/s1/observations", json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert {"type", "title", "status", "detail", "code"} <= problem.keys()
    assert problem["status"] == status
    if field is not None:
        assert problem["field"] == field
    assert await raw(backend, "s1") == before


@pytest.mark.parametrize(
    "content",
    [b'{"observations": [{"timestamp": 1, "values": [NaN, 1]}]}', b"{not json", b"[1, 2,"],
    ids=["NaN literal", "not json", "truncated"],
)
async def test_malformed_json_is_400(
    client: AsyncTestClient[Any], backend: StateStore, content: bytes
) -> None:
    await make_stream(client)
    before = await raw(backend, "s1")
    r = await client.post(
        "/v1/streams/s1/observations",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json()["code"] == "malformed-body"
    assert await raw(backend, "s1") == before


async def test_body_too_large_is_413(client: AsyncTestClient[Any], backend: StateStore) -> None:
    await make_stream(client)
    before = await raw(backend, "s1")
    big = {"observations": [obs(100)], "padding": "x" * 70_000}
    r = await client.post("/v1/streams/s1/observations", json=big)
    assert r.status_code == 413
    assert r.json()["code"] == "payload-too-large"
    assert await raw(backend, "s1") == before


async def test_unknown_stream_and_model(client: AsyncTestClient[Any], backend: StateStore) -> None:
    r = await client.post("/v1/streams/ghost/observations", json={"observations": [obs(0)]})
    assert r.status_code == 404
    assert r.json()["code"] == "unknown-stream"
    assert await raw(backend, "ghost") is None

    await make_stream(client)
    before = await raw(backend, "s1")
    r = await client.put("/v1/streams/s1", json={"model": "no-such-model"})
    assert r.status_code == 404
    assert r.json()["code"] == "unknown-model"
    r = await client.put("/v1/streams/s1", json={"model": "demo-lstm", "version": 7})
    assert r.status_code == 404
    # A rejected warm-up history leaves the existing stream alone too.
    r = await client.put(
        "/v1/streams/s1",
        json={"model": "demo-lstm", "history": [obs(2), obs(1)]},
    )
    assert r.status_code == 422
    assert await raw(backend, "s1") == before
    r = await client.post("/v1/models/nope/forecast", json={"series": [{"observations": [obs(0)]}]})
    assert r.status_code == 404


async def test_bad_stream_id_is_422(client: AsyncTestClient[Any]) -> None:
    r = await client.put("/v1/streams/bad%0Aid", json={"model": "demo-lstm"})
    assert r.status_code == 422
    assert r.json()["field"] == "stream_id"


async def test_too_many_series_is_413(client: AsyncTestClient[Any]) -> None:
    series = [{"observations": [obs(0)]}] * 5
    r = await client.post("/v1/models/demo-lstm/forecast", json={"series": series})
    assert r.status_code == 413
    assert r.json()["field"] == "series"


async def test_state_of_other_weights_is_409(
    model_repository: Path, backend: StateStore, tmp_path: Path
) -> None:
    """A stream made by one set of weights is never fed to another with the same name."""
    from models.onnx_builder import build_recurrent_model

    other = tmp_path / "other"
    build_recurrent_model(
        other / "demo-lstm" / "1",
        kind="lstm",
        name="demo-lstm",
        features=["load", "temp"],
        target="load",
        frequency=3600.0,
        seed=99,
    )
    first = app_for(model_repository, backend)
    async with AsyncTestClient(app=first) as c:
        await make_stream(c)
    before = await raw(backend, "s1")
    second = app_for(other, backend)
    async with AsyncTestClient(app=second) as c:
        r = await c.post("/v1/streams/s1/observations", json={"observations": [obs(10)]})
        assert r.status_code == 409
        assert r.json()["code"] == "state-mismatch"
        assert "re-warm" in r.json()["detail"]
        assert (await c.get("/v1/streams/s1")).json()["forecast"] is None
        # Re-warming with PUT is the way out.
        r = await c.put("/v1/streams/s1", json={"model": "demo-lstm", "history": [obs(0)]})
        assert r.status_code == 200
    assert await raw(backend, "s1") != before


async def test_corrupt_record_is_409_not_500(
    client: AsyncTestClient[Any], backend: StateStore
) -> None:
    key = stream_key("fcst", "default", "junk")
    await backend.put(key, b"not a record at all", 60.0)
    r = await client.post("/v1/streams/junk/observations", json={"observations": [obs(0)]})
    assert r.status_code == 409
    assert await backend.get(key) == b"not a record at all"


async def test_health_metrics_and_docs(client: AsyncTestClient[Any]) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200
    assert r.json()["store"] == "ok"
    assert set(r.json()["models"]) == {"demo-lstm/1", "demo-gru/1"}
    await make_stream(client)
    await client.post("/v1/streams/s1/observations", json={"observations": [obs(0), obs(9)]})
    text = (await client.get("/metrics")).text
    for needle in (
        'forecast_http_requests_total{method="POST",'
        'route="/v1/streams/{stream_id}/observations",status="200"} 1.0',
        'forecast_observations_applied_total{model="demo-lstm"} 4.0',
        'forecast_observations_skipped_total{model="demo-lstm"} 1.0',
        'forecast_inference_batch_rows_count{model="demo-lstm",version="1"}',
        'forecast_store_duration_seconds_count{op="cas_many"} 1.0',
        "forecast_batch_items_count 1.0",
        "forecast_active_streams 1.0",
        'forecast_model_info{kind="gru",model="demo-gru",'
        'providers="CPUExecutionProvider",version="1"} 1.0',
    ):
        assert needle in text, needle
    schema = (await client.get("/docs/openapi.json")).json()
    assert "/v1/streams/{stream_id}/observations" in schema["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_requests_no_route_answered_are_counted_too(client: AsyncTestClient[Any]) -> None:
    """404s and wrong methods never reach a route's middleware; they are counted all the same,
    under one bounded label, so a scanner or a broken client shows on the dashboard."""
    assert (await client.get("/no/such/path")).status_code == 404
    assert (await client.get("/no/other/path")).status_code == 404
    assert (await client.delete("/v1/models")).status_code == 405
    text = (await client.get("/metrics")).text
    unmatched = 'forecast_http_requests_total{method="%s",route="unmatched",status="%d"} %.1f'
    assert unmatched % ("GET", 404, 2) in text
    assert unmatched % ("DELETE", 405, 1) in text


async def test_store_outage_is_503_and_changes_nothing(model_repository: Path) -> None:
    from tests.support.redis_server import RedisServer

    server = RedisServer(appendonly=True)
    server.start()
    try:
        settings = Settings(
            model_repository=model_repository,
            providers="cpu",
            store_url=server.url,
            store_timeout_seconds=0.5,
        )
        async with AsyncTestClient(app=create_app(settings)) as c:
            await make_stream(c)
            before = (await c.get("/v1/streams/s1")).json()
            server.stop()
            r = await c.post("/v1/streams/s1/observations", json={"observations": [obs(5)]})
            assert r.status_code == 503
            assert r.headers["retry-after"].isdigit()
            assert r.json()["code"] == "store-unavailable"
            assert (await c.get("/health/ready")).status_code == 503
            assert (await c.get("/v1/streams/s1")).status_code == 503
            server.restart()
            assert (await c.get("/health/ready")).status_code == 200
            assert (await c.get("/v1/streams/s1")).json() == before
            r = await c.post("/v1/streams/s1/observations", json={"observations": [obs(5)]})
            assert r.status_code == 200
            assert r.json()["seq"] == 4
    finally:
        server.stop()

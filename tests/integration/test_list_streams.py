"""``GET /v1/streams`` over HTTP on every store, and through forecast_client on a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient

from forecast_client import AsyncForecastClient, BadRequest, ForecastClient, StreamSummary
from service.app import create_app
from service.settings import Settings
from tests.support.service_process import ServiceProcess

T0 = 1_800_000_000.0
ACME = "list-acme-writer-012345"
BETA = "list-beta-writer-012345"
KEYS = [
    {"key": ACME, "tenant": "acme", "role": "write"},
    {"key": BETA, "tenant": "beta", "role": "write"},
]


@pytest.fixture
async def client(model_repository: Path, store_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        model_repository=model_repository, providers="cpu", store_url=store_url, api_keys=KEYS
    )
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


async def pages(client: AsyncTestClient[Any], key: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        answer = await client.get("/v1/streams", params=params, headers=as_(key))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert len(body["streams"]) <= params.get("limit", 100)
        out += body["streams"]
        if body["next_cursor"] is None:
            return out
        params = {**params, "cursor": body["next_cursor"]}


async def test_pages_hold_the_tenants_streams_with_model_and_position(
    client: AsyncTestClient[Any],
) -> None:
    ids = [f"meter/{i:02d}" for i in range(12)] + ["pump {1}", "pump%"]
    for i, stream_id in enumerate(ids):
        model = "demo-gru" if i % 2 else "demo-lstm"
        path = "/v1/streams/" + quote(stream_id, safe="")
        assert (await client.put(path, json={"model": model}, headers=as_(ACME))).is_success
    reading = {"timestamp": T0, "values": [1.0, 2.0]}
    await client.post(
        "/v1/streams/pump%25/observations", json={"observations": [reading]}, headers=as_(ACME)
    )
    await client.put("/v1/streams/theirs", json={"model": "demo-lstm"}, headers=as_(BETA))

    listed = await pages(client, ACME, limit=5)
    assert sorted(s["stream_id"] for s in listed) == sorted(ids)
    pump = next(s for s in listed if s["stream_id"] == "pump%")
    assert pump == {
        "stream_id": "pump%",
        "model": {"name": "demo-gru", "version": 1},
        "seq": 1,
        "last_timestamp": "2027-01-15T08:00:00Z",
    }
    fresh = next(s for s in listed if s["stream_id"] == "meter/00")
    assert (fresh["seq"], fresh["last_timestamp"]) == (0, None)
    meters = await pages(client, ACME, prefix="meter/", limit=1000)
    assert sorted(s["stream_id"] for s in meters) == ids[:12]
    assert [s["stream_id"] for s in await pages(client, BETA)] == ["theirs"]


async def test_bad_cursors_and_limits_are_refused_as_problems(
    client: AsyncTestClient[Any],
) -> None:
    for i in range(3):
        await client.put(f"/v1/streams/s{i}", json={"model": "demo-lstm"}, headers=as_(ACME))
    first = (await client.get("/v1/streams", params={"limit": 1}, headers=as_(ACME))).json()
    cursor = first["next_cursor"]
    assert cursor
    for params, status, code in [
        ({"cursor": "garbage!"}, 400, "invalid-cursor"),
        ({"cursor": cursor[:-2]}, 400, "invalid-cursor"),
        ({"cursor": cursor, "prefix": "s1"}, 400, "invalid-cursor"),
        ({"limit": 0}, 422, "invalid-input"),
        ({"limit": 1001}, 422, "invalid-input"),
        ({"limit": "many"}, 422, "invalid-input"),
    ]:
        answer = await client.get("/v1/streams", params=params, headers=as_(ACME))
        assert (answer.status_code, answer.json()["code"]) == (status, code), params
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert (await client.get("/v1/streams")).status_code == 401


async def test_the_listing_is_documented(client: AsyncTestClient[Any]) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    operation = document["paths"]["/v1/streams"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"prefix", "limit", "cursor"}
    assert {"200", "4XX", "503"} <= set(operation["responses"])
    assert "invalid-cursor" in operation["description"]
    assert "next_cursor" in json.dumps(document["components"]["schemas"])


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceProcess]:
    with ServiceProcess({"FORECAST_API_KEYS": json.dumps(KEYS)}) as running:
        yield running


@pytest.mark.slow
async def test_the_client_iterates_every_page_sync_and_async(service: ServiceProcess) -> None:
    with ForecastClient(service.url, api_key=ACME) as sync:
        model = sync.models()[0].name
        for i in range(7):
            sync.create_stream(f"c-{i}", model)
        sync.create_stream("other", model)
        listed = list(sync.list_streams(prefix="c-", page_size=2))
        assert sorted(s.stream_id for s in listed) == [f"c-{i}" for i in range(7)]
        assert all(isinstance(s, StreamSummary) and s.model.name == model for s in listed)
        page = sync.stream_page(limit=3)
        assert len(page.streams) == 3
        assert page.next_cursor is not None
        with pytest.raises(BadRequest) as bad:
            sync.stream_page(cursor="nope")
        assert bad.value.code == "invalid-cursor"
    async with AsyncForecastClient(service.url, api_key=ACME) as aio:
        names = [s.stream_id async for s in aio.list_streams(page_size=3)]
        assert sorted(names) == sorted([f"c-{i}" for i in range(7)] + ["other"])
    with ForecastClient(service.url, api_key=BETA) as beta:
        assert list(beta.list_streams()) == []

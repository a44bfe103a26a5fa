"""``GET /v1/streams/{id}?readings=N``: a stream's recent readings beside its forecast.

In-process, against the embedded store and a real Redis (the readings come from the record's
kept history, so the codec of both stores is exercised).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from service.api.readings import readings_out
from service.app import create_app
from service.settings import Settings
from service.state.record import StreamRecord

T0 = 1_790_000_000.0


def reading(i: int) -> dict[str, Any]:
    # 0.1 steps are not float32 numbers: the answer must give them back as 0.1, not 0.100000001.
    return {"timestamp": T0 + 3600 * i, "values": [round(1.0 + 0.1 * i, 1), 20.0 - i]}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest, model_repository: Path
) -> AsyncIterator[AsyncTestClient[Any]]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings = Settings(
        model_repository=model_repository,
        providers="cpu",
        store_url=url,
        history_length=6,
        anomaly_margin=100.0,  # the untrained demo model's readings are never anomalies here
    )
    async with AsyncTestClient(app=create_app(settings)) as c:
        yield c


async def test_readings_come_only_when_asked_and_end_at_the_streams_position(
    client: AsyncTestClient[Any],
) -> None:
    r = await client.put(
        "/v1/streams/pump", json={"model": "demo-lstm", "history": [reading(i) for i in range(4)]}
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/streams/pump/observations", json={"observations": [reading(i) for i in range(4, 9)]}
    )
    assert r.status_code == 200, r.text

    plain = (await client.get("/v1/streams/pump")).json()
    assert "readings" not in plain

    r = await client.get("/v1/streams/pump", params={"readings": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: v for k, v in body.items() if k != "readings"} == plain
    assert body["readings"] == [
        {
            "timestamp": iso(reading(i)["timestamp"]),
            "values": reading(i)["values"],
            "anomaly": False,
        }
        for i in (6, 7, 8)
    ]
    assert body["readings"][-1]["timestamp"] == body["last_timestamp"].replace("+00:00", "Z")

    # More than the stream keeps (history_length=6): what it keeps.
    kept = (await client.get("/v1/streams/pump", params={"readings": 100})).json()["readings"]
    assert [x["values"] for x in kept] == [reading(i)["values"] for i in range(3, 9)]


async def test_a_stream_without_readings_answers_an_empty_list(
    client: AsyncTestClient[Any],
) -> None:
    assert (await client.put("/v1/streams/new", json={"model": "demo-gru"})).status_code == 201
    body = (await client.get("/v1/streams/new", params={"readings": 10})).json()
    assert body["readings"] == []
    assert body["seq"] == 0


@pytest.mark.parametrize("value", ["-1", "4097", "many"])
async def test_a_bad_count_is_a_422_naming_the_parameter(
    client: AsyncTestClient[Any], value: str
) -> None:
    assert (await client.put("/v1/streams/pump", json={"model": "demo-gru"})).status_code == 201
    r = await client.get("/v1/streams/pump", params={"readings": value})
    assert r.status_code in {400, 422}, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "readings" in r.text


async def test_an_unknown_stream_is_a_404_with_or_without_readings(
    client: AsyncTestClient[Any],
) -> None:
    for params in ({}, {"readings": 5}):
        r = await client.get("/v1/streams/nobody", params=params)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "unknown-stream"


async def test_the_openapi_document_describes_the_parameter_and_the_field(
    client: AsyncTestClient[Any],
) -> None:
    document = (await client.get("/docs/openapi.json")).json()
    operation = document["paths"]["/v1/streams/{stream_id}"]["get"]
    (param,) = [p for p in operation["parameters"] if p["name"] == "readings"]
    assert param["in"] == "query"
    assert not param.get("required", False)
    assert param["schema"]["minimum"] == 0
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    name = answer["$ref"].rsplit("/", 1)[-1]
    schema = document["components"]["schemas"][name]
    assert "readings" in schema["properties"]
    assert "readings" not in schema.get("required", [])


def test_readings_are_cut_at_a_position_when_the_record_moved_on() -> None:
    """What ``stream_with_readings`` falls back to when writers keep landing between reads."""
    record = StreamRecord(
        model="m",
        version=1,
        fingerprint="0" * 64,
        incarnation=1,
        seq=5,
        last_ts=50.0,
        state=np.zeros(2, dtype=np.float32),
        history_ts=np.array([10.0, 20.0, 30.0, 40.0, 50.0]),
        history_values=np.array([[1], [2], [3], [4], [5]], dtype=np.float32),
    )
    cut = readings_out(record, 2, until=30.0)
    assert [r.values for r in cut] == [[2.0], [3.0]]
    assert [r.values for r in readings_out(record, 10)] == [[1.0], [2.0], [3.0], [4.0], [5.0]]
    assert readings_out(record, 0) == []

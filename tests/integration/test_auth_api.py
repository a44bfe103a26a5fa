"""Keys, roles and tenant isolation over HTTP: REST and the v2 protocol, memory and Redis.

A tenant never sees, changes or learns about another tenant's streams, and a key with too
weak a role is refused (403) before anything is looked up, whether the stream exists or not.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import ApiKeyEntry, Settings
from service.state import open_store
from service.state.base import StateStore
from service.state.keys import stream_key

T0 = 1_790_000_000.0
KEYS = {
    "a-write": ("acme-writer-0123456789", "acme", "write"),
    "a-read": ("acme-reader-0123456789", "acme", "read"),
    "b-write": ("beta-writer-0123456789", "beta", "write"),
    "admin": ("ops-admin-000123456789", "ops", "admin"),
}


def key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name][0]}"}


def obs(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [1.0 + 0.1 * i, 20.0 - 0.05 * i]}


def v2_step(sequence_id: int | str, i: int, *, start: bool = False) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 1, 2], "data": [1.0 + i, 2.0]},
            {"name": "timestamp", "datatype": "FP64", "shape": [1, 1], "data": [T0 + 3600 * i]},
        ],
        "parameters": {"sequence_id": sequence_id, "sequence_start": start},
    }


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    store = open_store(url, timeout_seconds=1.0)
    store.url = url  # type: ignore[attr-defined]
    yield store
    await store.close()


def settings_for(repository: Path, url: str, **overrides: Any) -> Settings:
    entries = [
        ApiKeyEntry.model_validate({"key": k, "tenant": t, "role": r}) for k, t, r in KEYS.values()
    ]
    return Settings(
        model_repository=repository, providers="cpu", store_url=url, api_keys=entries, **overrides
    )


@pytest.fixture
async def client(
    model_repository: Path, backend: StateStore
) -> AsyncIterator[AsyncTestClient[Any]]:
    url: str = backend.url  # type: ignore[attr-defined]
    app = create_app(
        settings_for(model_repository, url), store=backend if url == "memory://" else None
    )
    async with AsyncTestClient(app=app) as c:
        yield c


async def snapshot(backend: StateStore, *ids: tuple[str, str]) -> list[bytes | None]:
    return [await backend.get(stream_key("fcst", t, s)) for t, s in ids]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/models", None),
        ("GET", "/v1/streams/s1", None),
        ("PUT", "/v1/streams/s1", {"model": "demo-lstm"}),
        ("DELETE", "/v1/streams/s1", None),
        ("POST", "/v1/streams/s1/observations", {"observations": [obs(0)]}),
        ("POST", "/v1/models/demo-lstm/forecast", {"series": [{"observations": [obs(0)]}]}),
        ("POST", "/v1/admin/models/reload", None),
        ("GET", "/v2", None),
        ("GET", "/v2/models/demo-lstm", None),
        ("POST", "/v2/models/demo-lstm/infer", v2_step(7, 0, start=True)),
    ],
)
async def test_no_key_or_a_wrong_key_is_401(
    client: AsyncTestClient[Any], method: str, path: str, body: Any
) -> None:
    for headers in ({}, {"X-API-Key": "wrong-key-000000000000"}, {"Authorization": "Bearer x"}):
        r = await client.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (path, headers, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
    # And nothing was created by the refused PUTs and steps.
    r = await client.get("/v1/streams/s1", headers=key("admin"))
    assert r.status_code == 404


async def test_both_header_forms_are_accepted(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/v1/models", headers={"X-API-Key": KEYS["a-read"][0]})
    assert r.status_code == 200
    r = await client.get("/v1/models", headers=key("a-read"))
    assert r.status_code == 200


async def test_open_paths_need_no_key(client: AsyncTestClient[Any]) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/docs/openapi.json"):
        assert (await client.get(path)).status_code == 200, path
    for path in ("/v2/health/live", "/v2/health/ready"):
        assert (await client.get(path)).status_code == 200, path


async def test_a_read_key_cannot_write_whether_or_not_the_stream_exists(
    client: AsyncTestClient[Any], backend: StateStore
) -> None:
    r = await client.put("/v1/streams/s1", json={"model": "demo-lstm"}, headers=key("a-write"))
    assert r.status_code == 201
    r = await client.post(
        "/v1/streams/s1/observations", json={"observations": [obs(0)]}, headers=key("a-write")
    )
    assert r.status_code == 200
    before = await snapshot(backend, ("acme", "s1"), ("acme", "absent"))

    answers = []
    for stream in ("s1", "absent"):
        for method, path, body in (
            ("PUT", f"/v1/streams/{stream}", {"model": "demo-gru"}),
            ("POST", f"/v1/streams/{stream}/observations", {"observations": [obs(1)]}),
            ("DELETE", f"/v1/streams/{stream}", None),
        ):
            r = await client.request(method, path, json=body, headers=key("a-read"))
            assert r.status_code == 403, (method, path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            answers.append((method, r.json()["detail"]))
    # The same answer for the existing stream and the absent one: existence does not leak.
    assert answers[:3] == answers[3:]
    assert await snapshot(backend, ("acme", "s1"), ("acme", "absent")) == before
    # Reading is what a read key is for.
    r = await client.get("/v1/streams/s1", headers=key("a-read"))
    assert r.status_code == 200
    assert r.json()["seq"] == 1


async def test_model_management_is_admin_only(client: AsyncTestClient[Any]) -> None:
    paths = [
        "/v1/admin/models/reload",
        "/v1/admin/models/demo-lstm/versions/1/unload",
        "/v1/admin/models/demo-lstm/versions/1/load",
    ]
    for name in ("a-read", "a-write", "b-write"):
        for path in paths:
            r = await client.post(path, headers=key(name))
            assert r.status_code == 403, (name, path, r.text)
    r = await client.get("/v1/models/demo-lstm", headers=key("a-read"))
    assert [v["version"] for v in r.json()["versions"]] == [1]  # nothing was unloaded
    r = await client.post("/v1/admin/models/reload", headers=key("admin"))
    assert r.status_code == 200
    assert sorted(r.json()["unchanged"]) == ["demo-gru/1", "demo-lstm/1"]


async def test_rest_streams_are_namespaced_by_tenant(
    client: AsyncTestClient[Any], backend: StateStore
) -> None:
    r = await client.put(
        "/v1/streams/pump",
        json={"model": "demo-lstm", "history": [obs(0), obs(1)]},
        headers=key("a-write"),
    )
    assert r.status_code == 201
    a_record = await backend.get(stream_key("fcst", "acme", "pump"))
    assert a_record is not None

    # Beta cannot read, observe into or delete acme's stream: to beta it does not exist.
    r = await client.get("/v1/streams/pump", headers=key("b-write"))
    assert r.status_code == 404
    r = await client.post(
        "/v1/streams/pump/observations", json={"observations": [obs(2)]}, headers=key("b-write")
    )
    assert r.status_code == 404
    r = await client.delete("/v1/streams/pump", headers=key("b-write"))
    assert r.status_code == 404
    assert await backend.get(stream_key("fcst", "acme", "pump")) == a_record

    # Beta's own stream of the same id is another stream.
    r = await client.put("/v1/streams/pump", json={"model": "demo-gru"}, headers=key("b-write"))
    assert r.status_code == 201
    r = await client.get("/v1/streams/pump", headers=key("b-write"))
    assert (r.json()["model"]["name"], r.json()["seq"]) == ("demo-gru", 0)
    r = await client.get("/v1/streams/pump", headers=key("a-read"))
    assert (r.json()["model"]["name"], r.json()["seq"]) == ("demo-lstm", 2)
    assert await backend.get(stream_key("fcst", "acme", "pump")) == a_record

    r = await client.delete("/v1/streams/pump", headers=key("b-write"))
    assert r.status_code == 204
    assert await backend.get(stream_key("fcst", "acme", "pump")) == a_record
    assert await backend.get(stream_key("fcst", "beta", "pump")) is None


async def test_v2_sequences_are_namespaced_by_tenant(
    client: AsyncTestClient[Any], backend: StateStore
) -> None:
    infer = "/v2/models/demo-lstm/infer"
    r = await client.post(infer, json=v2_step(42, 0, start=True), headers=key("a-write"))
    assert r.status_code == 200, r.text
    r = await client.post(infer, json=v2_step(42, 1), headers=key("a-write"))
    assert r.status_code == 200, r.text
    acme = await backend.get(stream_key("fcst", "acme", "v2:42"))
    assert acme is not None

    # Beta's step on sequence 42 finds no active sequence: acme's is not beta's.
    r = await client.post(infer, json=v2_step(42, 2), headers=key("b-write"))
    assert r.status_code == 400
    assert await backend.get(stream_key("fcst", "acme", "v2:42")) == acme

    # Beta starts its own 42; acme's keeps its two steps.
    r = await client.post(infer, json=v2_step(42, 5, start=True), headers=key("b-write"))
    assert r.status_code == 200
    r = await client.get("/v1/streams/v2:42", headers=key("a-read"))
    assert r.json()["seq"] == 2
    r = await client.get("/v1/streams/v2:42", headers=key("b-write"))
    assert r.json()["seq"] == 1
    assert await backend.get(stream_key("fcst", "acme", "v2:42")) == acme

    # A read key cannot step a sequence; the 403 comes before any lookup.
    r = await client.post(infer, json=v2_step(42, 3), headers=key("a-read"))
    assert r.status_code == 403
    assert "error" in r.json()  # the v2 error form, not problem+json
    assert await backend.get(stream_key("fcst", "acme", "v2:42")) == acme


async def test_quick_start_mode_is_open_and_says_so(
    model_repository: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(model_repository=model_repository, providers="cpu", tenant="demo"))
    with caplog.at_level(logging.WARNING, logger="service.api.auth"):
        async with AsyncTestClient(app=app) as c:
            r = await c.put("/v1/streams/s", json={"model": "demo-lstm"})
            assert r.status_code == 201
            r = await c.post("/v1/admin/models/reload")
            assert r.status_code == 200
            store = app.state.forecaster.store
            assert await store.get(stream_key("fcst", "demo", "s")) is not None
    assert any("authentication is OFF" in rec.getMessage() for rec in caplog.records)


async def test_required_mode_without_keys_does_not_start(model_repository: Path) -> None:
    from service.api.auth import AuthConfigError

    with pytest.raises(AuthConfigError):
        create_app(Settings(model_repository=model_repository, auth="required"))


async def test_bulk_observe_is_namespaced_by_tenant(
    client: AsyncTestClient[Any], backend: StateStore
) -> None:
    r = await client.put("/v1/streams/pump", json={"model": "demo-lstm"}, headers=key("a-write"))
    assert r.status_code == 201
    acme = await backend.get(stream_key("fcst", "acme", "pump"))
    body = {"streams": [{"stream_id": "pump", "observations": [obs(0)]}]}
    r = await client.post("/v1/observations", json=body, headers=key("b-write"))
    assert r.status_code == 200, r.text
    assert [item["status"] for item in r.json()["results"]] == [404]
    assert await backend.get(stream_key("fcst", "acme", "pump")) == acme
    r = await client.post("/v1/observations", json=body, headers=key("a-read"))
    assert r.status_code == 403
    assert await backend.get(stream_key("fcst", "acme", "pump")) == acme
    r = await client.post("/v1/observations", json=body, headers=key("a-write"))
    assert [item["status"] for item in r.json()["results"]] == [200]
    assert await backend.get(stream_key("fcst", "acme", "pump")) != acme

"""Each request's id: taken from X-Request-ID or made, returned, in every log line and error body.

The app runs in-process with the service's JSON log handler on the root logger, as
``python -m service`` installs it, so the lines read here are the lines a log collector gets.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.logs import JsonFormatter
from service.settings import Settings

HEX32 = re.compile(r"[0-9a-f]{32}")
T0 = 1_790_000_000.0


class Lines:
    """The JSON lines logged so far, parsed."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines()]

    def of(self, rid: str) -> list[dict[str, Any]]:
        return [entry for entry in self.all() if entry.get("request_id") == rid]

    def access(self, rid: str) -> dict[str, Any]:
        found = [e for e in self.of(rid) if e["logger"] == "service.access"]
        assert len(found) == 1, f"expected one access line for {rid}, got {found}"
        return found[0]


@pytest.fixture
def lines() -> Iterator[Lines]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield Lines(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def client(model_repository: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(model_repository=model_repository, providers="cpu"))
    async with AsyncTestClient(app=app) as c:
        yield c


async def test_an_incoming_id_is_kept_returned_and_logged(
    client: AsyncTestClient[Any], lines: Lines
) -> None:
    r = await client.get("/v1/models", headers={"X-Request-ID": "client-chosen-1"})
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "client-chosen-1"
    access = lines.access("client-chosen-1")
    assert access["level"] == "INFO"
    assert (access["method"], access["path"], access["route"], access["status"]) == (
        "GET",
        "/v1/models",
        "/v1/models",
        200,
    )
    assert access["duration_ms"] >= 0
    assert '"GET /v1/models HTTP/1.1" 200' in access["message"]


@pytest.mark.parametrize("incoming", [None, "has space", "x" * 200])
async def test_a_missing_or_unfit_id_is_replaced(
    client: AsyncTestClient[Any], lines: Lines, incoming: str | None
) -> None:
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    r = await client.get("/v1/models", headers=headers)
    made = r.headers["x-request-id"]
    assert HEX32.fullmatch(made)
    assert lines.access(made)["status"] == 200
    if incoming is not None:
        assert not lines.of(incoming)


async def test_every_request_gets_its_own_id(client: AsyncTestClient[Any]) -> None:
    ids = {(await client.get("/health/live")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


async def test_problem_bodies_carry_the_id(client: AsyncTestClient[Any], lines: Lines) -> None:
    r = await client.put("/v1/streams/s1", json={"model": "no-such-model"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["request_id"] == r.headers["x-request-id"]

    r = await client.post(
        "/v1/streams/s1/observations",
        headers={"X-Request-ID": "bad-body-1"},
        json={"observations": "not a list"},
    )
    assert r.status_code in (400, 422)
    assert r.json()["request_id"] == "bad-body-1"
    assert lines.access("bad-body-1")["status"] == r.status_code


async def test_unmatched_paths_and_methods_get_an_id_and_a_line(
    client: AsyncTestClient[Any], lines: Lines
) -> None:
    r = await client.get("/no/such/path", headers={"X-Request-ID": "nowhere-1"})
    assert r.status_code == 404
    assert r.json()["request_id"] == "nowhere-1"
    assert r.headers["x-request-id"] == "nowhere-1"
    access = lines.access("nowhere-1")
    assert (access["status"], access["route"]) == (404, None)

    r = await client.delete("/v1/models", headers={"X-Request-ID": "wrong-method-1"})
    assert r.status_code == 405
    assert r.json()["request_id"] == "wrong-method-1"
    assert lines.access("wrong-method-1")["status"] == 405


async def test_v2_errors_carry_the_id_beside_the_message(client: AsyncTestClient[Any]) -> None:
    r = await client.get("/v2/models/no-such-model", headers={"X-Request-ID": "v2-1"})
    assert r.status_code == 404
    assert r.json() == {"error": r.json()["error"], "request_id": "v2-1"}
    assert r.headers["x-request-id"] == "v2-1"


async def test_log_lines_made_inside_a_request_carry_its_id(
    client: AsyncTestClient[Any], lines: Lines
) -> None:
    """Unloading a version logs from the registry, in a worker thread: the id follows it."""
    r = await client.post(
        "/v1/admin/models/demo-gru/versions/1/unload", headers={"X-Request-ID": "unload-1"}
    )
    assert r.status_code == 200, r.text
    mine = lines.of("unload-1")
    assert any(e["logger"] == "service.registry" and "retired" in e["message"] for e in mine)
    assert mine[-1]["logger"] == "service.access"


async def test_health_probes_are_logged_at_debug(
    client: AsyncTestClient[Any], lines: Lines
) -> None:
    r = await client.get("/health/ready")
    assert r.status_code == 200
    assert not lines.of(r.headers["x-request-id"])  # INFO handler: the DEBUG line is dropped


async def test_websocket_connections_are_logged_with_their_id(
    client: AsyncTestClient[Any], lines: Lines
) -> None:
    with await client.websocket_connect("/v1/ws", headers={"X-Request-ID": "socket-1"}) as ws:
        ws.send_json({"stream_id": "nope", "observations": [{"timestamp": T0, "values": [1, 2]}]})
        answer = ws.receive_json()
    assert answer["status"] == 404
    # The server side finishes (and logs) once it has seen the close.
    deadline = time.monotonic() + 5.0
    while not lines.of("socket-1"):
        assert time.monotonic() < deadline, "no access line for the WebSocket"
        await asyncio.sleep(0.02)
    access = lines.access("socket-1")
    assert (access["method"], access["status"], access["route"]) == ("WS", 101, "/v1/ws")

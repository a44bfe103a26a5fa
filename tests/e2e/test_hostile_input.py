"""Hostile input against every POST/PUT/DELETE route of the OpenAPI document, and the WebSocket.

A table of bodies and path parameters an attacker (or a broken client) sends: JSON nested
thousands deep, tensors of rank over 64, readings in year 9999, ids with a newline or of
20,000 characters, invalid UTF-8, NaN and Infinity literals, numbers no float holds. Against
a real server process on a real Redis, every answer must be a 4xx in the interface's error
form (problem+json on REST, ``{"error": ...}`` under /v2, an answer carrying the message's
``id`` on the WebSocket), and the store must be byte for byte what it was (DUMP of every key,
before and after, as the schema fuzzer checks).

Routes come from the app's own OpenAPI document, so a new route without a row here fails;
the GET routes with path parameters get the hostile paths too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from websockets.sync import client as ws_client

from service.app import create_app
from service.settings import Settings
from tests.support.demo_repository import build_demo_repository
from tests.support.redis_server import RedisServer
from tests.support.service_process import ServiceProcess

pytestmark = pytest.mark.slow

#: A database of the session's Redis that only this module uses.
DB = 9
T0 = 1_800_000_000.0

# --- the bodies each route takes, with holes the cases fill --------------------------------

READING = b'{"timestamp": @TS@, "values": @VALUES@}'
X = b'{"name": "x", "datatype": "FP32", "shape": @SHAPE@, "data": @VALUES@}'
TIMES = b'{"name": "timestamp", "datatype": "FP64", "shape": [1, 1], "data": [@EPOCH@]}'
V2 = b'{"inputs": [' + X + b", " + TIMES + b'], "parameters": {"sequence_id": @SID@}}'
BODIES: dict[tuple[str, str], bytes] = {
    ("PUT", "/v1/streams/{stream_id}"): b'{"model": "demo-lstm", "history": [' + READING + b"]}",
    ("POST", "/v1/streams/{stream_id}/observations"): b'{"observations": [' + READING + b"]}",
    ("POST", "/v1/observations"): (
        b'{"streams": [{"id": 1, "stream_id": @SID@, "observations": [' + READING + b"]}]}"
    ),
    ("POST", "/v1/models/{name}/forecast"): b'{"series": [{"observations": [' + READING + b"]}]}",
    ("POST", "/v2/models/{name}/infer"): V2,
    ("POST", "/v2/models/{name}/versions/{version}/infer"): V2,
    # The repository extension: only whole-body cases and hostile names apply.
    ("POST", "/v2/repository/index"): b'{"ready": true}',
    ("POST", "/v2/repository/models/{name}/load"): b'{"parameters": {}}',
    ("POST", "/v2/repository/models/{name}/unload"): b'{"parameters": {}}',
}
#: Routes that take no body: only their path can be hostile.
NO_BODY = {
    ("DELETE", "/v1/streams/{stream_id}"),
    ("POST", "/v1/admin/models/reload"),
    ("POST", "/v1/admin/models/{name}/versions/{version}/load"),
    ("POST", "/v1/admin/models/{name}/versions/{version}/unload"),
}
#: A valid filling of every hole: the stream ``s`` exists, a reading after its last one.
VALID = {
    b"@TS@": b'"2027-01-15T08:00:00Z"',
    b"@EPOCH@": b"1800003600.0",
    b"@VALUES@": b"[1.0, 2.0]",
    b"@SHAPE@": b"[1, 1, 2]",
    b"@SID@": b'"s"',
}
PATH_VALID = {"stream_id": "s", "name": "demo-lstm", "version": "1"}

DEEP = 5000
ONES_65 = b"[" + b", ".join([b"1"] * 65) + b"]"

#: Body cases: a whole body, or holes filled with hostile text (a case applies to the
#: routes whose body has one of its holes).
BODY_CASES: dict[str, bytes | dict[bytes, bytes]] = {
    "object nested 5,000 deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "array nested 5,000 deep": b"[" * DEEP + b"]" * DEEP,
    "values nested 100 deep": {b"@VALUES@": b"[" * 100 + b"1.0" + b"]" * 100},
    "tensor of rank 65": {b"@SHAPE@": ONES_65, b"@VALUES@": b"[1.0]"},
    "axis past 2**63": {b"@SHAPE@": b"[0, 99999999999999999999, 2]", b"@VALUES@": b"[]"},
    "year 9999": {b"@TS@": b'"9999-12-31T23:59:59Z"', b"@EPOCH@": b"253402300799.0"},
    "year 1": {b"@TS@": b'"0001-01-01T00:00:00+05:00"', b"@EPOCH@": b"-62135596800.0"},
    "milliseconds as seconds": {b"@TS@": b"1.8e15", b"@EPOCH@": b"1.8e12"},
    "newline id": {b"@SID@": b'"evil\\n"'},
    "line separator id": {b"@SID@": b'"evil\\u2028"'},
    "NUL id": {b"@SID@": b'"a\\u0000b"'},
    "lone surrogate id": {b"@SID@": b'"\\ud800"'},
    "20k-character id": {b"@SID@": b'"' + b"x" * 20_000 + b'"'},
    "invalid UTF-8": {b"@TS@": b'"2027-01-15T08:00:00Z\xff"', b"@SID@": b'"s\xff"'},
    "NaN literal": {b"@VALUES@": b"[NaN, 1.0]", b"@EPOCH@": b"NaN"},
    "Infinity literal": {b"@VALUES@": b"[Infinity, 1.0]", b"@EPOCH@": b"-Infinity"},
    "1e400": {b"@VALUES@": b"[1e400, 1.0]", b"@EPOCH@": b"1e400"},
    "5,000-digit integer": {b"@VALUES@": b"[" + b"9" * 5000 + b", 1.0]"},
    "float32 overflow": {b"@VALUES@": b"[1e300, 1.0]"},
    "timestamp of the wrong type": {b"@TS@": b"[]", b"@EPOCH@": b'"soon"'},
}
#: Path cases: one path parameter replaced by hostile text (already percent-encoded).
PATH_CASES: dict[str, dict[str, str]] = {
    "newline": {p: quote("evil\n", safe="") for p in ("stream_id", "name", "version")},
    "NUL": dict.fromkeys(("stream_id", "name", "version"), "a%00b"),
    "line separator": {p: quote("a\u2028b", safe="") for p in ("stream_id", "name")},
    "20k characters": dict.fromkeys(("stream_id", "name", "version"), "x" * 20_000),
    "invalid UTF-8": dict.fromkeys(("stream_id", "name", "version"), "%FF"),
    "dot dot slash": {"name": quote("../demo-lstm", safe=""), "stream_id": "%2E%2E%2F%00"},
    "superscript digit": {"version": quote("\u00b2", safe="")},
    "5,000 digits": {"version": "9" * 5000},
    "zero": {"version": "0"},
}


@dataclass(frozen=True)
class Call:
    case: str
    method: str
    template: str
    path: str
    body: bytes | None


def fill(template: bytes, holes: dict[bytes, bytes]) -> bytes:
    for hole, text in {**VALID, **holes}.items():
        template = template.replace(hole, text)
    return template


def path_of(template: str, values: dict[str, str]) -> str:
    for name, value in {**PATH_VALID, **values}.items():
        template = template.replace("{" + name + "}", value)
    return template


def calls(routes: set[tuple[str, str]]) -> list[Call]:
    out: list[Call] = []
    for method, template in sorted(routes):
        body = BODIES.get((method, template))
        if body is not None:
            for case, hostile in BODY_CASES.items():
                if isinstance(hostile, bytes):
                    out.append(Call(case, method, template, path_of(template, {}), hostile))
                elif any(hole in body for hole in hostile):
                    out.append(
                        Call(case, method, template, path_of(template, {}), fill(body, hostile))
                    )
        params = {p for p in PATH_VALID if "{" + p + "}" in template}
        for case, values in PATH_CASES.items():
            for param in sorted(params & set(values)):
                valid = None if body is None else fill(body, {})
                path = path_of(template, {param: values[param]})
                out.append(Call(f"{case} {param}", method, template, path, valid))
    return out


# --- the server -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_repository(tmp_path_factory.mktemp("hostile") / "models")


@pytest.fixture(scope="module")
def routes(repository: Path) -> set[tuple[str, str]]:
    """Every POST, PUT and DELETE operation the app documents, and every GET with a path
    parameter (only their paths can be hostile)."""
    document = create_app(Settings(model_repository=repository, providers="cpu")).openapi_schema
    paths = document.to_schema()["paths"]
    found = {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in {"post", "put", "delete"}
    }
    assert found == set(BODIES) | NO_BODY, "a route has no row in this table"
    reads = {("GET", path) for path, item in paths.items() if "get" in item and "{" in path}
    assert ("GET", "/v1/streams/{stream_id}/forecasts") in reads
    return found | reads


@pytest.fixture(scope="module")
def service(
    redis_server: RedisServer, repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    with redis.Redis(port=redis_server.port, db=DB) as client:
        client.flushdb()
    env = {
        "FORECAST_MODEL_REPOSITORY": str(repository),
        "FORECAST_STORE_URL": f"redis://127.0.0.1:{redis_server.port}/{DB}",
    }
    log = tmp_path_factory.mktemp("hostile-logs") / "service.log"
    with ServiceProcess(env, log=log) as process:
        history = [{"timestamp": T0, "values": [1.0, 2.0]}]
        r = httpx.put(
            f"{process.url}/v1/streams/s", json={"model": "demo-lstm", "history": history}
        )
        assert r.status_code == 201, r.text
        step = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 2], "data": [1, 2]}],
            "parameters": {"sequence_id": "s", "sequence_start": True},
        }
        assert httpx.post(f"{process.url}/v2/models/demo-lstm/infer", json=step).is_success
        yield process
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
    assert "Task exception" not in text, text[-4000:]


def snapshot(port: int) -> dict[bytes, bytes | None]:
    with redis.Redis(port=port, db=DB, socket_timeout=5.0) as client:
        return {key: client.dump(key) for key in sorted(client.keys("*"))}


BULK = ("POST", "/v1/observations")


def check_problem(body: dict[str, Any], status: int) -> None:
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status


def check_refused(call: Call, response: httpx.Response) -> None:
    """A 4xx in the interface's error form; a bulk request answers each stream on its own,
    so there a 200 whose every stream is refused (a problem body each) refuses it too."""
    body = response.json()
    if (call.method, call.template) == BULK and response.status_code == 200:
        for result in body["results"]:
            assert 400 <= result["status"] < 500, result
            check_problem(result["error"], result["status"])
        return
    assert 400 <= response.status_code < 500, response.text[:300]
    media = response.headers.get("content-type", "").split(";")[0]
    if call.path.startswith("/v2"):
        assert media == "application/json", media
        assert isinstance(body["error"], str)
    else:
        assert media == "application/problem+json", media
        check_problem(body, response.status_code)


# --- the tests --------------------------------------------------------------------------------


def test_every_route_refuses_every_hostile_input_and_changes_nothing(
    routes: set[tuple[str, str]], service: ServiceProcess, redis_server: RedisServer
) -> None:
    table = calls(routes)
    covered = {(c.method, c.template) for c in table}
    assert covered == routes - {("POST", "/v1/admin/models/reload")}  # no path, no body
    failures: list[str] = []
    with httpx.Client(base_url=service.url, timeout=30.0) as http:
        for call in table:
            before = snapshot(redis_server.port)
            response = http.request(
                call.method,
                call.path,
                content=call.body,
                headers={"content-type": "application/json"} if call.body is not None else {},
            )
            where = f"{call.case}: {call.method} {call.template} -> {response.status_code}"
            try:
                check_refused(call, response)
                assert snapshot(redis_server.port) == before, "the store changed"
            except (AssertionError, ValueError, KeyError) as exc:
                failures.append(f"{where}: {exc}")
    assert not failures, "\n".join(failures)
    assert len(table) > 150


#: The WebSocket's two message forms, with the body holes.
WS_MESSAGES = {
    "single": b'{"id": "m1", "stream_id": @SID@, "observations": [' + READING + b"]}",
    "bulk": (
        b'{"id": "m1", "streams": [{"id": "m1", "stream_id": @SID@, "observations": ['
        + READING
        + b"]}]}"
    ),
}


def test_the_websocket_answers_every_hostile_message_and_changes_nothing(
    service: ServiceProcess, redis_server: RedisServer
) -> None:
    failures: list[str] = []
    with ws_client.connect(
        f"ws://127.0.0.1:{service.port}/v1/ws", open_timeout=10, max_size=None
    ) as ws:
        for form, template in WS_MESSAGES.items():
            for case, hostile in BODY_CASES.items():
                if isinstance(hostile, bytes):
                    message = b'{"id": "m1", "x": ' + hostile + b"}"
                elif any(hole in template for hole in hostile):
                    message = fill(template, hostile)
                else:
                    continue
                before = snapshot(redis_server.port)
                # Text frames must be UTF-8; invalid UTF-8 goes as a binary frame.
                try:
                    ws.send(message.decode("utf-8"))
                except UnicodeDecodeError:
                    ws.send(message)
                answer: dict[str, Any] = json.loads(ws.recv(timeout=30))
                try:
                    assert answer.get("id") == "m1", "the answer lost the message's id"
                    outcome = answer
                    if "results" in answer:  # the bulk form: the stream's own answer
                        (outcome,) = answer["results"]
                        assert outcome.get("id") == "m1", "the answer lost the stream's id"
                    assert 400 <= outcome["status"] < 500, answer
                    assert outcome["error"]["status"] == outcome["status"]
                    assert snapshot(redis_server.port) == before, "the store changed"
                except (AssertionError, KeyError, ValueError) as exc:
                    failures.append(f"{form} {case}: {exc}: {json.dumps(answer)[:300]}")
        # The socket is still open and serves a good message after all that.
        ws.send(fill(WS_MESSAGES["single"], {}).decode())
        good = json.loads(ws.recv(timeout=30))
    assert not failures, "\n".join(failures)
    assert good["status"] == 200, good

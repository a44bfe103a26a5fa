"""OpenTelemetry spans of the request, the batch, the store calls and the model call.

The app runs with the SDK's in-memory exporter; every finished span is read back and the
tree is checked: parents by span id, links from a batch to each request it served, and the
caller's W3C trace continued. With tracing off, OpenTelemetry is never imported.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from litestar.testing import TestClient

from service.app import create_app
from service.logs import JsonFormatter
from service.settings import Settings
from service.tracing import Tracing
from tests.support.inprocess import served
from tests.support.service_process import ROOT

sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind  # noqa: E402

T0 = 1_790_000_000.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def obs(i: int) -> dict[str, Any]:
    return {"timestamp": T0 + 3600 * i, "values": [1.0 + 0.1 * i, 20.0]}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(params=["memory", "redis"])
async def client(
    request: pytest.FixtureRequest, model_repository: Path, exporter: InMemorySpanExporter
) -> AsyncIterator[httpx.AsyncClient]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # A delay long enough that requests sent together share one batch.
    settings = Settings(
        model_repository=model_repository, providers="cpu", store_url=url, batch_max_delay_ms=50
    )
    app = create_app(settings, tracing=Tracing(provider))
    with served(app) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            yield c
    provider.shutdown()


async def finished(exporter: InMemorySpanExporter, *names: str) -> list[ReadableSpan]:
    """The finished spans once one of each of ``names`` is among them: the server span ends
    just after its answer went out, and a batch's span just after the answers it made."""
    deadline = time.monotonic() + 5
    while True:
        spans = list(exporter.get_finished_spans())
        if {s.name for s in spans} >= set(names) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.01)


def by_id(spans: list[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in spans}


def server_span(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.kind == SpanKind.SERVER and s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


async def test_observe_request_batch_store_and_model_spans(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    r = await client.put("/v1/streams/s1", json={"model": "demo-lstm"})
    assert r.status_code == 201
    exporter.clear()
    r = await client.post("/v1/streams/s1/observations", json={"observations": [obs(0), obs(1)]})
    assert r.status_code == 200
    route = "POST /v1/streams/{stream_id}/observations"
    spans = await finished(exporter, "observe-batcher", route)

    request = server_span(spans, "POST /v1/streams/{stream_id}/observations")
    assert request.parent is None
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["http.route"] == "/v1/streams/{stream_id}/observations"

    (batch,) = [s for s in spans if s.name == "observe-batcher"]
    assert batch.parent is not None
    assert batch.parent.span_id == request.context.span_id
    assert batch.context.trace_id == request.context.trace_id
    assert [link.context.span_id for link in batch.links] == [request.context.span_id]

    under_batch = {s.name for s in children(spans, batch)}
    assert "infer demo-lstm" in under_batch
    assert {n for n in under_batch if n.startswith("store ")}, under_batch
    (model,) = [s for s in spans if s.name == "infer demo-lstm"]
    assert model.attributes is not None
    assert (model.attributes["model.batch"], model.attributes["model.steps"]) == (1, 2)
    for store in (s for s in spans if s.name.startswith("store ")):
        assert store.kind == SpanKind.CLIENT
        assert store.parent is not None
        assert store.parent.span_id in {batch.context.span_id, request.context.span_id}
    # Every span of this request is in its trace, and no span is left without its parent.
    ids = by_id(spans)
    for s in spans:
        assert s.context.trace_id == request.context.trace_id
        assert s.parent is None or s.parent.span_id in ids


async def test_one_batch_links_every_request_it_served(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    for i in range(3):
        r = await client.put(f"/v1/streams/b{i}", json={"model": "demo-gru"})
        assert r.status_code == 201
    exporter.clear()
    answers = await asyncio.gather(
        *(
            client.post(f"/v1/streams/b{i}/observations", json={"observations": [obs(0)]})
            for i in range(3)
        )
    )
    assert [a.status_code for a in answers] == [200, 200, 200]
    deadline = time.monotonic() + 5
    while True:  # every batch span ends a little after the answers it made
        spans = list(exporter.get_finished_spans())
        links = sum(len(s.links) for s in spans if s.name == "observe-batcher")
        served = sum(s.kind == SpanKind.SERVER for s in spans)
        if (links >= 3 and served >= 3) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    requests = [s for s in spans if s.kind == SpanKind.SERVER]
    assert len(requests) == 3
    batches = [s for s in spans if s.name == "observe-batcher"]
    linked = [link.context.span_id for b in batches for link in b.links]
    # Each request is linked from the batch that served it, exactly once.
    assert sorted(linked) == sorted(s.context.span_id for s in requests)
    assert len(batches) < 3, "the requests were meant to share a batch"
    for b in batches:
        assert b.parent is not None
        assert b.parent.span_id == b.links[0].context.span_id
        assert b.attributes is not None
        assert b.attributes["batch.items"] == len(b.links)


async def test_stateless_forecast_runs_the_model_under_the_request(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    body = {"series": [{"observations": [obs(i) for i in range(4)]}]}
    r = await client.post("/v1/models/demo-lstm/forecast", json=body)
    assert r.status_code == 200
    spans = await finished(exporter, "POST /v1/models/{name}/forecast")
    request = server_span(spans, "POST /v1/models/{name}/forecast")
    (model,) = [s for s in spans if s.name == "infer demo-lstm"]
    assert model.parent is not None
    assert model.parent.span_id == request.context.span_id


async def test_the_callers_trace_is_continued_and_errors_marked(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    exporter.clear()
    traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
    r = await client.get("/v1/streams/nope", headers={"traceparent": traceparent})
    assert r.status_code == 404
    spans = await finished(exporter, "GET /v1/streams/{stream_id}")
    (span,) = [s for s in spans if s.kind == SpanKind.SERVER]
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.parent.is_remote

    exporter.clear()
    r = await client.get("/no/such/route")
    assert r.status_code == 404
    (span,) = await finished(exporter, "GET")
    assert span.name == "GET"  # unrouted: no template to name it after
    assert span.attributes is not None
    assert span.attributes["http.response.status_code"] == 404


async def test_log_lines_carry_the_trace_and_span_ids(
    client: httpx.AsyncClient, exporter: InMemorySpanExporter
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("service.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        exporter.clear()
        r = await client.get("/v1/models")
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    (span,) = await finished(exporter, "GET /v1/models")
    assert line["trace_id"] == f"{span.context.trace_id:032x}"
    assert line["span_id"] == f"{span.context.span_id:016x}"
    assert line["request_id"] == r.headers["x-request-id"]


def test_tracing_off_needs_no_opentelemetry(model_repository: Path) -> None:
    """Off is free: with OpenTelemetry unimportable the app builds and serves, and the
    service's own tracing, logging and middleware modules import none of it.

    (redis-py imports OpenTelemetry by itself when it is installed; that is its business.)
    """
    code = f"""
import sys
from service import tracing, logs, batching
from service.api import access
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Blocked())
from litestar.testing import TestClient
from service.app import create_app
from service.settings import Settings
app = create_app(Settings(model_repository={str(model_repository)!r}, providers="cpu"))
with TestClient(app) as c:
    assert c.put("/v1/streams/a", json={{"model": "demo-lstm"}}).status_code == 201
    body = {{"observations": [{{"timestamp": 1.0e9, "values": [1.0, 2.0]}}]}}
    assert c.post("/v1/streams/a/observations", json=body).status_code == 200
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORECAST_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"


def test_an_endpoint_without_the_extra_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, model_repository: Path
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    settings = Settings(
        model_repository=model_repository, providers="cpu", otel_endpoint="http://127.0.0.1:1"
    )
    with pytest.raises(RuntimeError, match=r"stateful-forecast\[otel\]"):
        create_app(settings)


class Collector(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps each export request's path, content type and body."""

    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_spans_reach_an_otlp_collector(
    model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FORECAST_OTEL_ENDPOINT as a user sets it: spans arrive over OTLP/HTTP, named."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    Collector.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/"
        settings = Settings(
            model_repository=model_repository, providers="cpu", otel_endpoint=endpoint
        )
        with TestClient(create_app(settings)) as c:
            assert c.get("/v1/models").status_code == 200
        # Leaving the client ran the lifespan's end, which flushes the exporter.
    finally:
        server.shutdown()
        server.server_close()
    assert Collector.received, "no export request reached the collector"
    path, content_type, _ = Collector.received[0]
    assert (path, content_type) == ("/v1/traces", "application/x-protobuf")
    names, services = set(), set()
    for _, _, body in Collector.received:
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            for attribute in resource_spans.resource.attributes:
                if attribute.key == "service.name":
                    services.add(attribute.value.string_value)
            for scope_spans in resource_spans.scope_spans:
                names |= {span.name for span in scope_spans.spans}
    assert "GET /v1/models" in names
    assert services == {"stateful-forecast"}

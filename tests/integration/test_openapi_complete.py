"""The OpenAPI document is complete: valid OpenAPI 3.1, every operation described, every body
and typed answer with an example that its own schema accepts, and the forms Litestar cannot
see (201 with Location, server-sent events, either form of a time, the WebSocket's messages)
described as the service really answers them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient
from openapi_spec_validator import validate

from service.app import create_app
from service.settings import Settings

METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture
def app(model_repository: Path) -> Any:
    return create_app(Settings(model_repository=model_repository, providers="cpu"))


@pytest.fixture
def document(app: Any) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi_schema.to_schema()
    return schema


def check(document: dict[str, Any], instance: Any, schema: dict[str, Any]) -> None:
    """``instance`` against ``schema``, its references resolved in ``document``."""
    root = {**schema, "components": document["components"]}
    jsonschema.Draft202012Validator(root).validate(instance)


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, item[method])
        for path, item in document["paths"].items()
        for method in METHODS
        if method in item
    ]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_operation_is_described_with_examples_that_fit(document: dict[str, Any]) -> None:
    missing: list[str] = []
    for method, path, operation in operations(document):
        where = f"{method.upper()} {path}"
        if not operation.get("description"):
            missing.append(f"{where}: no description")
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is not None:
            if "example" not in body:
                missing.append(f"{where}: request body without an example")
            else:
                check(document, body["example"], body["schema"])
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                continue
            for media, content in response.get("content", {}).items():
                schema = content.get("schema", {})
                if media == "application/json":
                    if (
                        schema in ({}, {"type": "object"})
                        or schema.get("additionalProperties") == {}
                    ):
                        missing.append(f"{where} {status}: an untyped answer {schema}")
                    if "example" not in content:
                        missing.append(f"{where} {status}: an answer without an example")
                    else:
                        check(document, content["example"], schema)
    assert not missing, "\n".join(missing)


def test_the_forms_litestar_cannot_see(document: dict[str, Any]) -> None:
    put = document["paths"]["/v1/streams/{stream_id}"]["put"]["responses"]
    assert "Location" in put["201"]["headers"]
    assert "200" in put

    events = document["paths"]["/v1/streams/{stream_id}/forecasts"]["get"]["responses"]["200"]
    assert list(events["content"]) == ["text/event-stream"]

    reading = document["components"]["schemas"]["ObservationIn"]
    for timestamp in ("2026-11-23T08:00:00Z", 1_795_420_800, 1_795_420_800.5):
        check(document, {"timestamp": timestamp, "values": [1.0, 2.0]}, reading)
    with pytest.raises(jsonschema.ValidationError):
        check(document, {"timestamp": True, "values": [1.0]}, reading)

    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["example"]["inputs"]
    for path in ("/v2", "/v2/models/{name}", "/v2/models/{name}/config", "/v2/repository/index"):
        operation = document["paths"][path]["get" if path != "/v2/repository/index" else "post"]
        assert "$ref" in str(operation["responses"]["200"]["content"]["application/json"])


async def test_answers_and_websocket_messages_fit_the_document(
    app: Any, document: dict[str, Any]
) -> None:
    schemas = document["components"]["schemas"]
    async with AsyncTestClient(app=app) as client:
        history = [{"timestamp": 1_795_420_800, "values": [1.0, 2.0]}]
        r = await client.put(
            "/v1/streams/pump%2F7", json={"model": "demo-lstm", "history": history}
        )
        assert r.status_code == 201, r.text
        assert r.headers["location"] == "/v1/streams/pump%2F7"
        check(document, r.json(), schemas["ObserveOut"])
        r = await client.put("/v1/streams/pump%2F7", json={"model": "demo-lstm"})
        assert r.status_code == 200
        assert "location" not in r.headers

        for path, name in (("/v1/models", "ModelsOut"), ("/v1/models/demo-lstm", "ModelDetailOut")):
            check(document, (await client.get(path)).json(), schemas[name])

        message = {
            "stream_id": "pump/7",
            "observations": [{"timestamp": "2026-11-23T09:00:00Z", "values": [3.0, 4.0]}],
        }
        check(document, message, schemas["WebSocketMessage"])
        with await client.websocket_connect("/v1/ws") as socket:
            socket.send_json(message)
            check(document, socket.receive_json(), schemas["WebSocketAnswer"])
            socket.send_text("{not json")
            check(document, socket.receive_json(), schemas["WebSocketAnswer"])

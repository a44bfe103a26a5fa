"""The served OpenAPI document describes the error bodies and v2 responses really sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.settings import Settings


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its references inlined from ``document`` (enough for these checks)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return resolve(document, document["components"]["schemas"][name])
    return {
        key: (
            resolve(document, value)
            if isinstance(value, dict)
            else [resolve(document, v) if isinstance(v, dict) else v for v in value]
            if isinstance(value, list)
            else value
        )
        for key, value in schema.items()
    }


def response_schema(document: dict[str, Any], path: str, method: str, status: str) -> Any:
    response = document["paths"][path][method]["responses"][status]
    return {media: resolve(document, body["schema"]) for media, body in response["content"].items()}


async def test_errors_are_documented_as_sent(model_repository: Path) -> None:
    app = create_app(Settings(model_repository=model_repository, providers="cpu"))
    async with AsyncTestClient(app=app) as client:
        document = (await client.get("/docs/openapi.json")).json()

        rest = response_schema(document, "/v1/streams/{stream_id}/observations", "post", "4XX")
        r = await client.post("/v1/streams/nope/observations", json={"observations": []})
        assert r.status_code == 422
        media = r.headers["content-type"].split(";")[0]
        jsonschema.validate(r.json(), rest[media])

        r = await client.get("/v1/streams/absent")
        assert r.status_code == 404
        get_errors = response_schema(document, "/v1/streams/{stream_id}", "get", "4XX")
        jsonschema.validate(r.json(), get_errors[r.headers["content-type"].split(";")[0]])

        v2 = response_schema(document, "/v2/models/{name}/infer", "post", "4XX")
        r = await client.post("/v2/models/demo-lstm/infer", json={"inputs": []})
        assert r.status_code == 400
        jsonschema.validate(r.json(), v2[r.headers["content-type"].split(";")[0]])

        ok = response_schema(document, "/v2/models/{name}/infer", "post", "200")
        body = {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2, 2], "data": [1, 2, 3, 4]}]
        }
        r = await client.post("/v2/models/demo-lstm/infer", json=body)
        assert r.status_code == 200
        jsonschema.validate(r.json(), ok["application/json"])
        assert "application/octet-stream" in ok

        # The open probes keep their own 503 body: no Problem is claimed for them, and no key.
        assert "4XX" not in document["paths"]["/health/ready"]["get"]["responses"]
        assert "security" not in document["paths"]["/health/ready"]["get"]
        # Guarded operations name both headers that may carry the key.
        schemes = document["components"]["securitySchemes"]
        assert schemes["apiKey"] == {"type": "apiKey", "name": "X-API-Key", "in": "header"}
        assert schemes["bearer"]["scheme"] == "bearer"
        assert document["paths"]["/v1/models"]["get"]["security"] == [
            {"bearer": []},
            {"apiKey": []},
        ]

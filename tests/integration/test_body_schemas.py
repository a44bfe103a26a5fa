"""The request bodies decoded by msgspec are documented exactly as their pydantic models.

The reference: an app whose handlers take the pydantic models as Litestar's ``data`` (how
the service declared its bodies before they were decoded with msgspec). Every operation's
request body and every schema it reaches must be the same in the served document (both
completed by ``service.api.openapi_complete``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Litestar, post, put
from litestar.params import FromPath, JSONBody

from service.api.openapi_complete import complete
from service.api.requests import BulkObserveRequest, ForecastRequest, ObserveRequest, StreamCreate
from service.app import create_app
from service.settings import Settings

BODIES = {
    ("/v1/streams/{stream_id}/observations", "post"): ObserveRequest,
    ("/v1/streams/{stream_id}", "put"): StreamCreate,
    ("/v1/models/{name}/forecast", "post"): ForecastRequest,
    ("/v1/observations", "post"): BulkObserveRequest,
}


def reference_document() -> dict[str, Any]:
    @post("/observe/{stream_id:str}", status_code=200)
    async def observe(stream_id: FromPath[str], data: JSONBody[ObserveRequest]) -> None: ...

    @put("/create/{stream_id:str}")
    async def create(stream_id: FromPath[str], data: JSONBody[StreamCreate]) -> None: ...

    @post("/forecast", status_code=200)
    async def forecast(data: JSONBody[ForecastRequest]) -> None: ...

    @post("/bulk", status_code=200)
    async def bulk(data: JSONBody[BulkObserveRequest]) -> None: ...

    # Completed as the served document is (examples, both forms of a time): the comparison
    # is of what the decoders change, not of what the document adds to every body.
    return complete(Litestar([observe, create, forecast, bulk]).openapi_schema).to_schema()


def reached(document: dict[str, Any], schema: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Every component schema ``schema`` refers to, transitively, by name."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in out:
                out[name] = document["components"]["schemas"][name]
                reached(document, out[name], out)
        for value in schema.values():
            reached(document, value, out)
    elif isinstance(schema, list):
        for value in schema:
            reached(document, value, out)
    return out


def test_every_hot_body_is_documented_as_its_pydantic_model(model_repository: Path) -> None:
    served = create_app(
        Settings(model_repository=model_repository, providers="cpu")
    ).openapi_schema.to_schema()
    reference = reference_document()
    for (path, method), model in BODIES.items():
        body = served["paths"][path][method]["requestBody"]
        assert body["required"] is True
        assert list(body["content"]) == ["application/json"]
        assert body["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model.__name__}"
        }
        want = reached(reference, {"$ref": f"#/components/schemas/{model.__name__}"}, {})
        got = reached(served, body["content"]["application/json"]["schema"], {})
        assert got == want, model.__name__

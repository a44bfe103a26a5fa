"""The error responses of the OpenAPI document, as the service really sends them.

Litestar documents a generic ``application/json`` 400 body of its own for every handler that
validates input, but errors reach clients through this service's handlers: REST answers
``application/problem+json`` (``service.api.errors``) and the v2 routes ``{"error": "..."}``
(``service.api.kserve``). Rather than repeat that on every handler, the document is corrected
once when the app is built: every guarded operation gets a ``4XX`` and a ``503`` response in
its router's form. The open probes keep what their handlers declare (their 503 body is their
own report). The v2 inference response, which Litestar can only see as bytes, is described
as what it is, and the guarded operations say which headers carry the API key.
"""

from __future__ import annotations

from typing import Final

from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
    SecurityScheme,
)

from service.api.auth import is_public
from service.api.errors import PROBLEM_JSON

PROBLEM: Final = "Problem"
V2_ERROR: Final = "V2Error"
_METHODS: Final = ("get", "put", "post", "delete", "patch", "head", "options")
_REQUEST_ID: Final = Schema(
    type=OpenAPIType.STRING,
    description="The request's id, as in its X-Request-ID response header and its log lines.",
)


def _problem_schema() -> Schema:
    text = Schema(type=OpenAPIType.STRING)
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["type", "title", "status", "detail", "code"],
        properties={
            "type": Schema(type=OpenAPIType.STRING, description="URN naming the problem."),
            "title": text,
            "status": Schema(type=OpenAPIType.INTEGER),
            "detail": text,
            "code": Schema(type=OpenAPIType.STRING, description="Machine-readable problem code."),
            "field": Schema(type=OpenAPIType.STRING, description="The offending input, if one."),
            "limit": Schema(
                type=OpenAPIType.INTEGER, description="The limit reached (code stream-limit)."
            ),
            "request_id": _REQUEST_ID,
        },
        description="An error (RFC 9457 problem details).",
    )


def _v2_error_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["error"],
        properties={"error": Schema(type=OpenAPIType.STRING), "request_id": _REQUEST_ID},
        description="An error of the KServe v2 protocol.",
    )


def _v2_infer_response() -> OpenAPIResponse:
    """The inference response: JSON, or JSON followed by the binary tensor (octet-stream)."""
    output = Schema(
        type=OpenAPIType.OBJECT,
        required=["name", "datatype", "shape"],
        properties={
            "name": Schema(type=OpenAPIType.STRING),
            "datatype": Schema(type=OpenAPIType.STRING),
            "shape": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.INTEGER)),
            "data": Schema(type=OpenAPIType.ARRAY, items=Schema(type=OpenAPIType.NUMBER)),
            "parameters": Schema(type=OpenAPIType.OBJECT),
        },
    )
    body = Schema(
        type=OpenAPIType.OBJECT,
        required=["model_name", "outputs"],
        properties={
            "model_name": Schema(type=OpenAPIType.STRING),
            "model_version": Schema(type=OpenAPIType.STRING),
            "id": Schema(type=OpenAPIType.STRING),
            "outputs": Schema(type=OpenAPIType.ARRAY, items=output),
        },
    )
    return OpenAPIResponse(
        description="The forecast tensor [B, H, Q].",
        content={
            "application/json": OpenAPIMediaType(schema=body),
            "application/octet-stream": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
            ),
        },
    )


def _response(description: str, media_type: str, schema: str) -> OpenAPIResponse:
    ref = Reference(ref=f"#/components/schemas/{schema}")
    return OpenAPIResponse(
        description=description, content={media_type: OpenAPIMediaType(schema=ref)}
    )


def describe_errors(document: OpenAPI) -> OpenAPI:
    """Replace the generated error responses of every guarded operation (in place)."""
    components = document.components
    if isinstance(components, list) or components is None:
        components = Components()
        document.components = components
    schemas = dict(components.schemas or {})
    schemas[PROBLEM] = _problem_schema()
    schemas[V2_ERROR] = _v2_error_schema()
    components.schemas = schemas
    components.security_schemes = {
        **(components.security_schemes or {}),
        "bearer": SecurityScheme(type="http", scheme="bearer", description="An API key."),
        "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header"),
    }
    for path, item in (document.paths or {}).items():
        if is_public(path):
            continue
        v2 = path == "/v2" or path.startswith("/v2/")
        media_type, schema = ("application/json", V2_ERROR) if v2 else (PROBLEM_JSON, PROBLEM)
        for method in _METHODS:
            operation = getattr(item, method, None)
            if not isinstance(operation, Operation):
                continue
            responses = {
                code: response
                for code, response in (operation.responses or {}).items()
                if not code.startswith(("4", "5"))
            }
            if v2 and path.endswith("/infer"):
                # Litestar sees ``Response[bytes]`` and can only say "a string".
                responses["200"] = _v2_infer_response()
            responses["4XX"] = _response(
                "The request was refused (bad input, no or wrong key, unknown resource, "
                "conflict, too large); nothing was changed.",
                media_type,
                schema,
            )
            responses["503"] = _response(
                "The state store or the model is unavailable; retry after Retry-After seconds.",
                media_type,
                schema,
            )
            operation.responses = responses
            # Either header carries the key (none is needed while authentication is off).
            operation.security = [{"bearer": []}, {"apiKey": []}]
    return document


__all__ = ["PROBLEM", "V2_ERROR", "describe_errors"]

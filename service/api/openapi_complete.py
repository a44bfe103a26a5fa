"""What the generated OpenAPI document cannot know: descriptions, examples, and the forms
Litestar does not model.

Applied once when the app is built (after ``openapi.describe_errors``):

- a description for every operation that has none from its handler;
- an example for every request body and every typed JSON answer (by its schema's name), and
  for the v2 inference request;
- ``201`` of ``PUT /v1/streams/{stream_id}`` with its ``Location`` header;
- server-sent events as ``text/event-stream``;
- ``timestamp`` as what the decoders accept: an RFC 3339 date-time or epoch seconds;
- the WebSocket's messages (``/v1/ws``) as component schemas ``WebSocketMessage`` and
  ``WebSocketAnswer``.

``tests/integration/test_openapi_complete.py`` checks that every operation has its
description and examples, and that every example validates against its own schema.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIFormat,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Reference,
    Schema,
)

from service.api.openapi_examples import EXAMPLES, T1, T2, V2_ANSWER_EXAMPLE, V2_INFER_EXAMPLE
from service.timerange import RANGE

#: Descriptions of the operations whose handlers give none, by (method, path).
DESCRIPTIONS: Final[dict[tuple[str, str], str]] = {
    ("get", "/v1/models"): "Every model served: its versions and the latest one's manifest.",
    ("get", "/v1/models/{name}"): (
        "Every served version of one model, with its manifest, training record and accuracy."
    ),
    ("post", "/v1/models/{name}/forecast"): (
        "Forecasts of whole series from the model's initial state; nothing is stored. Each "
        "series as observations, or as columns (values at timestamps, or from start by step)."
    ),
    ("get", "/v1/streams/{stream_id}"): (
        "The stream's model, sequence number, last reading's time and latest forecast; "
        "readings=N adds its last N readings."
    ),
    ("put", "/v1/streams/{stream_id}"): (
        "Creates the stream (201, with Location) or resets it (200) from the model's initial "
        "state, then applies the history, if any."
    ),
    ("delete", "/v1/streams/{stream_id}"): "Forgets the stream and its state (204).",
    ("get", "/v1/streams/{stream_id}/forecasts"): (
        "Subscribes to the stream's forecasts, made by any replica: a snapshot, then an event "
        "per update. A stream that does not exist is a 404 before any event."
    ),
    ("post", "/v1/streams/{stream_id}/observations"): (
        "Applies readings in time order, one recurrent step each, and answers the updated "
        "forecast. A reading at or before the stream's last one is skipped, so a retry is safe."
    ),
    ("post", "/v1/observations"): (
        "Observes many streams in one request. Each stream is answered on its own with its "
        "status, so one refused stream does not fail the others."
    ),
    ("post", "/v1/admin/models/reload"): (
        "Admin role. Re-scans the model repository: loads new versions, replaces changed "
        "ones, drops removed ones; requests in flight finish on the version they started on."
    ),
    ("post", "/v1/admin/models/{name}/versions/{version}/load"): (
        "Admin role. Loads (or reloads) one version from the repository; its session is "
        "created and checked before it serves."
    ),
    ("post", "/v1/admin/models/{name}/versions/{version}/unload"): (
        "Admin role. Stops serving one version; re-scans leave it out until it is loaded again."
    ),
}
_SSE_EVENTS: Final = (
    "Server-sent events: a `snapshot` event (data: the stream, as GET /v1/streams/{stream_id} "
    "answers it), then a `forecast` event per update (data: the observe answer), comments as "
    "keep-alives, and an `error` event (data: a problem body) if the feed fails."
)


def _name(schema: Any) -> str | None:
    if isinstance(schema, Reference):
        return schema.ref.rsplit("/", 1)[-1]
    return None


def _example(schema: Any) -> Any:
    """The example of a schema by its name, or of a list of named items."""
    name = _name(schema)
    if name is not None:
        return EXAMPLES.get(name)
    if isinstance(schema, Schema) and schema.type == OpenAPIType.ARRAY:
        item = _example(schema.items)
        return None if item is None else [item]
    if isinstance(schema, Schema) and schema.one_of:
        return next((e for e in map(_example, schema.one_of) if e is not None), None)
    return None


def _fill(media: dict[str, OpenAPIMediaType] | None) -> None:
    for content in (media or {}).values():
        if content.example is None and content.examples is None:
            content.example = _example(content.schema)


def _timestamp() -> Schema:
    return Schema(
        one_of=[
            Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME, examples=[T1]),
            Schema(type=OpenAPIType.NUMBER, examples=[T2], description="Unix epoch seconds."),
        ],
        description=f"RFC 3339 date-time (UTC if no offset is given) or epoch seconds, {RANGE}.",
    )


def _retime(schema: Any) -> None:
    """Every request ``timestamp``/``timestamps``/``start`` typed as either form of a time."""
    if not isinstance(schema, Schema) or not schema.properties:
        return
    for key in ("timestamp", "start"):
        if key in schema.properties:
            either = _timestamp()
            if key == "start":
                either = Schema(one_of=[*(either.one_of or []), Schema(type=OpenAPIType.NULL)])
            schema.properties[key] = either
    if "timestamps" in schema.properties:
        schema.properties["timestamps"] = Schema(
            one_of=[
                Schema(type=OpenAPIType.ARRAY, items=_timestamp()),
                Schema(type=OpenAPIType.NULL),
            ]
        )


def _ref(name: str) -> Reference:
    return Reference(ref=f"#/components/schemas/{name}")


def _websocket(schemas: dict[str, Any]) -> None:
    """The WebSocket's messages (``/v1/ws``) as components."""
    schemas["WebSocketMessage"] = Schema(
        one_of=[_ref("StreamObservationsIn"), _ref("BulkObserveRequest")],
        description=(
            "A text frame sent to /v1/ws (write role; the key in Authorization or X-API-Key, a "
            "refused key closes with 4401 or 4403, a message over ws_max_message_bytes with "
            "1009): one stream's observations, or a bulk request (with an 'id' of its own). "
            "Each message is answered by one WebSocketAnswer, in order."
        ),
    )
    schemas["WebSocketRefusal"] = Schema(
        type=OpenAPIType.OBJECT,
        required=["status", "error", "message"],
        properties={
            "status": Schema(type=OpenAPIType.INTEGER, description="400, 422 or 429."),
            "error": _ref("Problem"),
            "message": Schema(type=OpenAPIType.STRING, description="The message, cut short."),
        },
        description="The answer to a message that could not be read or was rate limited.",
    )
    schemas["WebSocketAnswer"] = Schema(
        one_of=[_ref("StreamAnswer"), _ref("BulkObserveResponse"), _ref("WebSocketRefusal")],
        description="A text frame the server sends back for each WebSocketMessage.",
    )


def complete(document: OpenAPI) -> OpenAPI:
    """Fill in the descriptions, examples and forms listed in the module (in place)."""
    components = document.components
    if not isinstance(components, Components):
        components = Components()
        document.components = components
    schemas = dict(components.schemas or {})
    for name in ("ObservationIn", "SeriesColumns", "SeriesIn"):
        _retime(schemas.get(name))
    _websocket(schemas)
    components.schemas = schemas
    for path, item in (document.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(item, method, None)
            if not isinstance(operation, Operation):
                continue
            if not operation.description:
                operation.description = DESCRIPTIONS.get((method, path))
            responses = operation.responses or {}
            if method == "put" and path == "/v1/streams/{stream_id}" and "200" in responses:
                _created(responses)
            if path.endswith("/forecasts") and method == "get" and "200" in responses:
                responses["200"] = _events()
            if operation.request_body is not None and not isinstance(
                operation.request_body, Reference
            ):
                _fill(operation.request_body.content)
                if path.startswith("/v2/") and path.endswith("/infer"):
                    json_body = operation.request_body.content.get("application/json")
                    if json_body is not None:
                        json_body.example = V2_INFER_EXAMPLE
            for code, response in responses.items():
                if isinstance(response, OpenAPIResponse) and code.startswith("2"):
                    _fill(response.content)
                    if path.startswith("/v2/") and path.endswith("/infer") and response.content:
                        response.content["application/json"].example = V2_ANSWER_EXAMPLE
    document.info.description = (document.info.description or "") + (
        " The WebSocket protocol of /v1/ws is described by the component schemas "
        "WebSocketMessage and WebSocketAnswer."
    )
    return document


def _created(responses: dict[str, Any]) -> None:
    ok = responses["200"]
    if not isinstance(ok, OpenAPIResponse):
        return
    responses["200"] = OpenAPIResponse(description="The stream was reset.", content=ok.content)
    responses["201"] = OpenAPIResponse(
        description="The stream was created.",
        content=ok.content,
        headers={
            "Location": OpenAPIHeader(
                schema=Schema(type=OpenAPIType.STRING),
                description="The stream's URL, /v1/streams/{stream_id} (percent-encoded).",
            )
        },
    )


def _events() -> OpenAPIResponse:
    return OpenAPIResponse(
        description=_SSE_EVENTS,
        content={
            "text/event-stream": OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, description=_SSE_EVENTS),
                example='event: snapshot\ndata: {{"stream_id": "pump-7", "seq": 2}}\n\n',
            )
        },
    )


__all__ = ["DESCRIPTIONS", "complete"]

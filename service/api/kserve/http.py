"""The v2 protocol over HTTP (Triton's dialect): routes, body framing, and the answers.

The body is JSON, or JSON followed by tensor bytes (the binary extension, framed by
``Inference-Header-Content-Length``), possibly gzip/deflate compressed as tritonclient sends
it. Everything past the framing is the shared wire model (``wire``) and core (``sequences``).
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Final

import numpy as np
from litestar import Controller, Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody

from service.api.bodies import decode_json
from service.api.kserve import describe, repository
from service.api.kserve.errors import error_response, exception_handlers
from service.api.kserve.schemas import (
    LiveOut,
    ModelConfigOut,
    ModelMetadataOut,
    ModelReadyOut,
    ReadyOut,
    RepositoryDoneOut,
    RepositoryEntryOut,
    RepositoryIndexIn,
    RepositoryModelIn,
    ServerMetadataOut,
)
from service.api.kserve.sequences import V2, infer
from service.api.kserve.wire import (
    InferAnswer,
    InferBody,
    bad,
    brief,
    check_request,
    decode_body,
)
from service.errors import PayloadTooLarge
from service.forecaster import Forecaster
from service.lifecycle import ModelLifecycle
from service.registry import ModelRegistry

#: Header that splits a binary request or response into its JSON part and its tensor bytes.
HEADER_LENGTH: Final = "Inference-Header-Content-Length"
_MODEL = "/models/{name:str}"
_VERSION = "/models/{name:str}/versions/{version:str}"
_ADMIN: Final = {"role": "admin"}


def split_body(body: bytes, header_length: str | None) -> tuple[InferBody, list[memoryview | None]]:
    """The typed inference request, and each input's binary bytes (None: JSON ``data``)."""
    if header_length is None:
        json_part, binary = body, memoryview(b"")
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise bad(f"{HEADER_LENGTH} must be an integer, got {brief(header_length)}") from None
        if not 0 < length <= len(body):
            raise bad(
                f"{HEADER_LENGTH} is {length} but the body holds {len(body)} bytes; it must "
                "be the length of the JSON part"
            )
        json_part, binary = body[:length], memoryview(body)[length:]
    request = decode_body(decode_json(json_part, "the inference request"))
    raw: list[memoryview | None] = []
    offset = 0
    for tensor in request.inputs:
        size = tensor.parameters.binary_data_size
        if size is None:
            raw.append(None)
            continue
        if offset + size > len(binary):
            raise bad(
                f"input {tensor.name!r} needs bytes {offset}..{offset + size} of the binary "
                f"part, which holds only {len(binary)}"
            )
        raw.append(binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise bad(
            f"the binary part of the body holds {len(binary)} bytes but the inputs' "
            f"binary_data_size add up to {offset}"
        )
    return request, raw


def encode_response(answer: InferAnswer, *, binary: bool) -> Response[bytes]:
    """The inference response; binary outputs follow the JSON part in the body."""
    outputs: list[dict[str, Any]] = []
    raw: list[bytes] = []
    for tensor in answer.outputs:
        output: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.array.shape),
        }
        if binary:
            data = np.ascontiguousarray(tensor.array).astype(tensor.array.dtype.newbyteorder("<"))
            raw.append(data.tobytes())
            output["parameters"] = {"binary_data_size": len(raw[-1])}
        else:
            # No "parameters" here: Triton's C++ client reads one as "the data is binary".
            output["data"] = tensor.array.ravel().tolist()
        outputs.append(output)
    body: dict[str, Any] = {"model_name": answer.model, "model_version": str(answer.version)}
    if answer.request_id is not None:
        body["id"] = answer.request_id
    if answer.parameters:
        body["parameters"] = dict(answer.parameters)
    body["outputs"] = outputs
    head = json.dumps(body, separators=(",", ":")).encode()
    if not binary:
        return Response(head, media_type="application/json")
    return Response(
        b"".join([head, *raw]),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(head))},
    )


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its ``Content-Encoding`` (gzip and deflate, as tritonclient sends)."""
    if encoding is None or encoding.strip().lower() in {"", "identity"}:
        return body
    kind = encoding.strip().lower()
    if kind not in {"gzip", "deflate"}:
        raise bad(f"unsupported Content-Encoding {brief(encoding)}; use gzip or deflate")
    inflater = zlib.decompressobj(wbits=31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise bad(f"the {kind} body cannot be decompressed: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the decompressed body exceeds {limit} bytes")
    if not inflater.eof:
        raise bad(f"the {kind} body is truncated")
    return out


def _ok(model: Any, description: str) -> dict[int, ResponseSpec]:
    """The 200 of a route that answers a dict: documented as ``model``."""
    return {
        200: ResponseSpec(data_container=model, description=description, generate_examples=False)
    }


class KServeController(Controller):
    """The v2 endpoints; mounted under ``/v2`` by :func:`v2_router`."""

    path = ""
    tags = ["kserve-v2"]

    @get(
        "/",
        summary="Server metadata",
        description="Name, version and protocol extensions.",
        responses=_ok(ServerMetadataOut, "The server's metadata."),
    )
    async def server_metadata(self) -> dict[str, Any]:
        return describe.server_metadata()

    @get(
        "/health/live",
        summary="The server is up",
        description="Open: no key needed.",
        responses=_ok(LiveOut, "The server is up."),
    )
    async def live(self) -> dict[str, bool]:
        return {"live": True}

    @get(
        "/health/ready",
        summary="Every model loaded and the state store reachable",
        description="Open: no key needed. 503 with the reason while not ready.",
        responses={
            **_ok(ReadyOut, "Ready."),
            503: ResponseSpec(
                data_container=ReadyOut, description="Not ready, and why.", generate_examples=False
            ),
        },
    )
    async def ready(self, state: State) -> Response[dict[str, Any]]:
        problem = await describe.ready_problem(state)
        if problem is not None:
            return Response(
                {"ready": False, "error": problem}, status_code=503, headers={"Retry-After": "1"}
            )
        return Response({"ready": True})

    @get(
        [_MODEL, _VERSION],
        summary="Model metadata",
        description="The model's client-visible tensors; the versions served (or the one named).",
        responses=_ok(ModelMetadataOut, "The model's metadata."),
    )
    async def metadata(
        self,
        registry: NamedDependency[ModelRegistry],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> dict[str, Any]:
        number = describe.parse_version(version)
        runtime = registry.get(name, number)
        served = [runtime.version] if number else [r.version for r in registry.versions(name)]
        return describe.model_metadata(runtime, served)

    @get(
        [f"{_MODEL}/ready", f"{_VERSION}/ready"],
        summary="Whether the model can infer",
        description="200 when it can; 503 while its session is closed.",
        responses={
            **_ok(ModelReadyOut, "The model can infer."),
            503: ResponseSpec(
                data_container=ModelReadyOut, description="It cannot.", generate_examples=False
            ),
        },
    )
    async def model_ready(
        self,
        registry: NamedDependency[ModelRegistry],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> Response[dict[str, Any]]:
        runtime = registry.get(name, describe.parse_version(version))
        body = {"name": runtime.name, "version": str(runtime.version), "ready": not runtime.closed}
        return Response(body, status_code=200 if not runtime.closed else 503)

    @get(
        [f"{_MODEL}/config", f"{_VERSION}/config"],
        summary="Model configuration (Triton)",
        description="Triton's model configuration in its JSON form; dims exclude the batch axis.",
        responses=_ok(ModelConfigOut, "The model's configuration."),
    )
    async def config(
        self,
        registry: NamedDependency[ModelRegistry],
        v2: NamedDependency[V2],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> dict[str, Any]:
        runtime = registry.get(name, describe.parse_version(version))
        return describe.model_config(runtime, v2.options)

    @post(
        [f"{_MODEL}/infer", f"{_VERSION}/infer"],
        summary="Inference: stateless, or one step of a sequence",
        description=(
            "Without parameters.sequence_id a stateless forecast of B whole series; with one, "
            "a step of that sequence (B = 1): sequence_start (re)creates it, sequence_end "
            "forgets it after answering. JSON data, or the binary tensor extension."
        ),
        status_code=200,
    )
    async def infer(
        self,
        request: Request[Any, Any, Any],
        forecaster: NamedDependency[Forecaster],
        registry: NamedDependency[ModelRegistry],
        tenant: NamedDependency[str],
        v2: NamedDependency[V2],
        name: FromPath[str],
        version: FromPath[str | None] = None,
    ) -> Response[bytes]:
        number = describe.parse_version(version)
        runtime = registry.get(name, number)
        limit = v2.options.max_body_bytes
        body = decompress(await request.body(), request.headers.get("content-encoding"), limit)
        wire, raw = split_body(body, request.headers.get(HEADER_LENGTH))
        parsed = check_request(wire, raw, runtime, v2.options.max_batch_size)
        # No await since the body was checked: steps queue in arrival order.
        answer = await infer(v2, forecaster, tenant, runtime, number, parsed)
        return encode_response(answer, binary=parsed.binary_output)

    @post(
        "/repository/index",
        summary="Model repository index",
        description=(
            "Every version directory of the repository and every version served, READY or "
            "UNAVAILABLE with the reason. Needs the read role."
        ),
        status_code=200,
        opt={"role": "read"},
        responses=_ok(list[RepositoryEntryOut], "The repository's model versions."),
    )
    async def repository_index(
        self,
        registry: NamedDependency[ModelRegistry],
        data: JSONBody[RepositoryIndexIn | None] = None,
    ) -> list[dict[str, Any]]:
        ready = data.ready if data is not None else False
        return repository.index(registry, ready_only=ready)

    @post(
        "/repository/models/{name:str}/load",
        summary="Load a model (every version in the repository)",
        description="Needs the admin role, as the admin model routes. 200 with an empty body.",
        status_code=200,
        opt=_ADMIN,
        responses=_ok(RepositoryDoneOut, "Done."),
    )
    async def repository_load(
        self,
        state: State,
        name: FromPath[str],
        data: JSONBody[RepositoryModelIn | None] = None,
    ) -> dict[str, Any]:
        lifecycle: ModelLifecycle = state.lifecycle
        await repository.load(lifecycle, name)
        return {}

    @post(
        "/repository/models/{name:str}/unload",
        summary="Unload a model (every version served)",
        description="Needs the admin role, as the admin model routes. 200 with an empty body.",
        status_code=200,
        opt=_ADMIN,
        responses=_ok(RepositoryDoneOut, "Done."),
    )
    async def repository_unload(
        self,
        state: State,
        name: FromPath[str],
        data: JSONBody[RepositoryModelIn | None] = None,
    ) -> dict[str, Any]:
        lifecycle: ModelLifecycle = state.lifecycle
        await repository.unload(lifecycle, name)
        return {}


def v2_router(v2: V2) -> Router:
    """The ``/v2`` router of one app, with its own error form; ``v2`` is shared with gRPC."""
    return Router(
        path="/v2",
        route_handlers=[KServeController],
        dependencies={"v2": Provide(lambda: v2, sync_to_thread=False)},
        exception_handlers=exception_handlers(),
    )


__all__ = [
    "HEADER_LENGTH",
    "KServeController",
    "decompress",
    "encode_response",
    "error_response",
    "split_body",
    "v2_router",
]

"""The v2 protocol over gRPC: Triton's ``inference.GRPCInferenceService`` on grpc.aio.

Served on ``FORECAST_GRPC_PORT`` (0: off) by a lifespan of the app, on the app's event loop,
so it shares the app's forecaster, registry, model lifecycle and sequence locks: a sequence
may be stepped over HTTP and gRPC alike. Each call is the HTTP route's twin: the same wire
model, core calls and error table, with the same roles (keys in the ``authorization:
Bearer <key>`` or ``x-api-key`` metadata; live and ready are open). ``ModelStreamInfer``
applies a stream's requests one after another, in order; a refused one is answered with
``error_message`` and the stream goes on. Methods of Triton's service this one has no use
for (statistics, shared memory, tracing, logging) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import grpc
from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException

from service import errors, request_id
from service.api.auth import Authenticator, Principal, require
from service.api.kserve import describe, grpc_codec, repository
from service.api.kserve.errors import (
    HTTP_TO_GRPC,
    UNEXPECTED,
    UNEXPECTED_MESSAGE,
    http_message,
    message_of,
    status_of,
)
from service.api.kserve.proto import grpc_service_pb2 as pb
from service.api.kserve.proto import grpc_service_pb2_grpc as pb_grpc
from service.api.kserve.sequences import V2, infer
from service.api.kserve.wire import check_request
from service.forecaster import Forecaster
from service.registry import ModelRegistry
from service.settings import Role, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]


def _failure(exc: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message of an error, from the v2 error table."""
    if isinstance(exc, errors.ForecastError):
        return grpc.StatusCode[status_of(exc).grpc], message_of(exc)
    if isinstance(exc, HTTPException):
        return grpc.StatusCode[HTTP_TO_GRPC.get(exc.status_code, "UNKNOWN")], http_message(exc)
    log.exception("unhandled error in a gRPC call", exc_info=exc)
    return grpc.StatusCode[UNEXPECTED.grpc], UNEXPECTED_MESSAGE


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The v2 gRPC methods on one app's state."""

    def __init__(self, state: State, v2: V2, authenticator: Authenticator) -> None:
        self.state = state
        self.v2 = v2
        self.authenticator = authenticator

    @property
    def registry(self) -> ModelRegistry:
        models: ModelRegistry = self.state.registry
        return models

    @property
    def forecaster(self) -> Forecaster:
        forecaster: Forecaster = self.state.forecaster
        return forecaster

    def _principal(self, context: Context, role: Role) -> Principal:
        headers = {
            k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
        }
        principal = self.authenticator.authenticate(headers)
        require(principal, role)
        return principal

    async def _call(
        self, context: Context, role: Role | None, work: Callable[[Principal | None], Awaitable[T]]
    ) -> T:
        """Run ``work`` under the request's id; any error ends the call with its status."""
        metadata = dict(context.invocation_metadata() or ())
        incoming = metadata.get(request_id.HEADER.lower())
        token = request_id.bind(request_id.accept(incoming if isinstance(incoming, str) else None))
        try:
            context.set_trailing_metadata(
                ((request_id.HEADER.lower(), request_id.current() or ""),)
            )
            try:
                principal = self._principal(context, role) if role is not None else None
                return await work(principal)
            except Exception as exc:  # every error is answered, none kills the server
                code, message = _failure(exc)
            await context.abort(code, message)
            raise AssertionError("unreachable: abort raises")
        finally:
            request_id.unbind(token)

    # --- health and metadata ------------------------------------------------------------

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await describe.ready_problem(self.state) is None)

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        async def work(_: Principal | None) -> pb.ServerMetadataResponse:
            return grpc_codec.server_metadata(describe.server_metadata())

        return await self._call(context, "read", work)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        async def work(_: Principal | None) -> pb.ModelReadyResponse:
            try:
                runtime = self.registry.get(request.name, describe.parse_version(request.version))
            except errors.UnknownModel:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=not runtime.closed)

        return await self._call(context, "read", work)

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        async def work(_: Principal | None) -> pb.ModelMetadataResponse:
            number = describe.parse_version(request.version)
            runtime = self.registry.get(request.name, number)
            versions = self.registry.versions(request.name)
            served = [runtime.version] if number else [r.version for r in versions]
            return grpc_codec.model_metadata(describe.model_metadata(runtime, served))

        return await self._call(context, "read", work)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        async def work(_: Principal | None) -> pb.ModelConfigResponse:
            runtime = self.registry.get(request.name, describe.parse_version(request.version))
            return grpc_codec.model_config(describe.model_config(runtime, self.v2.options))

        return await self._call(context, "read", work)

    # --- inference ----------------------------------------------------------------------

    async def _infer(self, request: pb.ModelInferRequest, tenant: str) -> pb.ModelInferResponse:
        number = describe.parse_version(request.model_version)
        runtime = self.registry.get(request.model_name, number)
        wire, raw = grpc_codec.infer_body(request)
        parsed = check_request(wire, raw, runtime, self.v2.options.max_batch_size)
        answer = await infer(self.v2, self.forecaster, tenant, runtime, number, parsed)
        return grpc_codec.infer_response(answer)

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        async def work(principal: Principal | None) -> pb.ModelInferResponse:
            assert principal is not None
            return await self._infer(request, principal.tenant)

        return await self._call(context, "write", work)

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterator[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async def who(principal: Principal | None) -> Principal:
            assert principal is not None
            return principal

        principal = await self._call(context, "write", who)
        async for request in request_iterator:
            token = request_id.bind(request_id.accept(None))
            try:
                response = await self._infer(request, principal.tenant)
            except Exception as exc:  # answered in the stream, which goes on
                _, message = _failure(exc)
                yield pb.ModelStreamInferResponse(error_message=message)
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)
            finally:
                request_id.unbind(token)

    # --- the repository extension -------------------------------------------------------

    async def RepositoryIndex(
        self, request: pb.RepositoryIndexRequest, context: Context
    ) -> pb.RepositoryIndexResponse:
        async def work(_: Principal | None) -> pb.RepositoryIndexResponse:
            entries = repository.index(self.registry, ready_only=request.ready)
            return grpc_codec.repository_index(entries)

        return await self._call(context, "read", work)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> pb.RepositoryModelLoadResponse:
        async def work(_: Principal | None) -> pb.RepositoryModelLoadResponse:
            await repository.load(self.state.lifecycle, request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await self._call(context, "admin", work)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> pb.RepositoryModelUnloadResponse:
        async def work(_: Principal | None) -> pb.RepositoryModelUnloadResponse:
            await repository.unload(self.state.lifecycle, request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await self._call(context, "admin", work)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def grpc_lifespan(
    settings: Settings, v2: V2, authenticator: Authenticator
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """A lifespan serving gRPC on ``settings.grpc_port`` while the app runs (0: nothing).

    It must come after the lifespans that set the app's registry, forecaster and lifecycle.
    At shutdown calls in flight get a few seconds to finish.
    """

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.grpc_port == 0:
            yield
            return
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        # The stubs declare every method of Triton's service abstract; the generated base
        # class answers UNIMPLEMENTED for those this service has no use for.
        servicer = InferenceServicer(app.state, v2, authenticator)  # type: ignore[abstract]
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        address = _address(settings.host, settings.grpc_port)
        server.add_insecure_port(address)
        await server.start()
        log.info("serving v2 gRPC (inference.GRPCInferenceService) on %s", address)
        try:
            yield
        finally:
            await server.stop(grace=5.0)

    return lifespan


__all__ = ["InferenceServicer", "grpc_lifespan"]

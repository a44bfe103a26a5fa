"""The application factory. Resources come in as arguments or are opened in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from prometheus_client import CollectorRegistry

from service import __version__
from service.api.access import request_context
from service.api.admin import AdminController
from service.api.auth import Authenticator, announce, auth_guard, provide_tenant
from service.api.bodies import BoundedRequest
from service.api.docs import OfflineSwaggerPlugin
from service.api.errors import exception_handlers
from service.api.health import live, metrics, ready
from service.api.kserve import V2, v2_router
from service.api.kserve.grpc_server import grpc_lifespan
from service.api.listing import list_streams_page
from service.api.middleware import request_recorder
from service.api.openapi import describe_errors
from service.api.openapi_complete import complete
from service.api.paths import stream_id_middleware
from service.api.rest import ModelController, StreamController, observe_bulk
from service.api.schemas import observe_out
from service.api.streaming import forecast_events, observations_socket
from service.api.ui import ui_asset, ui_page
from service.bus import open_bus
from service.forecaster import Forecaster, ObserveResult
from service.lifecycle import model_lifecycle
from service.metrics import Metrics
from service.mqtt.bridge import bridged
from service.registry import ModelRegistry
from service.settings import Settings
from service.state import open_store
from service.state.base import StateStore
from service.state.instrumented import InstrumentedStore
from service.tracing import Tracing, from_settings

log = logging.getLogger("service")


def create_app(
    settings: Settings | None = None,
    *,
    store: StateStore | None = None,
    registry: ModelRegistry | None = None,
    metrics_registry: CollectorRegistry | None = None,
    tracing: Tracing | None = None,
    freeze_gc: bool = False,
) -> Litestar:
    """Build the app. A store or registry passed in is used as is and not closed by the app.

    Without them the lifespan opens the store from ``settings.store_url`` and loads the model
    repository (creating every onnxruntime session) before the server accepts requests.

    ``freeze_gc`` (for the server process, ``python -m service``) moves everything alive once
    the app has started (models, app, settings: hundreds of thousands of objects) out of the
    cyclic garbage collector's sight, so its collections under load scan only what requests
    make: ~25 % more bulk ingest on the benchmark machine. Not for processes that build many
    apps (tests): frozen cycles are never collected.

    ``tracing`` replaces the one ``settings.otel_endpoint`` would make (tests pass one with an
    in-memory exporter); the app closes only a tracing it made.
    """
    cfg = settings if settings is not None else Settings()
    instruments = Metrics(metrics_registry)
    # Tracing passed in (tests: an in-memory exporter) is the caller's to close.
    spans = tracing if tracing is not None else from_settings(cfg.otel_endpoint)
    # Built here, not in the lifespan, so bad key settings stop the app before it serves.
    authenticator = Authenticator.from_settings(cfg)
    # One per app, shared by the v2 HTTP routes and gRPC (its sequence locks above all).
    v2 = V2.of(cfg)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own_registry = registry is None
        own_store = store is None
        models = registry
        if models is None:
            models = await asyncio.to_thread(
                ModelRegistry.load,
                cfg.model_repository,
                providers=cfg.providers,
                threads=cfg.inference_threads,
            )
        backend = store
        if backend is None:
            backend = open_store(
                cfg.store_url,
                timeout_seconds=cfg.store_timeout_seconds,
                max_connections=cfg.store_max_connections,
            )
        for runtime in models.all():
            instruments.model_info.labels(
                runtime.name,
                str(runtime.version),
                runtime.manifest.kind,
                ",".join(runtime.providers),
            ).set(1)
        bus = open_bus(
            cfg.store_url if own_store else "memory://",
            key_prefix=cfg.key_prefix,
            timeout_seconds=cfg.store_timeout_seconds,
        )
        forecaster = Forecaster(
            models,
            InstrumentedStore(backend, instruments),
            instruments,
            key_prefix=cfg.key_prefix,
            ttl_seconds=cfg.stream_ttl_seconds,
            cas_retries=cfg.cas_retries,
            record_cache=cfg.record_cache_streams,
            batch_max_rows=cfg.batch_max_rows,
            batch_max_delay=cfg.batch_max_delay_ms / 1000.0,
            bus=bus,
            encode=_encode_update,
            history_length=cfg.history_length,
            gap_policy=cfg.gap_policy,
            max_gap_steps=cfg.max_gap_steps,
            on_model_change=cfg.on_model_change,
            max_observations=cfg.max_observations,
            max_streams_per_tenant=cfg.max_streams_per_tenant,
            scoring=cfg.scoring == "on",
            anomaly_margin=cfg.anomaly_margin,
        )
        app.state.settings = cfg
        app.state.registry = models
        app.state.metrics = instruments
        app.state.forecaster = forecaster
        app.state.started = True
        if freeze_gc:
            gc.freeze()
        log.info(
            "serving %d model version(s) %s with providers %s; store %s",
            len(models.all()),
            [f"{r.name}/{r.version}" for r in models.all()],
            models.providers_in_use(),
            cfg.store_url.split("@")[-1],
        )
        try:
            async with bridged(forecaster, cfg, instruments.registry) as bridge:
                app.state.mqtt = bridge
                yield
        finally:
            app.state.started = False
            await forecaster.aclose()
            await bus.close()
            if own_store:
                await backend.close()
            if own_registry:
                models.close()
            if tracing is None and spans is not None:
                await asyncio.to_thread(spans.close)

    app = Litestar(
        route_handlers=[
            ModelController,
            StreamController,
            list_streams_page,
            observe_bulk,
            observations_socket,
            forecast_events,
            AdminController,
            live,
            ready,
            metrics,
            v2_router(v2),
            ui_page,
            ui_asset,
        ],
        dependencies={
            "registry": Provide(_registry, sync_to_thread=False),
            "tenant": Provide(provide_tenant, sync_to_thread=False),
        },
        # Every route needs a key of the right role, except health, metrics, docs and the
        # page's own files (its data calls carry the key).
        guards=[auth_guard],
        state=State({"authenticator": authenticator}),
        lifespan=[
            announce(authenticator),
            lifespan,
            model_lifecycle(cfg.model_poll_seconds),
            grpc_lifespan(cfg, v2, authenticator),
        ],
        exception_handlers=exception_handlers(),
        middleware=[
            stream_id_middleware,
        ],
        request_class=BoundedRequest,
        request_max_body_size=cfg.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="stateful-forecast",
            version=__version__,
            description=(
                "Per-stream forecasts from recurrent models whose state is kept in a store: "
                "each reading costs one recurrent step."
            ),
            path="/docs",
            render_plugins=[OfflineSwaggerPlugin()],
        ),
        debug=False,
        # Logging is the host's business (``__main__`` configures it); Litestar adds none.
        logging_config=None,
    )
    # Built now (and cached), with the error bodies the service really sends.
    complete(describe_errors(app.openapi_schema))
    # One layer in front of the router for every connection (unmatched paths included): its
    # id, metrics, access line and span, encoded slashes kept in their path segment, and the
    # body's deadline.
    app.asgi_handler = request_context(
        app.asgi_handler,
        request_recorder(instruments),
        spans,
        body_timeout_seconds=cfg.http_body_timeout_seconds,
    )
    return app


def _registry(state: State) -> ModelRegistry:
    models: ModelRegistry = state.registry
    return models


def _encode_update(result: ObserveResult) -> bytes:
    """What subscribers receive for each update: the same body an observe request gets."""
    return msgspec.json.encode(observe_out(result))

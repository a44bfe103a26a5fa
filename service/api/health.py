"""Liveness, readiness and the Prometheus endpoint."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.api.openapi_models import LiveStatusOut, ReadinessOut, answers
from service.errors import StoreBusy, StoreUnavailable
from service.metrics import Metrics


@get(
    "/health/live",
    summary="The process is up",
    description="Open (no key): for liveness probes. Answers as long as the process serves.",
    tags=["health"],
    responses=answers(LiveStatusOut, "The process is up."),
)
async def live() -> dict[str, str]:
    return {"status": "ok"}


@get(
    "/health/ready",
    summary="Store reachable and every model loaded",
    description=(
        "Open (no key): for readiness probes. 200 once start-up is done, a model is loaded and "
        "the state store answers; else 503 with Retry-After and the problems."
    ),
    tags=["health"],
    responses={
        **answers(ReadinessOut, "Ready."),
        **answers(ReadinessOut, "Not ready, and why.", status=503),
    },
)
async def ready(state: State) -> Response[dict[str, Any]]:
    registry = state.registry
    body: dict[str, Any] = {
        "models": {f"{r.name}/{r.version}": {"providers": r.providers} for r in registry.all()},
        "refused": dict(registry.refused),
    }
    problems: list[str] = []
    if not state.get("started", False):
        problems.append("start-up has not finished")
    if not body["models"]:
        problems.append("no model is loaded")
    try:
        await state.forecaster.store.ping()
        body["store"] = "ok"
    except StoreBusy as exc:
        # Every connection in use is load, not ill health: a replica taken out of rotation
        # for it would only push its share onto the others, which are as busy.
        body["store"] = f"busy: {exc.detail}"
    except StoreUnavailable as exc:
        body["store"] = f"unavailable: {exc.detail}"
        problems.append("state store unreachable")
    body["status"] = "ready" if not problems else "not ready"
    if problems:
        body["problems"] = problems
        return Response(body, status_code=503, headers={"Retry-After": "1"})
    return Response(body, status_code=200)


@get("/metrics", summary="Prometheus metrics", tags=["health"], include_in_schema=False)
async def metrics(state: State) -> Response[bytes]:
    instruments: Metrics = state.metrics
    return Response(generate_latest(instruments.registry), media_type=CONTENT_TYPE_LATEST)

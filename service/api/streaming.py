"""Streaming interfaces: a WebSocket for observations in and forecasts out, and server-sent
events of one stream's forecasts (made by any replica, through the forecast bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from litestar import WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.response import ServerSentEvent, ServerSentEventMessage
from pydantic import ValidationError

from service.api.auth import principal_of
from service.api.bulk import error_answer, observe_streams
from service.api.deps import ForecasterDep, TenantDep
from service.api.rest import StreamId
from service.api.schemas import (
    BulkObserveRequest,
    BulkObserveResponse,
    StreamObservationsIn,
    stream_out,
)
from service.errors import ForecastError
from service.forecaster import Forecaster
from service.settings import Settings

#: WebSocket close code for a message over the size limit (RFC 6455).
CLOSE_TOO_BIG = 1009
KEEPALIVE_SECONDS = 15.0


def _invalid(message: str, detail: str, status: int = 422) -> dict[str, Any]:
    code = "invalid-input" if status == 422 else "malformed-body"
    return {
        "status": status,
        "error": {
            "type": f"urn:stateful-forecast:problem:{code}",
            "title": "Invalid input" if status == 422 else "Malformed message",
            "status": status,
            "detail": detail,
            "code": code,
        },
        "message": message[:200],
    }


@websocket("/v1/ws", opt={"role": "write"})
async def observations_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Send ``{"stream_id", "observations", "id"?}`` or ``{"streams": [...]}`` messages;
    each is answered with the stream's outcome (``{"results": [...]}`` for the second form)
    as soon as it is made.

    Backpressure: at most ``ws_max_in_flight`` messages are processed at once per
    connection; beyond that the server stops reading, so a fast sender is slowed by TCP
    rather than growing the server's memory.
    """
    state: State = socket.app.state
    forecaster: Forecaster = state.forecaster
    settings: Settings = state.settings
    tenant = principal_of(socket).tenant
    await socket.accept()
    permits = asyncio.Semaphore(settings.ws_max_in_flight)
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def send(payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        async with send_lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                await socket.send_text(text)

    async def handle(text: str) -> None:
        try:
            await send(await _answer(forecaster, tenant, text, settings.max_observations))
        finally:
            permits.release()

    try:
        while True:
            await permits.acquire()
            try:
                text = await socket.receive_text()
            except WebSocketDisconnect:
                permits.release()
                break
            if len(text.encode()) > settings.ws_max_message_bytes:
                permits.release()
                await socket.close(
                    code=CLOSE_TOO_BIG,
                    reason=f"message over {settings.ws_max_message_bytes} bytes",
                )
                break
            task = asyncio.create_task(handle(text))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _answer(forecaster: Forecaster, tenant: str, text: str, limit: int) -> str:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        return json.dumps(_invalid(text, f"message is not JSON: {exc}", status=400))
    try:
        if isinstance(raw, dict) and "streams" in raw:
            bulk = BulkObserveRequest.model_validate(raw)
            answers = await observe_streams(forecaster, tenant, bulk.streams, limit, bulk.detail)
            return msgspec.json.encode(BulkObserveResponse(results=answers)).decode()
        item = StreamObservationsIn.model_validate(raw)
        (answer,) = await observe_streams(forecaster, tenant, [item], limit)
        return msgspec.json.encode(answer).decode()
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return json.dumps(_invalid(text, f"{where}: {first['msg']}"))
    except ForecastError as exc:
        return msgspec.json.encode(error_answer(exc)).decode()


@get(
    "/v1/streams/{stream_id:str}/forecasts",
    summary="Server-sent events: each new forecast of the stream, from any replica",
    tags=["streams"],
)
async def forecast_events(
    forecaster: ForecasterDep, tenant: TenantDep, stream_id: StreamId
) -> ServerSentEvent:
    """First a ``snapshot`` event with the stream as it is, then a ``forecast`` event per
    update (the same body as an observe answer), and a comment every 15 s to keep proxies
    from closing an idle connection.
    """
    await forecaster.get_stream(tenant, stream_id)  # 404 (or 503) before any streaming

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        async with forecaster.subscribe(tenant, stream_id) as messages:
            # Read after subscribing, so no update falls between the snapshot and the feed.
            current = await forecaster.get_stream(tenant, stream_id)
            yield ServerSentEventMessage(
                data=msgspec.json.encode(stream_out(current)).decode(), event="snapshot"
            )
            iterator = aiter(messages)
            while True:
                try:
                    payload = await asyncio.wait_for(anext(iterator), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield ServerSentEventMessage(comment="keep-alive")
                    continue
                yield ServerSentEventMessage(data=payload.decode(), event="forecast")

    return ServerSentEvent(
        events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )

"""Streaming interfaces: a WebSocket for observations in and forecasts out, and server-sent
events of one stream's forecasts (made by any replica, through the forecast bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import msgspec
from litestar import WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.response import ServerSentEvent, ServerSentEventMessage
from pydantic import ValidationError

from service.api.auth import principal_of
from service.api.bodies import BulkBody, reference_bulk, stream_message
from service.api.bulk import error_answer, observe_streams
from service.api.deps import ForecasterDep, TenantDep
from service.api.requests import BulkObserveRequest, StreamObservationsIn
from service.api.rest import StreamId
from service.api.schemas import BulkObserveResponse, stream_out
from service.errors import ForecastError
from service.forecaster import Forecaster
from service.settings import Settings

#: WebSocket close code for a message over the size limit (RFC 6455).
CLOSE_TOO_BIG = 1009
#: WebSocket close code for a sender that ignores the message rate limit (RFC 6455).
CLOSE_POLICY = 1008

_PROBLEMS = {
    400: ("malformed-body", "Malformed message"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many messages"),
}


def _invalid(message: str, detail: str, status: int = 422, **extra: Any) -> dict[str, Any]:
    code, title = _PROBLEMS[status]
    return {
        "status": status,
        "error": {
            "type": f"urn:stateful-forecast:problem:{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
            **extra,
        },
        "message": message[:200],
    }


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved up; a message spends one.

    ``clock`` is injectable so the arithmetic can be tested without sleeping.
    """

    def __init__(
        self, rate: float, capacity: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not rate > 0 or capacity < 1:
            raise ValueError(
                f"a token bucket needs rate > 0 and capacity >= 1, got {rate}, {capacity}"
            )
        self.rate = rate
        self.capacity = float(capacity)
        self._clock = clock
        self._tokens = float(capacity)
        self._last = clock()

    def take(self) -> float:
        """Spend a token: 0.0 if there was one, else the seconds until there will be."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate


@websocket("/v1/ws", opt={"role": "write"})
async def observations_socket(socket: WebSocket[Any, Any, Any]) -> None:
    """Send ``{"stream_id", "observations", "id"?}`` or ``{"streams": [...]}`` messages;
    each is answered with the stream's outcome (``{"results": [...]}`` for the second form)
    as soon as it is made.

    Backpressure: at most ``ws_max_in_flight`` messages are processed at once per
    connection; beyond that the server stops reading, so a fast sender is slowed by TCP
    rather than growing the server's memory.

    Rate: a connection may send ``ws_max_messages_per_second`` messages a second on average,
    ``ws_message_burst`` at once. A message over that is answered with a 429 problem (its
    ``retry_after`` in seconds) and not applied; a sender that is refused more than a burst's
    worth of messages in a row is not slowing down, and the socket is closed with 1008.
    """
    state: State = socket.app.state
    forecaster: Forecaster = state.forecaster
    settings: Settings = state.settings
    tenant = principal_of(socket).tenant
    await socket.accept()
    permits = asyncio.Semaphore(settings.ws_max_in_flight)
    send_lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()
    bucket = (
        TokenBucket(settings.ws_max_messages_per_second, settings.ws_message_burst)
        if settings.ws_max_messages_per_second > 0
        else None
    )
    refused = 0

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
            wait = bucket.take() if bucket is not None else 0.0
            if wait:
                permits.release()
                refused += 1
                if refused > settings.ws_message_burst:
                    await socket.close(
                        code=CLOSE_POLICY,
                        reason=f"message rate over {settings.ws_max_messages_per_second:g}/s",
                    )
                    break
                await send(_rate_limited(text, settings.ws_max_messages_per_second, wait))
                continue
            refused = 0
            task = asyncio.create_task(handle(text))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


class _KeepAlive(ServerSentEventMessage):
    """A comment line alone. Litestar adds an empty ``data:`` line to a comment, which a
    browser's EventSource dispatches as an empty message; a bare comment is ignored by it."""

    def encode(self) -> bytes:
        return b": keep-alive\r\n\r\n"


def _rate_limited(text: str, rate: float, wait: float) -> dict[str, Any]:
    answer = _invalid(
        text,
        f"over the limit of {rate:g} messages a second on this connection; this one was "
        "not applied, send it again later",
        status=429,
        retry_after=math.ceil(wait),
    )
    try:  # echo the client's correlation id, as every other answer does
        raw = json.loads(text)
    except ValueError:
        return answer
    if isinstance(raw, dict) and isinstance(raw.get("id"), str | int):
        answer["id"] = raw["id"]
    return answer


async def _answer(forecaster: Forecaster, tenant: str, text: str, limit: int) -> str:
    fast = stream_message(text.encode())
    try:
        if fast is not None:
            return await _answer_body(forecaster, tenant, *fast, limit)
        try:
            raw = json.loads(text)
        except ValueError as exc:
            return json.dumps(_invalid(text, f"message is not JSON: {exc}", status=400))
        if isinstance(raw, dict) and "streams" in raw:
            body = reference_bulk(BulkObserveRequest.model_validate(raw))
            return await _answer_body(forecaster, tenant, True, body, limit)
        item = StreamObservationsIn.model_validate(raw)
        body = reference_bulk(BulkObserveRequest(streams=[item]))
        return await _answer_body(forecaster, tenant, False, body, limit)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return json.dumps(_invalid(text, f"{where}: {first['msg']}"))
    except ForecastError as exc:
        return msgspec.json.encode(error_answer(exc)).decode()


async def _answer_body(
    forecaster: Forecaster, tenant: str, bulk: bool, body: BulkBody, limit: int
) -> str:
    answers = await observe_streams(forecaster, tenant, body, limit)
    if bulk:
        return msgspec.json.encode(BulkObserveResponse(results=answers)).decode()
    (answer,) = answers
    return msgspec.json.encode(answer).decode()


@get(
    "/v1/streams/{stream_id:str}/forecasts",
    summary="Server-sent events: each new forecast of the stream, from any replica",
    tags=["streams"],
)
async def forecast_events(
    forecaster: ForecasterDep, tenant: TenantDep, stream_id: StreamId, state: State
) -> ServerSentEvent:
    """First a ``snapshot`` event with the stream as it is, then a ``forecast`` event per
    update (the same body as an observe answer), and a comment after each
    ``sse_keepalive_seconds`` of silence to keep proxies from closing an idle connection.
    """
    keepalive = state.settings.sse_keepalive_seconds
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
                    payload = await asyncio.wait_for(anext(iterator), keepalive)
                except TimeoutError:
                    yield _KeepAlive()
                    continue
                except StopAsyncIteration:  # the bus lost the store: end, the client reconnects
                    return
                yield ServerSentEventMessage(data=payload.decode(), event="forecast")

    return ServerSentEvent(
        events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )

"""Streaming interfaces: a WebSocket for observations in and forecasts out, and server-sent
events of one stream's forecasts (made by any replica, through the forecast bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import msgspec
from litestar import WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect
from litestar.response import ServerSentEvent, ServerSentEventMessage
from pydantic import ValidationError

from service.api.auth import principal_of
from service.api.bodies import decode_json, message_id
from service.api.bulk import error_answer, observe_streams
from service.api.decoders import BulkBody, reference_bulk, stream_message
from service.api.deps import TenantDep, forecaster_of
from service.api.errors import problem_body
from service.api.requests import BulkObserveRequest, StreamObservationsIn
from service.api.rest import StreamId
from service.api.schemas import BulkObserveResponse, stream_out
from service.errors import ForecastError, InvalidInput, MalformedInput
from service.forecaster import Forecaster, StreamView
from service.settings import Settings

log = logging.getLogger(__name__)

#: WebSocket close code for a message over the size limit (RFC 6455).
CLOSE_TOO_BIG = 1009
#: WebSocket close code for a sender that ignores the message rate limit (RFC 6455).
CLOSE_POLICY = 1008

_PROBLEMS = {
    400: ("malformed-body", "Malformed message"),
    422: ("invalid-input", "Invalid input"),
    429: ("rate-limited", "Too many messages"),
    500: ("internal", "Internal server error"),
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
    """Send ``{"stream_id", "observations", "id"?}`` or ``{"streams": [...], "id"?}`` messages
    (text or binary frames of UTF-8 JSON); each is answered with the stream's outcome
    (``{"results": [...], "id"?}`` for the second form) as soon as it is made.

    Every message gets an answer: an unreadable one (not JSON, nested too deep) a 400, an
    invalid one a 422, each carrying the message's ``id`` when it can be read.

    Backpressure: at most ``ws_max_in_flight`` messages are processed at once per
    connection; beyond that the server stops reading, so a fast sender is slowed by TCP
    rather than growing the server's memory.

    Rate: a connection may send ``ws_max_messages_per_second`` messages a second on average,
    ``ws_message_burst`` at once. A message over that is answered with a 429 problem (its
    ``retry_after`` in seconds) and not applied; a sender that is refused more than a burst's
    worth of messages in a row is not slowing down, and the socket is closed with 1008.
    """
    state: State = socket.app.state
    forecaster = forecaster_of(state)
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

    async def handle(data: str | bytes) -> None:
        try:
            await send(await _answer(forecaster, tenant, data, settings.max_observations))
        finally:
            permits.release()

    try:
        while True:
            await permits.acquire()
            data = await _receive(socket)
            if data is None:
                permits.release()
                break
            if _too_big(data, settings.ws_max_message_bytes):
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
                await send(_rate_limited(data, settings.ws_max_messages_per_second, wait))
                continue
            refused = 0
            task = asyncio.create_task(handle(data))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _receive(socket: WebSocket[Any, Any, Any]) -> str | bytes | None:
    """The next message, text or binary; None once the client has gone."""
    try:
        event = await socket.receive()
    except WebSocketDisconnect:
        return None
    if event["type"] != "websocket.receive":  # websocket.disconnect
        return None
    text: str | None = event.get("text")
    if text is not None:
        return text
    data: bytes | None = event.get("bytes")
    return data if data is not None else ""


def _too_big(data: str | bytes, limit: int) -> bool:
    """Whether a message is over ``limit`` bytes on the wire (text is UTF-8)."""
    if isinstance(data, bytes) or len(data) > limit:
        return len(data) > limit  # a character is at least one byte
    if len(data) * 4 <= limit:  # and at most four
        return False
    return len(data.encode("utf-8")) > limit


class _KeepAlive(ServerSentEventMessage):
    """A comment line alone. Litestar adds an empty ``data:`` line to a comment, which a
    browser's EventSource dispatches as an empty message; a bare comment is ignored by it."""

    def encode(self) -> bytes:
        return b": keep-alive\r\n\r\n"


def _shown(data: str | bytes) -> str:
    """The start of a message, as text, for answers that quote it."""
    head = data[:200]
    return head.decode("utf-8", "replace") if isinstance(head, bytes) else head


def _with_id(answer: dict[str, Any], data: str | bytes) -> dict[str, Any]:
    """``answer`` with the message's correlation id, as every other answer carries it."""
    request_id = message_id(data)
    if request_id is not None:
        answer["id"] = request_id
    return answer


def _rate_limited(data: str | bytes, rate: float, wait: float) -> dict[str, Any]:
    answer = _invalid(
        _shown(data),
        f"over the limit of {rate:g} messages a second on this connection; this one was "
        "not applied, send it again later",
        status=429,
        retry_after=math.ceil(wait),
    )
    return _with_id(answer, data)


async def _answer(forecaster: Forecaster, tenant: str, data: str | bytes, limit: int) -> str:
    """The answer to one message; never raises (a dead task would leave it unanswered)."""
    try:
        fast = stream_message(data.encode() if isinstance(data, str) else data)
        if fast is not None:
            return await _answer_body(forecaster, tenant, *fast, limit)
        raw = decode_json(data, "the message")
        if isinstance(raw, dict) and "streams" in raw:
            # The WebSocket's bulk form may carry a correlation id of its own.
            request_id = _correlation_id(raw.pop("id", None))
            body = reference_bulk(BulkObserveRequest.model_validate(raw))
            return await _answer_body(forecaster, tenant, True, request_id, body, limit)
        item = StreamObservationsIn.model_validate(raw)
        body = reference_bulk(BulkObserveRequest(streams=[item]))
        return await _answer_body(forecaster, tenant, False, None, body, limit)
    except MalformedInput as exc:
        return json.dumps(_with_id(_invalid(_shown(data), exc.detail, status=400), data))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return json.dumps(_with_id(_invalid(_shown(data), f"{where}: {first['msg']}"), data))
    except ForecastError as exc:
        return msgspec.json.encode(error_answer(exc, request_id=message_id(data))).decode()
    except Exception:
        log.exception("unhandled error answering a WebSocket message")
        failure = _invalid(
            _shown(data), "the server failed to handle this message; it has been logged", 500
        )
        return json.dumps(_with_id(failure, data))


async def _answer_body(
    forecaster: Forecaster,
    tenant: str,
    bulk: bool,
    request_id: str | int | None,
    body: BulkBody,
    limit: int,
) -> str:
    answers = await observe_streams(forecaster, tenant, body, limit)
    if not bulk:
        (answer,) = answers
        return msgspec.json.encode(answer).decode()
    if request_id is None:
        return msgspec.json.encode(BulkObserveResponse(results=answers)).decode()
    return msgspec.json.encode({"id": request_id, "results": answers}).decode()


def _correlation_id(value: Any) -> str | int | None:
    if value is None or (isinstance(value, str | int) and not isinstance(value, bool)):
        return value
    raise InvalidInput("id must be a string or an integer", field="id")


@get(
    "/v1/streams/{stream_id:str}/forecasts",
    summary="Server-sent events: each new forecast of the stream, from any replica",
    tags=["streams"],
)
async def forecast_events(tenant: TenantDep, stream_id: StreamId, state: State) -> ServerSentEvent:
    """First a ``snapshot`` event with the stream as it is, then a ``forecast`` event per
    update (the same body as an observe answer), and a comment after each
    ``sse_keepalive_seconds`` of silence to keep proxies from closing an idle connection.

    The subscription and the snapshot are made before the answer's status is sent, so a
    stream that does not exist is a 404 and a store that cannot be read a 503, never a 200
    that breaks off. Should the feed fail later, an ``error`` event (a problem body) ends the
    stream; the client reconnects for a fresh snapshot, as it does when the feed ends.
    """
    forecaster = forecaster_of(state)
    keepalive = state.settings.sse_keepalive_seconds
    subscription = AsyncExitStack()
    try:
        # Subscribed before the snapshot is read, so no update falls between the two.
        messages = await subscription.enter_async_context(forecaster.subscribe(tenant, stream_id))
        current = await forecaster.get_stream(tenant, stream_id)
    except BaseException:
        await subscription.aclose()
        raise
    return ServerSentEvent(
        _events(subscription, messages, current, keepalive),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    subscription: AsyncExitStack,
    messages: AsyncIterator[bytes],
    current: StreamView,
    keepalive: float,
) -> AsyncGenerator[ServerSentEventMessage, None]:
    async with subscription:
        try:
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
        except Exception as exc:  # after the 200 only an event can say what went wrong
            if isinstance(exc, ForecastError):
                body = problem_body(exc)
            else:
                log.exception("server-sent events of a stream failed")
                body = _invalid("", "the event stream failed; it has been logged", 500)["error"]
            yield ServerSentEventMessage(data=json.dumps(body), event="error")

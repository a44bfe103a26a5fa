"""The asyncio client: :class:`AsyncForecastClient` (httpx) and its :class:`AsyncStreamSocket`.

The same calls, retries and errors as the blocking client (``forecast_client.sync``); only
the waiting differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from forecast_client import calls
from forecast_client.calls import BulkInput, Call, Detail
from forecast_client.messages import (
    EventFeed,
    FeedFailed,
    handshake_error,
    observe_message,
    raise_if_final,
    socket_answer,
    websocket_url,
)
from forecast_client.retry import Retry
from forecast_client.session import DEFAULT_URL, SSE_READ_TIMEOUT, TRANSIENT, Attempts, headers_for
from forecast_client.types import (
    Forecast,
    ModelVersion,
    ObserveResult,
    ReadingLike,
    Stream,
    StreamAnswer,
    StreamEvent,
    StreamPage,
    StreamSummary,
)

T = TypeVar("T")


class AsyncForecastClient:
    """An asyncio client of one service; the arguments are those of ``ForecastClient``."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: Retry | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else Retry()
        self._headers = headers_for(api_key)
        self._timeout = timeout
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def create_stream(
        self,
        stream_id: str,
        model: str,
        *,
        version: int | None = None,
        history: Sequence[ReadingLike] | None = None,
    ) -> ObserveResult:
        return await self._send(calls.create_stream(stream_id, model, version, history))

    async def get_stream(self, stream_id: str, *, readings: int = 0) -> Stream:
        return await self._send(calls.get_stream(stream_id, readings))

    async def stream_page(
        self, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> StreamPage:
        """One page of the tenant's streams whose id begins with ``prefix``."""
        return await self._send(calls.stream_page(prefix, limit, cursor))

    async def list_streams(
        self, *, prefix: str = "", page_size: int = 100
    ) -> AsyncIterator[StreamSummary]:
        """Every stream of the tenant whose id begins with ``prefix``, page after page."""
        cursor: str | None = None
        while True:
            page = await self.stream_page(prefix=prefix, limit=page_size, cursor=cursor)
            for stream in page.streams:
                yield stream
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def delete_stream(self, stream_id: str) -> None:
        await self._send(calls.delete_stream(stream_id))

    async def observe(self, stream_id: str, readings: Sequence[ReadingLike]) -> ObserveResult:
        return await self._send(calls.observe(stream_id, readings))

    async def observe_bulk(
        self, streams: BulkInput, *, detail: Detail = "full"
    ) -> list[StreamAnswer]:
        rounds = calls.BulkRounds(calls.bulk_items(streams), detail, self.retry)
        while True:
            pause = rounds.absorb(await self._send(rounds.call()))
            if pause is None:
                return rounds.answers()
            await asyncio.sleep(pause)

    async def forecast(
        self,
        model: str,
        series: Sequence[Sequence[ReadingLike]] | Mapping[str, Sequence[ReadingLike]],
        *,
        version: int | None = None,
    ) -> list[Forecast]:
        return await self._send(calls.forecast(model, series, version))

    async def models(self) -> list[ModelVersion]:
        return await self._send(calls.list_models())

    async def model(self, name: str) -> list[ModelVersion]:
        return await self._send(calls.get_model(name))

    def socket(self, *, open_timeout: float | None = None) -> AsyncStreamSocket:
        """A WebSocket, connected by ``async with`` (or ``await socket.connect()``)."""
        return AsyncStreamSocket(
            websocket_url(self.base_url),
            self._headers,
            self.retry,
            open_timeout=open_timeout if open_timeout is not None else self._timeout,
        )

    async def subscribe(
        self, stream_id: str, *, read_timeout: float = SSE_READ_TIMEOUT
    ) -> AsyncIterator[StreamEvent]:
        """The stream's server-sent events, followed again when the feed ends (see
        ``ForecastClient.subscribe``)."""
        path = calls.stream_path(stream_id) + "/forecasts"
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        headers = {**self._headers, "Accept": "text/event-stream"}
        attempts = Attempts(self.retry, "GET", path)
        while True:
            cause: BaseException | None = None
            try:
                async with self._http.stream(
                    "GET", path, headers=headers, timeout=timeout
                ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        cause = calls.retry_cause(response, self.retry)
                    else:
                        feed = EventFeed()
                        async for line in response.aiter_lines():
                            if (event := feed.feed(line)) is not None:
                                if event.kind == "snapshot":
                                    attempts.retries = 0  # a fresh start: failures in a row
                                yield event
            except (*TRANSIENT, FeedFailed) as exc:
                cause = exc
            await asyncio.sleep(attempts.after_failure(cause))

    async def _send(self, call: Call[T]) -> T:
        attempts = Attempts(self.retry, call.method, call.path)
        while True:
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=dict(call.params) or None,
                    json=call.json,
                    headers=self._headers,
                )
            except TRANSIENT as exc:
                await asyncio.sleep(attempts.after_failure(exc))
                continue
            pause = attempts.after_answer(response.status_code, calls.retry_after(response))
            if pause is None:
                return calls.finish(call, response, retried=attempts.retries > 0)
            await asyncio.sleep(pause)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncForecastClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncStreamSocket:
    """Readings over ``/v1/ws``, many in flight at once.

    :meth:`observe` may be awaited by many tasks together: each message carries an id, and
    one reader hands each answer to the task waiting for it (a dropped connection is opened
    again and the unanswered readings sent again: safe, they are deduplicated). Answers
    nobody waits for (from :meth:`send`) are read with :meth:`receive`.
    """

    def __init__(
        self, url: str, headers: Mapping[str, str], retry: Retry, *, open_timeout: float
    ) -> None:
        self.url = url
        self._headers = dict(headers)
        self._retry = retry
        self._open_timeout = open_timeout
        self._ids = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[StreamAnswer]] = {}
        self._inbox: asyncio.Queue[StreamAnswer | ConnectionClosed] = asyncio.Queue()
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False

    async def connect(self) -> None:
        """Open the connection (again), retrying as the policy allows."""
        attempts = Attempts(self._retry, "GET", self.url)
        while True:
            try:
                self._connection = await connect(
                    self.url,
                    additional_headers=self._headers,
                    open_timeout=self._open_timeout,
                    max_size=None,
                )
                self._reader = asyncio.create_task(self._read(self._connection))
                return
            except InvalidStatus as exc:
                cause = handshake_error(exc.response, self._retry.statuses)  # raised if final
                await asyncio.sleep(attempts.after_failure(cause))
            except (OSError, TimeoutError) as exc:
                await asyncio.sleep(attempts.after_failure(exc))

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for text in connection:
                try:
                    answer = socket_answer(text)
                except (ValueError, KeyError, TypeError):
                    continue  # not an answer this client can read: nobody waits for it
                waiter = self._waiting.pop(answer.id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
                else:
                    self._inbox.put_nowait(answer)
        except ConnectionClosed as exc:
            self._fail_waiting(exc)
            return
        # Closed cleanly (by the service or by us): everyone waiting hears it too.
        self._fail_waiting(connection.close_exc)

    def _fail_waiting(self, exc: ConnectionClosed) -> None:
        waiting, self._waiting = self._waiting, {}
        for waiter in waiting.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._inbox.put_nowait(exc)

    async def send(
        self, stream_id: str, readings: Sequence[ReadingLike], *, id: int | str | None = None
    ) -> int | str:
        """Send readings without waiting; the message's ``id`` (its answer comes with it)."""
        message_id = id if id is not None else next(self._ids)
        await self._live().send(observe_message(stream_id, readings, message_id))
        return message_id

    async def receive(self) -> StreamAnswer:
        """The next answer no :meth:`observe` is waiting for.

        Raises:
            websockets.exceptions.ConnectionClosed: the connection ended.
        """
        item = await self._inbox.get()
        if isinstance(item, ConnectionClosed):
            raise item
        return item

    async def observe(self, stream_id: str, readings: Sequence[ReadingLike]) -> ObserveResult:
        """Send readings and await their forecast; errors are raised typed. (Bound the wait
        with ``asyncio.timeout`` where it matters.)"""
        attempts = Attempts(self._retry, "WebSocket", self.url)
        while True:
            connection = self._live()
            message_id = next(self._ids)
            waiter: asyncio.Future[StreamAnswer] = asyncio.get_running_loop().create_future()
            self._waiting[message_id] = waiter
            try:
                await connection.send(observe_message(stream_id, readings, message_id))
                answer = await waiter
            except ConnectionClosed as exc:
                self._waiting.pop(message_id, None)
                raise_if_final(exc)
                await asyncio.sleep(attempts.after_failure(exc))
                await self._reconnect(connection)
                continue
            except BaseException:
                self._waiting.pop(message_id, None)
                raise
            pause = attempts.after_answer(answer.status, answer.retry_after)
            if pause is None:
                return answer.unwrap()
            await asyncio.sleep(pause)

    def _live(self) -> ClientConnection:
        if self._connection is None or self._closed:
            raise RuntimeError("the socket is not connected: use 'async with client.socket()'")
        return self._connection

    async def _reconnect(self, broken: ClientConnection) -> None:
        """Open a new connection, once, however many tasks found the old one broken."""
        async with self._lock:
            if self._connection is broken and not self._closed:
                await self.connect()

    async def close(self) -> None:
        self._closed = True
        if self._connection is not None:
            await self._connection.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def __aenter__(self) -> AsyncStreamSocket:
        if self._connection is None:
            await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


__all__ = ["AsyncForecastClient", "AsyncStreamSocket"]

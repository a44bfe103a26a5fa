"""The blocking client: :class:`ForecastClient` (httpx) and its :class:`StreamSocket`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

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


class ForecastClient:
    """A blocking client of one service.

    Args:
        base_url: Where the service is, e.g. ``http://forecast:8000``.
        api_key: Sent as ``Authorization: Bearer <key>`` on every request.
        timeout: Seconds for each request (connect, read, write).
        retry: When to try again (connection errors, 502/503/504 with ``Retry-After``).
            Safe for every call: readings are deduplicated by timestamp, a stream's PUT sets
            the same stream again, and a DELETE that finds the stream gone after a lost
            answer counts as done. ``Retry(attempts=1)`` turns retries off.
        http: An httpx client to use instead of one of the client's own (not closed by it).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        retry: Retry | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else Retry()
        self._headers = headers_for(api_key)
        self._timeout = timeout
        self._own_http = http is None
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout)

    # -- streams -----------------------------------------------------------------------------

    def create_stream(
        self,
        stream_id: str,
        model: str,
        *,
        version: int | None = None,
        history: Sequence[ReadingLike] | None = None,
    ) -> ObserveResult:
        """Bind ``stream_id`` to a model (replacing a stream of that id), warmed up with
        ``history`` if given."""
        return self._send(calls.create_stream(stream_id, model, version, history))

    def get_stream(self, stream_id: str, *, readings: int = 0) -> Stream:
        """The stream's position and latest forecast, and its last ``readings`` readings."""
        return self._send(calls.get_stream(stream_id, readings))

    def stream_page(
        self, *, prefix: str = "", limit: int = 100, cursor: str | None = None
    ) -> StreamPage:
        """One page of the tenant's streams whose id begins with ``prefix``."""
        return self._send(calls.stream_page(prefix, limit, cursor))

    def list_streams(self, *, prefix: str = "", page_size: int = 100) -> Iterator[StreamSummary]:
        """Every stream of the tenant whose id begins with ``prefix``, page after page."""
        cursor: str | None = None
        while True:
            page = self.stream_page(prefix=prefix, limit=page_size, cursor=cursor)
            yield from page.streams
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete_stream(self, stream_id: str) -> None:
        self._send(calls.delete_stream(stream_id))

    def observe(self, stream_id: str, readings: Sequence[ReadingLike]) -> ObserveResult:
        """Apply new readings (oldest first); the forecast after the last one."""
        return self._send(calls.observe(stream_id, readings))

    def observe_bulk(self, streams: BulkInput, *, detail: Detail = "full") -> list[StreamAnswer]:
        """Readings of many streams in one request; each stream answers on its own (its error
        in ``.error``, not raised). Streams that answer 503 alone are sent again."""
        rounds = calls.BulkRounds(calls.bulk_items(streams), detail, self.retry)
        while (pause := rounds.absorb(self._send(rounds.call()))) is not None:
            time.sleep(pause)
        return rounds.answers()

    # -- models ------------------------------------------------------------------------------

    def forecast(
        self,
        model: str,
        series: Sequence[Sequence[ReadingLike]] | Mapping[str, Sequence[ReadingLike]],
        *,
        version: int | None = None,
    ) -> list[Forecast]:
        """Stateless forecasts of whole series, each from the model's initial state."""
        return self._send(calls.forecast(model, series, version))

    def models(self) -> list[ModelVersion]:
        """The latest version of every served model."""
        return self._send(calls.list_models())

    def model(self, name: str) -> list[ModelVersion]:
        """Every served version of one model, with its manifest's accuracy."""
        return self._send(calls.get_model(name))

    # -- streaming ---------------------------------------------------------------------------

    def socket(self, *, open_timeout: float | None = None) -> StreamSocket:
        """A WebSocket for readings in and forecasts out (close it, or use ``with``)."""
        return StreamSocket(
            websocket_url(self.base_url),
            self._headers,
            self.retry,
            open_timeout=open_timeout if open_timeout is not None else self._timeout,
        )

    def subscribe(
        self, stream_id: str, *, read_timeout: float = SSE_READ_TIMEOUT
    ) -> Iterator[StreamEvent]:
        """The stream's server-sent events: a ``snapshot``, then a ``forecast`` per update.

        A feed that ends or breaks is followed again (with a fresh snapshot) after the retry
        policy's pause; failures in a row beyond its attempts raise ``ServiceUnreachable``,
        an answer that retrying cannot change (401, 403, 404) its ``ApiError``. With no
        event or keep-alive for ``read_timeout`` seconds the feed counts as broken.
        """
        path = calls.stream_path(stream_id) + "/forecasts"
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        headers = {**self._headers, "Accept": "text/event-stream"}
        attempts = Attempts(self.retry, "GET", path)
        while True:
            cause: BaseException | None = None
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code != 200:
                        response.read()
                        cause = calls.retry_cause(response, self.retry)
                    else:
                        feed = EventFeed()
                        for line in response.iter_lines():
                            if (event := feed.feed(line)) is not None:
                                if event.kind == "snapshot":
                                    attempts.retries = 0  # a fresh start: failures in a row
                                yield event
            except (*TRANSIENT, FeedFailed) as exc:
                cause = exc
            time.sleep(attempts.after_failure(cause))

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, call: Call[T]) -> T:
        attempts = Attempts(self.retry, call.method, call.path)
        while True:
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=dict(call.params) or None,
                    json=call.json,
                    headers=self._headers,
                )
            except TRANSIENT as exc:
                time.sleep(attempts.after_failure(exc))
                continue
            pause = attempts.after_answer(response.status_code, calls.retry_after(response))
            if pause is None:
                return calls.finish(call, response, retried=attempts.retries > 0)
            time.sleep(pause)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> ForecastClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StreamSocket:
    """Readings over ``/v1/ws``: :meth:`observe` one request at a time (reconnecting and
    sending again when the connection drops: safe, readings are deduplicated), or
    :meth:`send` many and :meth:`receive` their answers as they come (matched by ``id``)."""

    def __init__(
        self, url: str, headers: Mapping[str, str], retry: Retry, *, open_timeout: float
    ) -> None:
        self.url = url
        self._headers = dict(headers)
        self._retry = retry
        self._open_timeout = open_timeout
        self._ids = itertools.count(1)
        self._early: dict[Any, StreamAnswer] = {}
        self._connection: ClientConnection | None = None
        self._connect()

    def _connect(self) -> ClientConnection:
        attempts = Attempts(self._retry, "GET", self.url)
        while True:
            try:
                # Entered as ``with connect(...)`` would (websockets 17.1 warns on a connection
                # used without it); ``close`` ends it.
                self._connection = connect(
                    self.url,
                    additional_headers=self._headers,
                    open_timeout=self._open_timeout,
                    max_size=None,
                ).__enter__()
                return self._connection
            except InvalidStatus as exc:
                time.sleep(
                    attempts.after_failure(handshake_error(exc.response, self._retry.statuses))
                )
            except (OSError, TimeoutError) as exc:
                time.sleep(attempts.after_failure(exc))

    @property
    def _ws(self) -> ClientConnection:
        return self._connection if self._connection is not None else self._connect()

    def send(
        self, stream_id: str, readings: Sequence[ReadingLike], *, id: int | str | None = None
    ) -> int | str:
        """Send readings without waiting; the message's ``id`` (to match its answer)."""
        message_id = id if id is not None else next(self._ids)
        self._ws.send(observe_message(stream_id, readings, message_id))
        return message_id

    def receive(self, timeout: float | None = None) -> StreamAnswer:
        """The next answer (an error answer is returned in ``.error``, not raised)."""
        if self._early:
            key = next(iter(self._early))
            return self._early.pop(key)
        return socket_answer(self._ws.recv(timeout=timeout))

    def observe(
        self, stream_id: str, readings: Sequence[ReadingLike], *, timeout: float = 30.0
    ) -> ObserveResult:
        """Send readings and wait for their forecast; errors are raised typed."""
        attempts = Attempts(self._retry, "WebSocket", self.url)
        while True:
            try:
                message_id = self.send(stream_id, readings)
                answer = self._answer_to(message_id, timeout)
            except ConnectionClosed as exc:
                raise_if_final(exc)
                self._connection = None  # opened again by the next send
                time.sleep(attempts.after_failure(exc))
                continue
            pause = attempts.after_answer(answer.status, answer.retry_after)
            if pause is None:
                return answer.unwrap()
            time.sleep(pause)

    def _answer_to(self, message_id: int | str, timeout: float) -> StreamAnswer:
        if message_id in self._early:
            return self._early.pop(message_id)
        deadline = time.monotonic() + timeout
        while True:
            answer = socket_answer(self._ws.recv(timeout=max(0.0, deadline - time.monotonic())))
            if answer.id == message_id:
                return answer
            self._early[answer.id] = answer

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __enter__(self) -> StreamSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["ForecastClient", "StreamSocket"]

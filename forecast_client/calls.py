"""Every request of the API as data, and how its answer is read: no I/O here.

The sync and the async client send the same :class:`Call` objects, each in its own way, so
the two cannot drift apart on paths, bodies or how an answer is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx

from forecast_client.errors import ApiError, problem_error
from forecast_client.retry import Retry, retry_after_seconds
from forecast_client.types import (
    Forecast,
    ModelVersion,
    ObserveResult,
    ReadingLike,
    Stream,
    StreamAnswer,
    StreamPage,
    readings_json,
)

T = TypeVar("T")
Detail = Literal["full", "summary"]
#: Bulk input: stream id -> its readings, or (stream id, readings) pairs.
BulkInput = Mapping[str, Sequence[ReadingLike]] | Iterable[tuple[str, Sequence[ReadingLike]]]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and the reader of its successful answer.

    ``gone_is_done``: a 404 on a retry means an earlier try landed (a DELETE whose answer
    was lost), so it counts as success.
    """

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    json: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)
    gone_is_done: bool = False


def stream_path(stream_id: str) -> str:
    """``/v1/streams/<id>``, the id percent-encoded whole (a '/' in it stays in its segment)."""
    return f"/v1/streams/{quote(stream_id, safe='')}"


def error_of(response: httpx.Response) -> ApiError:
    """The typed exception for a refused request."""
    try:
        body: Any = response.json()
    except ValueError:
        body = {"detail": response.text[:200] or None}
    return problem_error(
        response.status_code,
        body,
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


def _observe_result(response: httpx.Response) -> ObserveResult:
    return ObserveResult.of(response.json())


def _nothing(_: httpx.Response) -> None:
    return None


def create_stream(
    stream_id: str,
    model: str,
    version: int | None = None,
    history: Sequence[ReadingLike] | None = None,
) -> Call[ObserveResult]:
    body: dict[str, Any] = {"model": model}
    if version is not None:
        body["version"] = version
    if history is not None:
        body["history"] = readings_json(history)
    return Call("PUT", stream_path(stream_id), _observe_result, json=body)


def get_stream(stream_id: str, readings: int = 0) -> Call[Stream]:
    params = {"readings": readings} if readings else {}
    return Call("GET", stream_path(stream_id), lambda r: Stream.of(r.json()), params=params)


def stream_page(prefix: str = "", limit: int = 100, cursor: str | None = None) -> Call[StreamPage]:
    params: dict[str, Any] = {"limit": limit}
    if prefix:
        params["prefix"] = prefix
    if cursor is not None:
        params["cursor"] = cursor
    return Call("GET", "/v1/streams", lambda r: StreamPage.of(r.json()), params=params)


def delete_stream(stream_id: str) -> Call[None]:
    return Call("DELETE", stream_path(stream_id), _nothing, gone_is_done=True)


def observe(stream_id: str, readings: Sequence[ReadingLike]) -> Call[ObserveResult]:
    body = {"observations": readings_json(readings)}
    return Call("POST", f"{stream_path(stream_id)}/observations", _observe_result, json=body)


def forecast(
    model: str,
    series: Sequence[Sequence[ReadingLike]] | Mapping[str, Sequence[ReadingLike]],
    version: int | None = None,
) -> Call[list[Forecast]]:
    """Stateless forecasts of whole series; a mapping's keys come back as each one's ``id``."""
    items = (
        [{"id": k, "observations": readings_json(v)} for k, v in series.items()]
        if isinstance(series, Mapping)
        else [{"observations": readings_json(s)} for s in series]
    )
    body: dict[str, Any] = {"series": items}
    if version is not None:
        body["version"] = version
    return Call(
        "POST",
        f"/v1/models/{quote(model, safe='')}/forecast",
        lambda r: [Forecast.of(f) for f in r.json()["forecasts"]],
        json=body,
    )


def list_models() -> Call[list[ModelVersion]]:
    return Call(
        "GET", "/v1/models", lambda r: [ModelVersion.of(m["latest"]) for m in r.json()["models"]]
    )


def get_model(name: str) -> Call[list[ModelVersion]]:
    return Call(
        "GET",
        f"/v1/models/{quote(name, safe='')}",
        lambda r: [ModelVersion.of(v) for v in r.json()["versions"]],
    )


def retry_after(response: httpx.Response) -> float | None:
    """The seconds of the answer's ``Retry-After``, if it has one."""
    return retry_after_seconds(response.headers.get("retry-after"))


def retry_cause(response: httpx.Response, policy: Retry) -> ApiError:
    """The error of a refused subscription: raised when final, returned (as the cause of
    the next try) when it is one to retry."""
    error = error_of(response)
    if response.status_code not in policy.statuses:
        raise error
    return error


def finish(call: Call[T], response: httpx.Response, *, retried: bool) -> T:
    """The call's value from its final answer, or the error it is."""
    if response.is_success:
        return call.read(response)
    if retried and call.gone_is_done and response.status_code == 404:
        return call.read(response)
    raise error_of(response)


def bulk_items(streams: BulkInput) -> list[tuple[str, list[dict[str, Any]]]]:
    pairs = streams.items() if isinstance(streams, Mapping) else streams
    return [(stream_id, readings_json(readings)) for stream_id, readings in pairs]


class BulkRounds:
    """A bulk observe whose streams that answer 503 on their own are sent again.

    A store that fails for some streams of a request answers those with 503 inside a 200;
    they, and only they, go again (safe: what did land is skipped), until they succeed or
    the policy's attempts are spent, when their 503 is their answer.
    """

    def __init__(
        self, items: list[tuple[str, list[dict[str, Any]]]], detail: Detail, retry: Retry
    ) -> None:
        self._items = items
        self._detail = detail
        self._retry = retry
        self._answers: list[StreamAnswer | None] = [None] * len(items)
        self._pending = list(range(len(items)))
        self._round = 0

    def call(self) -> Call[list[StreamAnswer]]:
        body = {
            "streams": [
                {"id": i, "stream_id": self._items[i][0], "observations": self._items[i][1]}
                for i in self._pending
            ],
            "detail": self._detail,
        }
        return Call("POST", "/v1/observations", _bulk_answers, json=body)

    def absorb(self, answers: list[StreamAnswer]) -> float | None:
        """Take a round's answers; the pause before the next round, or None when done."""
        self._round += 1
        by_id = {a.id: a for a in answers}
        again: list[int] = []
        for i in self._pending:
            answer = by_id.get(i)
            if answer is None:
                raise ValueError(f"the service did not answer stream {self._items[i][0]!r}")
            self._answers[i] = StreamAnswer(
                stream_id=answer.stream_id,
                status=answer.status,
                result=answer.result,
                summary=answer.summary,
                error=answer.error,
            )
            if answer.status in self._retry.statuses:
                again.append(i)
        if not again:
            self._pending = []
            return None
        waits = [self._answers[i].error for i in again]  # type: ignore[union-attr]
        retry_after = max((e.retry_after or 0.0 for e in waits if e is not None), default=None)
        pause = self._retry.pause(self._round, retry_after)
        self._pending = again if pause is not None else []
        return pause

    def answers(self) -> list[StreamAnswer]:
        return [a for a in self._answers if a is not None]


def _bulk_answers(response: httpx.Response) -> list[StreamAnswer]:
    request_id = response.headers.get("x-request-id")
    return [StreamAnswer.of(a, request_id) for a in response.json()["results"]]


__all__ = [
    "BulkInput",
    "BulkRounds",
    "Call",
    "Detail",
    "bulk_items",
    "create_stream",
    "delete_stream",
    "error_of",
    "finish",
    "forecast",
    "get_model",
    "get_stream",
    "list_models",
    "observe",
    "retry_after",
    "retry_cause",
    "stream_path",
]

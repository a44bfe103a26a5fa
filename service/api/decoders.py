"""The hot request bodies, decoded with msgspec straight into the core's checked readings.

Each body is first decoded by msgspec into plain structs of the usual shape (numbers and
RFC 3339 text for times, ``values`` lists, no unknown fields). Anything else (a body that
does not decode so, a ``true`` where a number goes, a number given as text, an epoch time
outside the years 1970-2200, ...) is judged by the pydantic models of ``requests``, exactly
as before: what they accept is accepted with the same meaning, and what they refuse is
refused with the same problem+json and the same offending field. Times follow pydantic's
rules to the microsecond (epoch seconds, or milliseconds past 2e10; text through pydantic
itself), which the tests check against pydantic.

The DTOs at the end hand these decoders to Litestar (``dto=``) while the OpenAPI document
keeps describing the request bodies by their pydantic models.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import numpy as np
from litestar.exceptions import ValidationException
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from service.api.bodies import check_depth, explained
from service.api.epochs import Unreadable, epochs
from service.api.requests import (
    BulkObserveRequest,
    Detail,
    ForecastRequest,
    ObservationIn,
    ObserveRequest,
    StreamCreate,
    epoch,
)
from service.core.observations import Observations, TimeArray, single_readings
from service.errors import ForecastError, MalformedInput

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# --- the shapes the fast path takes --------------------------------------------------------


class _Observation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    timestamp: float | str
    values: list[float] | None = None
    value: float | None = None


_Readings = Annotated[list[_Observation], msgspec.Meta(min_length=1)]
#: Rows of values, or one value per row (a one-feature model's series).
_Rows = Annotated[list[float | list[float]], msgspec.Meta(min_length=1)]
_Positive = Annotated[float, msgspec.Meta(gt=0)]
_Version = Annotated[int, msgspec.Meta(ge=1)]


class _Observe(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    observations: _Readings


class _Stream(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stream_id: str
    observations: _Readings
    id: str | int | None = None


class _Bulk(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    streams: Annotated[list[_Stream], msgspec.Meta(min_length=1)]
    detail: Literal["full", "summary"] = "full"


class _MessageBulk(_Bulk, forbid_unknown_fields=True, kw_only=True):
    """The WebSocket's bulk form: a bulk body with a correlation id of its own."""

    id: str | int | None = None


class _Columns(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    values: _Rows
    timestamps: list[float | str] | None = None
    start: float | str | None = None
    step: _Positive | None = None


class _Series(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str | None = None
    observations: _Readings | None = None
    values: _Rows | None = None
    timestamps: list[float | str] | None = None
    start: float | str | None = None
    step: _Positive | None = None


class _Forecast(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    series: Annotated[list[_Series], msgspec.Meta(min_length=1)]
    version: _Version | None = None


class _Create(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    model: str
    version: _Version | None = None
    history: list[_Observation] | _Columns | None = None


class _Slow(Exception):
    """The fast path does not take this body; the pydantic models judge it."""


def _times(values: Sequence[float | str]) -> TimeArray:
    try:
        return epochs(values)
    except Unreadable:
        raise _Slow from None


def _rows(observations: Sequence[_Observation]) -> list[list[float]]:
    rows: list[list[float]] = []
    for one in observations:
        if one.values is not None:
            if one.value is not None:
                raise _Slow
            rows.append(one.values)
        elif one.value is not None:
            rows.append([one.value])
        else:
            raise _Slow
    return rows


def _finite(rows: Sequence[Sequence[float]]) -> None:
    """A number msgspec made infinite (a huge integer): pydantic words that refusal."""
    isfinite = math.isfinite
    if not all(isfinite(v) for row in rows for v in row):
        raise _Slow


def _series(observations: Sequence[_Observation], field: str) -> Observations:
    rows = _rows(observations)
    _finite(rows)
    times = _times([o.timestamp for o in observations])
    return Observations.build(times.tolist(), rows, field=field)


def _columns(
    given: list[float | list[float]],
    timestamps: list[float | str] | None,
    start: float | str | None,
    step: float | None,
    field: str,
) -> Observations:
    rows: Any
    if all(type(v) is float for v in given):
        rows = np.array(given, dtype=np.float64)[:, None]
    elif all(type(v) is list for v in given):
        rows = given
        if len({len(row) for row in rows}) == 1:
            _finite(rows)
    else:
        raise _Slow
    if len(rows) and not np.isfinite(rows if isinstance(rows, np.ndarray) else 0.0).all():
        raise _Slow
    if timestamps is not None and start is None and step is None:
        if len(timestamps) != len(rows):
            raise _Slow
        times = _times(timestamps)
    elif timestamps is None and start is not None and step is not None:
        first = float(_times([start])[0])
        times = first + step * np.arange(len(rows), dtype=np.float64)
    else:
        raise _Slow
    return Observations.build(times, rows, field=field, columns=True)  # type: ignore[arg-type]


# --- decoding: the fast path, else the reference ---------------------------------------------


def _reference(raw: bytes, model: type[M], method: str, path: str) -> M:
    """The body judged as Litestar judged it with the pydantic models: 400 for bytes that
    are not JSON (or nest too deeply), 422 naming the first offending field."""
    check_depth(raw)
    try:
        data = msgspec.json.decode(raw or b"null")
    except msgspec.DecodeError as exc:
        detail = explained(str(exc), raw)
        raise MalformedInput(f"the request body is not valid JSON: {detail}") from None
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        raise invalid(exc, method, path, data) from exc


def invalid(exc: PydanticError, method: str, path: str, data: Any) -> ValidationException:
    """Litestar's validation error for a pydantic model's refusal (key and message each)."""
    messages: list[dict[str, str]] = []
    for loc, text in _one_branch(exc, data):
        message = {"message": text.split(" - ", maxsplit=1)[0]}
        if loc:
            message["key"] = ".".join(str(part) for part in loc)
            message["source"] = "body"
        messages.append(message)
    return ValidationException(detail=f"Validation failed for {method} {path}", extra=messages)


def _one_branch(exc: PydanticError, data: Any) -> list[tuple[list[Any], str]]:
    """The errors of a field that takes a list or an object (``history``) as if it took only
    the kind the body gave (a list unless it gave an object), without pydantic's branch tag:
    the same errors a list-only field gave before the object form existed."""
    out: list[tuple[list[Any], str]] = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        tags = [i for i, part in enumerate(loc) if isinstance(part, str) and "[" in part]
        if tags:
            i = tags[0]
            given_object = isinstance(_at(data, loc[:i]), dict)
            if given_object == str(loc[i]).startswith("list["):
                continue
            del loc[i]
        out.append((loc, str(error["msg"])))
    return out


def _at(data: Any, path: Sequence[Any]) -> Any:
    for part in path:
        if (isinstance(data, dict) and part in data) or (
            isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        ):
            data = data[part]
        else:
            return None
    return data


def decode(
    raw: bytes,
    fast: type[T],
    convert: Callable[[T], Any],
    model: type[M],
    reference: Callable[[M], Any],
    where: tuple[str, str],
) -> Any:
    """``convert(fast struct)``, or for a body the fast path does not take,
    ``reference(model)`` (raising as the model does)."""
    try:
        return convert(msgspec.json.decode(raw, type=fast))
    except (msgspec.DecodeError, _Slow):
        pass
    return reference(_reference(raw, model, *where))


@dataclass(frozen=True, slots=True)
class CreateBody:
    model: str
    version: int | None
    history: Observations | None


@dataclass(frozen=True, slots=True)
class ForecastBody:
    version: int | None
    ids: list[str | None]
    series: list[Observations]


@dataclass(slots=True)
class BulkBody:
    """A bulk request's streams: each item checked on its own.

    ``single`` holds the one-reading items of each width as columns; ``many`` the others
    (and one-reading items that need their exact error worded); ``errors`` the items whose
    readings are refused.
    """

    detail: Detail
    ids: list[str | int | None]
    stream_ids: list[str]
    single: dict[int, tuple[list[int], TimeArray, np.ndarray]]
    many: dict[int, Observations]
    errors: dict[int, ForecastError]
    #: Readings in the request, over all its streams.
    rows: int = 0


def observe_body(raw: bytes, where: tuple[str, str]) -> Observations:
    return decode(  # type: ignore[no-any-return]
        raw,
        _Observe,
        lambda body: _series(body.observations, "observations"),
        ObserveRequest,
        lambda model: _to_observations(model.observations, "observations"),
        where,
    )


def create_body(raw: bytes, where: tuple[str, str]) -> CreateBody:
    def fast(body: _Create) -> CreateBody:
        history = body.history
        if history is None:
            obs = None
        elif isinstance(history, _Columns):
            obs = _columns(history.values, history.timestamps, history.start, history.step,
                           "history")  # fmt: skip
        else:
            if not history:
                raise _Slow
            obs = _series(history, "history")
        return CreateBody(body.model, body.version, obs)

    return decode(  # type: ignore[no-any-return]
        raw,
        _Create,
        fast,
        StreamCreate,
        lambda model: CreateBody(model.model, model.version, model.observations()),
        where,
    )


def forecast_body(raw: bytes, where: tuple[str, str]) -> ForecastBody:
    def fast(body: _Forecast) -> ForecastBody:
        series: list[Observations] = []
        for i, one in enumerate(body.series):
            field = f"series[{i}]"
            if one.observations is not None:
                if one.values or one.timestamps or one.start is not None or one.step:
                    raise _Slow
                series.append(_series(one.observations, f"{field}.observations"))
            elif one.values is not None:
                series.append(_columns(one.values, one.timestamps, one.start, one.step, field))
            else:
                raise _Slow
        return ForecastBody(body.version, [one.id for one in body.series], series)

    def reference(model: ForecastRequest) -> ForecastBody:
        series = [one.series(f"series[{i}]") for i, one in enumerate(model.series)]
        return ForecastBody(model.version, [one.id for one in model.series], series)

    return decode(raw, _Forecast, fast, ForecastRequest, reference, where)  # type: ignore[no-any-return]


def _to_observations(items: list[ObservationIn], field: str) -> Observations:
    return Observations.build(
        [epoch(o.timestamp) for o in items], [o.row() for o in items], field=field
    )


def bulk_items(
    detail: Detail,
    items: Sequence[tuple[str | int | None, str, Sequence[float | str], list[list[float]]]],
    times_of: Callable[[Sequence[float | str]], TimeArray],
) -> BulkBody:
    """Each stream's readings checked alone; one-reading ones as columns per width."""
    out = BulkBody(detail, [i for i, _, _, _ in items], [s for _, s, _, _ in items], {}, {}, {})
    out.rows = sum(len(rows) for _, _, _, rows in items)
    by_width: dict[int, list[int]] = {}
    for k, (_, _, _, rows) in enumerate(items):
        if len(rows) == 1:
            by_width.setdefault(len(rows[0]), []).append(k)
    for width, chosen in by_width.items():
        firsts = times_of([items[k][2][0] for k in chosen])
        ts, values, good = single_readings(firsts.tolist(), [items[k][3][0] for k in chosen], width)
        ok = [k for k, g in zip(chosen, good.tolist(), strict=True) if g]
        if len(ok) == len(chosen):
            out.single[width] = (chosen, ts, values)
        else:
            mask = good.nonzero()[0]
            out.single[width] = (ok, ts[mask], values[mask])
    taken = {k for chosen, _, _ in out.single.values() for k in chosen}
    for k, (_, _, times, rows) in enumerate(items):
        if k in taken:
            continue
        try:
            out.many[k] = Observations.build(
                times_of(times).tolist(), rows, field=f"streams[{k}].observations"
            )
        except ForecastError as exc:
            out.errors[k] = exc
    return out


def bulk_body(raw: bytes, where: tuple[str, str]) -> BulkBody:
    return decode(raw, _Bulk, fast_bulk, BulkObserveRequest, reference_bulk, where)  # type: ignore[no-any-return]


def fast_bulk(body: _Bulk) -> BulkBody:
    items = [(s.id, s.stream_id, [o.timestamp for o in s.observations], _rows(s.observations))
             for s in body.streams]  # fmt: skip
    _finite([row for _, _, _, rows in items for row in rows])  # one check for all streams
    return bulk_items(body.detail, items, _times)


def reference_bulk(model: BulkObserveRequest) -> BulkBody:
    items = [
        (s.id, s.stream_id, [epoch(o.timestamp) for o in s.observations],
         [o.row() for o in s.observations])
        for s in model.streams
    ]  # fmt: skip
    return bulk_items(model.detail, items, lambda times: np.array(times, dtype=np.float64))


def stream_message(raw: bytes) -> tuple[bool, str | int | None, BulkBody] | None:
    """A WebSocket message ``{"streams": [...], "id"?}`` (True, its id) or ``{"stream_id",
    "observations", "id"?}`` (False), if the fast path takes it (None: judge it by the
    pydantic models)."""
    try:
        if b'"streams"' in raw:
            bulk = msgspec.json.decode(raw, type=_MessageBulk)
            return True, bulk.id, fast_bulk(bulk)
        one = msgspec.json.decode(raw, type=_Stream)
        return False, None, fast_bulk(_Bulk(streams=[one], detail="full"))
    except (msgspec.DecodeError, _Slow):
        return None
